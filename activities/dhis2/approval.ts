/**
 * Changes that need a human's approval before a target gets them: which changes do, and the DRAFT
 * import kept in the target's dataStore (namespace org-unit-sync, one key per resource, so a retry
 * or a later change reuses it) where a reviewer may edit it. The approved draft, as the reviewer
 * left it, is what gets applied. The ticket that asks for the decision is in ./ticket.ts.
 */
import { createHash } from 'node:crypto';
import type { DraftView } from '../../contracts/dhis2/messages';
import { endpointOf, parseFieldName, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, refused, snippet, type ImportError } from './api';
import type { ApprovalSettings, SyncTarget } from './config';
import { diffFields, stripComputed, type FieldChange, type Resource } from './mapping';
import { draftKey, draftNamespace, missingReferences, openTarget, type Dhis2Target, type GatedOperation, type MissingReference, type SyncRequest, type TicketStatus } from './target';
import { tellTicket } from './ticket';

/** The draft as stored: the operation asked for, and the resource as the target would get it (the reviewer may edit the resource). */
export type Draft = { operation: GatedOperation } & Record<string, unknown>;

/** What the workflow needs to open a gate (no resource body: the draft holds that). */
export interface ApprovalNeeded {
  action: 'needsApproval';
  operation: GatedOperation;
  /** Clipped old and new values of each changed field. */
  changes: FieldChange[];
  /** The fields of the change that need approval. */
  gatedFields: string[];
  name?: string;
  /** The source user who made the change (four-eyes), when the source says. */
  author?: string;
  draftKey: string;
  reviewLink: string;
  /** Of the draft as we wrote it: a different hash later means a reviewer edited it. */
  draftHash: string;
  approval: ApprovalSettings;
  /** The draft as the gate shows it (its fingerprint is draftHash). */
  view?: DraftView;
}

/** The API field names of `type` that need approval on this target. */
export function gatedFields(target: SyncTarget, type: ResourceType): string[] {
  return target.fieldsRequireApproval.map(parseFieldName).filter((f) => f?.type === type).map((f) => f!.field);
}

/** Whether this change needs approval: any change to a gated field, and any create or delete of a type with gated fields. */
export function needsApproval(target: SyncTarget, type: ResourceType, operation: GatedOperation, changes: FieldChange[]): string[] | undefined {
  const gated = gatedFields(target, type);
  if (!gated.length) return undefined;
  if (operation !== 'update') return gated;
  const touched = changes.map((c) => c.field).filter((f) => gated.includes(f));
  return touched.length ? touched : undefined;
}

/** JSON with sorted keys: the dataStore keeps JSONB, which does not keep key order. */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]));
  return value;
}
/** The fingerprint of a draft: SHA-256 of its canonical JSON, first 128 bits in hex. */
export const draftHash = (draft: unknown): string => createHash('sha256').update(JSON.stringify(sortedKeys(draft))).digest('hex').slice(0, 32);

export function draftOf(type: ResourceType, operation: GatedOperation, resource: Resource): Draft {
  return { operation, [endpointOf[type]]: [resource] };
}

/** Usernames that can go into a DHIS2 `username:in:[...]` filter as they are. */
const plainUsername = /^[A-Za-z0-9._@-]{1,255}$/;

/**
 * DHIS2 shares a new dataStore entry with every logged-in user (public access `rw------`): the draft
 * is shared with nobody but its owner (the sync's own user, who wrote it) and the approvers who
 * have a user on the target (read and write: a reviewer may edit it). An approver without a user
 * on the target cannot edit it. Sharing of dataStore entries: GET .../metaData gives the entry's
 * id, POST /api/sharing?type=dataStore&id=<id> replaces its sharing (docs.dhis2.org "Data store",
 * "Sharing"; dhis2-core DatastoreController, SharingController).
 */
export async function restrictDraft(target: Dhis2Target, type: ResourceType, uid: string): Promise<void> {
  const server = target.server;
  const path = `dataStore/${draftNamespace}/${draftKey(type, uid)}`;
  const meta = await call<{ id?: unknown }>(server, 'GET', `${path}/metaData`);
  const id = meta.body?.id;
  if (meta.status !== 200 || typeof id !== 'string' || !uidPattern.test(id)) {
    throw refused(server, `answered GET /api/${path}/metaData with HTTP ${meta.status} and no entry id: ${snippet(meta.text)}`);
  }
  const approvers = (target.settings.approval?.approvers ?? []).filter((a) => plainUsername.test(a));
  let users: string[] = [];
  if (approvers.length) {
    const found = await call<{ users?: Array<{ id?: unknown; username?: unknown }> }>(server, 'GET', 'users', {
      query: { filter: `username:in:[${approvers.join(',')}]`, fields: 'id,username', paging: 'false' }, maxBytes: answerLimits.report,
    });
    if (found.status !== 200) throw refused(server, `answered GET /api/users with HTTP ${found.status}: ${snippet(found.text)}`);
    users = (found.body?.users ?? []).filter((u) => typeof u.id === 'string' && uidPattern.test(u.id) && approvers.includes(u.username as string)).map((u) => u.id as string);
  }
  const shared = await call(server, 'POST', 'sharing', {
    query: { type: 'dataStore', id },
    json: { object: { publicAccess: '--------', externalAccess: false, userAccesses: users.map((u) => ({ id: u, access: 'rw------' })), userGroupAccesses: [] } },
  });
  if (shared.status !== 200 && shared.status !== 201 && shared.status !== 204) {
    throw refused(server, `did not take the draft's sharing (POST /api/sharing?type=dataStore&id=${id}: HTTP ${shared.status}): ${snippet(shared.text)}`);
  }
}

/** The source user who last changed the resource, as the API names them (fields=* expands it to include the username). */
export function authorOf(source: Resource | undefined): string | undefined {
  const by = source?.lastUpdatedBy as { username?: unknown } | undefined;
  return typeof by?.username === 'string' && by.username ? by.username.slice(0, 200) : undefined;
}

type DraftCheck = { ok: true; resource: Resource } | { ok: false; reason: string };

/** What a reviewer may have done to the draft: it must still be this operation on this resource. */
export function checkDraft(value: unknown, type: ResourceType, uid: string, operation: GatedOperation): DraftCheck {
  const endpoint = endpointOf[type];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: `the draft is not a JSON object like {"operation": "${operation}", "${endpoint}": [{...}]}` };
  const draft = value as Record<string, unknown>;
  if (draft.operation !== operation) return { ok: false, reason: `the draft's "operation" must stay "${operation}" (it is ${JSON.stringify(draft.operation)?.slice(0, 40)})` };
  const list = draft[endpoint];
  if (!Array.isArray(list) || list.length !== 1 || typeof list[0] !== 'object' || list[0] === null || Array.isArray(list[0])) {
    return { ok: false, reason: `the draft must hold exactly one object in "${endpoint}"` };
  }
  const resource = list[0] as Resource;
  if (resource.id !== uid) return { ok: false, reason: `the draft changes the resource id (${JSON.stringify(resource.id)?.slice(0, 40)}, must stay "${uid}")` };
  return { ok: true, resource };
}

/** Values kept in the run's history (and shown to approvers) are clipped: the history records what changed, not whole documents. */
export const clip = (v: unknown): unknown => {
  if (v === undefined) return undefined;
  const s = JSON.stringify(v);
  return s.length > 500 ? `${s.slice(0, 500)}…` : v;
};
const maxObjectText = 6_000;

/** The draft as an approver must see it: the exact import, its diff against the target now, and its fingerprint. */
export async function viewOf(target: Dhis2Target, type: ResourceType, uid: string, operation: GatedOperation, stored: unknown): Promise<DraftView> {
  return draftView(target.settings, type, uid, operation, stored, await target.read(type, uid));
}

/** The view of a draft (`stored`, as the dataStore holds it) beside the target's copy now (`current`). */
export function draftView(settings: SyncTarget, type: ResourceType, uid: string, operation: GatedOperation, stored: unknown, current: Resource | undefined): DraftView {
  const fingerprint = draftHash(stored);
  const checked = checkDraft(stored, type, uid, operation);
  const held = current && stripComputed(type, current);
  const resource = checked.ok ? (operation === 'delete' ? { id: uid } : stripComputed(type, checked.resource)) : undefined;
  const text = JSON.stringify(checked.ok ? resource : stored, null, 2) ?? 'null';
  const changes = checked.ok ? diffFields(held, operation === 'delete' ? undefined : resource) : [];
  const gated = gatedFields(settings, type);
  return {
    operation, fingerprint, object: text.length > maxObjectText ? `${text.slice(0, maxObjectText)}\n… (${text.length - maxObjectText} more characters: see the draft)` : text,
    changes: changes.slice(0, 60).map((c) => ({ field: c.field, old: clip(c.old), new: clip(c.new) })),
    gatedFields: operation === 'update' ? changes.map((c) => c.field).filter((f) => gated.includes(f)) : gated,
    ...(checked.ok ? {} : { invalid: checked.reason }),
  };
}

export type ReviewOutcome = { action: 'draft'; view: DraftView } | { action: 'draftMissing' } | { action: 'same' };

/**
 * The activity behind a gate's "look again": the draft as it is now in the target (a reviewer may
 * have edited it). With `known` (the version the gate shows), `same` when the draft still is that
 * version: one read, for an approver who waits.
 */
export async function reviewDraft(req: SyncRequest & { operation: GatedOperation; known?: string }): Promise<ReviewOutcome> {
  const target = openTarget(req.target);
  const stored = await target.readDraft(req.type, req.uid);
  if (!stored) return { action: 'draftMissing' };
  if (req.known !== undefined && draftHash(stored.value) === req.known) return { action: 'same' };
  return { action: 'draft', view: await viewOf(target, req.type, req.uid, req.operation, stored.value) };
}

export type ApplyOutcome =
  | { action: 'created' | 'updated' | 'deleted' | 'unchanged'; edited: boolean }
  | { action: 'draftMissing' }
  /** The draft is not the version that was approved (edited since): nothing applied; the gate asks again. */
  | { action: 'draftChanged'; view: DraftView }
  | { action: 'draftInvalid'; reason: string }
  | { action: 'waitingForReferences'; missing: MissingReference[] }
  | { action: 'failed'; error: string; errors: ImportError[] };

/**
 * Applies the approved change: the draft, only if it still is the version approved (`approved`, its
 * fingerprint); a reviewer's edit made before the approval is what was approved. The draft is left
 * in place (finishApproval deletes it), so a retry of this activity applies the same thing again.
 * Without `approved` (a run started before approvals were bound, or `onTimeout: apply`) the draft as it is now.
 */
export async function applyDraft(req: SyncRequest & { operation: GatedOperation; draftHash: string; approved?: string }): Promise<ApplyOutcome> {
  const target = openTarget(req.target);
  const stored = await target.readDraft(req.type, req.uid);
  if (!stored) return { action: 'draftMissing' };
  if (req.approved !== undefined && draftHash(stored.value) !== req.approved) {
    return { action: 'draftChanged', view: await viewOf(target, req.type, req.uid, req.operation, stored.value) };
  }
  const checked = checkDraft(stored.value, req.type, req.uid, req.operation);
  if (!checked.ok) return { action: 'draftInvalid', reason: checked.reason };
  const edited = draftHash(stored.value) !== req.draftHash;
  if (req.operation === 'delete') {
    const deleted = await target.deleteResource(req.type, req.uid);
    return deleted.ok ? { action: 'deleted', edited } : { action: 'failed', error: deleted.message, errors: deleted.errors };
  }
  const resource = stripComputed(req.type, checked.resource);
  const current = await target.read(req.type, req.uid);
  const imported = await target.importResource(req.type, resource);
  if (!imported.ok) {
    const missing = missingReferences(imported.errors);
    return missing ? { action: 'waitingForReferences', missing } : { action: 'failed', error: imported.message, errors: imported.errors };
  }
  return { action: current ? 'updated' : 'created', edited };
}

export type RefreshOutcome =
  | ApprovalNeeded
  /** The draft already says this (nothing sent). */
  | { action: 'same'; draftHash: string }
  /** A reviewer edited the draft: it was not overwritten. */
  | { action: 'draftEdited' }
  | { action: 'draftMissing' }
  /** The change no longer needs approval (the draft was deleted): the next pass applies it. */
  | { action: 'released'; reason: string };

/** After the decision: the draft goes (a later change makes a new one), the ticket gets the outcome. */
export async function finishApproval(req: SyncRequest & { ticket?: string; text: string; status: TicketStatus; keepDraft?: boolean }): Promise<void> {
  const target = openTarget(req.target);
  if (!req.keepDraft) await target.deleteDraft(req.type, req.uid);
  if (req.ticket) await tellTicket(target, req.ticket, req.text, req.status);
}
