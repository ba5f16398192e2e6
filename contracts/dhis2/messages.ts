/**
 * The messages of the per-resource sync workflows, defined once for the workflows, the change
 * listener, the CLI and the tests.
 */
import { defineSignal } from '@temporalio/workflow';
import { progressQueryOf, type ApprovalLedger } from '../messages';
import type { ResourceType } from './resources';

/** The workflow type that keeps one resource in step on one target. */
export const syncWorkflowType = 'orgUnitSync';

/** How long a change may keep retrying against a target, and when an idle sync ends: from the target's config. */
export interface SyncSettings {
  idleAfter: string;
  giveUpAfter: string;
  maximumInterval: string;
}

export interface SyncArgs {
  target: string;
  type: ResourceType;
  uid: string;
  settings: SyncSettings;
  /** What a previous run of this workflow handed over when it continued as new. */
  carried?: CarriedState;
}

/** "Something about this resource changed on the source": the workflow reads the source itself, so the signal carries no data. */
export interface SourceChange {
  /** The source commit's WAL position and time, when it came from change capture. */
  lsn?: string;
  committedAt?: string;
  /** A workflow waiting for this resource to exist on the target: signalled once it does. */
  waiter?: string;
}
export const sourceChangedSignal = defineSignal<[SourceChange]>('sourceChanged');

/**
 * `parked`: a change the target refused for good waits for a person (retry or drop); later changes queue behind it.
 * `waiting_for_approval`: a change to fields that need approval waits at a gate; only this resource on this target waits.
 */
export type SyncStatus = 'syncing' | 'waiting_for_reference' | 'waiting_for_approval' | 'parked' | 'idle' | 'completed';

/** What an operator sends to a parked sync (`npm run runbook -- retry|drop`). */
export interface ParkedDecision {
  by: string;
  reason?: string;
}
/** Try the parked resource again (with the source's latest state), e.g. after the blocker was removed. */
export const retrySyncSignal = defineSignal<[ParkedDecision]>('retry');
/** Give up the parked change (a reason is required); changes queued behind it then apply. */
export const dropSyncSignal = defineSignal<[ParkedDecision]>('drop');

/** A change parked because the target refused it for good: the failure and the target's own report. */
export interface ParkedChange {
  at: string;
  error: string;
  /** The import report's errors (code, message, object). */
  errors: Array<{ code: string; message: string; uid?: string; property?: string }>;
  /** Source changes that arrived since, waiting behind it. */
  queued: number;
}

export interface SyncRecord {
  at: string;
  action: string;
  changes?: string[];
  error?: string;
  note?: string;
}

/**
 * The draft as a gate shows it: the exact import the target will receive, its field diff against
 * what the target holds now, and its fingerprint (what an approval is bound to).
 */
export interface DraftView {
  operation: 'create' | 'update' | 'delete';
  /** SHA-256 of the draft's canonical JSON (sorted keys), first 128 bits in hex. */
  fingerprint: string;
  /** The whole object as the target will receive it, as indented JSON (clipped past 6,000 characters). */
  object: string;
  /** Each field that differs from the target's copy now (values clipped). */
  changes: Array<{ field: string; old?: unknown; new?: unknown }>;
  /** The changed fields that need approval. */
  gatedFields: string[];
  /** Why the draft, as it is, cannot be applied (a reviewer's edit broke it). */
  invalid?: string;
}

/** The change an open gate holds: where its draft and its ticket are. */
export interface AwaitedChange {
  gate: string;
  operation: 'create' | 'update' | 'delete';
  /** The fields that need approval. */
  fields: string[];
  reviewLink: string;
  /** The ticket in the target's messaging, once opened. */
  ticket?: string;
  /** A reviewer edited the draft: later source changes no longer update it. */
  edited?: boolean;
  since: string;
}

/** The sync's progress; its approval part (runbook, title, approvals, decisions) is what the approval gateway reads. */
export interface SyncProgress extends ApprovalLedger {
  target: string;
  type: ResourceType;
  uid: string;
  status: SyncStatus;
  /** Change signals received, and passes made (a pass covers every change before it started). */
  changesSeen: number;
  passes: number;
  lastCommittedAt?: string;
  waitingFor?: Array<{ type: ResourceType; uid: string }>;
  error?: string;
  parked?: ParkedChange;
  awaiting?: AwaitedChange;
  /** Gates opened by this workflow so far (each opening gets the next number). */
  gates: number;
  /** The last passes, newest last. */
  recent: SyncRecord[];
}
export const syncProgressQuery = progressQueryOf<SyncProgress>();

export interface CarriedState {
  pending: boolean;
  waiters: string[];
  progress: SyncProgress;
}
