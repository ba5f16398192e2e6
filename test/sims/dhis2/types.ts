/** Types shared by the DHIS2 simulator's modules (kept apart so the modules do not import each other in circles). */
import type { Pool } from 'pg';

export type ObjectType = 'organisationUnit' | 'organisationUnitGroup' | 'organisationUnitGroupSet';

export interface Dhis2Write {
  type: ObjectType;
  uid: string;
  op: 'create' | 'update' | 'delete';
  /** Date.now() after COMMIT. */
  at: number;
  /** The stored object after the write, as GET ?fields=* returns it (absent for deletes). */
  body?: any;
}

/** A configured user, with the row id of its `userinfo` row (what createdBy/lastUpdatedBy point at). */
export interface SimUser {
  username: string; password: string; id: string; rowId: string;
  /** Holds the ALL authority: sharing does not restrict them (DHIS2's AclService lets a superuser read and write anything). */
  superuser: boolean;
}

/** What request handlers need from the running simulator. */
export interface SimState {
  name: string;
  pool: Pool;
  users: SimUser[];
  tokens: string[];
  /** User ids in the feedback recipients group (the `feedbackRecipients` system setting): who gets and sees tickets. */
  feedbackRecipients: string[];
  /** Uids whose delete answers 409 E4030, as if data values referenced them. */
  blocked: Set<string>;
  emit(writes: Dhis2Write[]): void;
  /** True (and counts down) when this POST /api/metadata must answer 200 with status ERROR. */
  takeErrorWith200(): boolean;
}
