/**
 * Changes that need a human's approval before a target gets them: the DRAFT import kept in the
 * target's dataStore (namespace org-unit-sync, one key per resource, so a retry or a later change
 * reuses it) where a reviewer may edit it, and the TICKET in the target's messaging
 * (/api/messageConversations/feedback) that carries the field diff, the review link and the
 * signed approval links. The links are signed here and go only to the target's ticket: they never
 * return to the workflow.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { diffLines } from '../../contracts/dhis2/render';
import { endpointOf, parseFieldName, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { approvalSecret, approvalUrl } from '../lib/approval-token';
import { call, importErrors, refused, snippet, type Dhis2Server } from './api';
import { currentSyncConfig, targetNamed, type ApprovalSettings, type SyncTarget } from './config';
import { stripComputed, type FieldChange, type Resource } from './mapping';
import { deleteResource, fetchResource, importResource, missingReferences, targetServer, type MissingReference, type SyncRequest } from './sync';

export const draftNamespace = 'org-unit-sync';
/** One draft per resource on a target: a retry and every later change of the same resource reuse it. */
export const draftKey = (type: ResourceType, uid: string): string => `${type}-${uid}`;
export const reviewLink = (target: SyncTarget, key: string): string => `${target.baseUrl}/dhis-web-datastore/index.html#/edit/${draftNamespace}/${key}`;

export type GatedOperation = 'create' | 'update' | 'delete';

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
export const draftHash = (draft: unknown): string => createHash('sha256').update(JSON.stringify(sortedKeys(draft))).digest('hex').slice(0, 32);

const draftPath = (type: ResourceType, uid: string) => `dataStore/${draftNamespace}/${draftKey(type, uid)}`;

/** The stored draft, or undefined when there is none (deleted by hand, or never written). */
export async function readDraft(server: Dhis2Server, type: ResourceType, uid: string): Promise<{ value: unknown } | undefined> {
  const res = await call(server, 'GET', draftPath(type, uid));
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw refused(server, `answered GET /api/${draftPath(type, uid)} with HTTP ${res.status}: ${snippet(res.text)}`);
  return { value: res.body };
}

export async function writeDraft(server: Dhis2Server, type: ResourceType, uid: string, draft: Draft): Promise<string> {
  const res = await call(server, 'PUT', draftPath(type, uid), { json: draft });
  if (res.status === 404) {
    // DHIS2 before 2.40 does not create a key with PUT.
    const created = await call(server, 'POST', draftPath(type, uid), { json: draft });
    if (created.status !== 201 && created.status !== 200) throw refused(server, `did not store the draft (HTTP ${created.status}): ${snippet(created.text)}`);
  } else if (res.status !== 200 && res.status !== 201) {
    throw refused(server, `did not store the draft ${draftPath(type, uid)} (HTTP ${res.status}): ${snippet(res.text)}`);
  }
  return draftHash(draft);
}

export async function deleteDraft(server: Dhis2Server, type: ResourceType, uid: string): Promise<void> {
  const res = await call(server, 'DELETE', draftPath(type, uid));
  if (res.status !== 200 && res.status !== 204 && res.status !== 404) throw refused(server, `did not delete the draft (HTTP ${res.status}): ${snippet(res.text)}`);
}

export function draftOf(type: ResourceType, operation: GatedOperation, resource: Resource): Draft {
  return { operation, [endpointOf[type]]: [resource] };
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

export type ApplyOutcome =
  | { action: 'created' | 'updated' | 'deleted' | 'unchanged'; edited: boolean }
  | { action: 'draftMissing' }
  | { action: 'draftInvalid'; reason: string }
  | { action: 'waitingForReferences'; missing: MissingReference[] }
  | { action: 'failed'; error: string; errors: ReturnType<typeof importErrors> };

/**
 * Applies the approved change: the draft AS IT IS NOW (a reviewer's edits win). The draft is left
 * in place (finishApproval deletes it), so a retry of this activity applies the same thing again.
 */
export async function applyDraft(req: SyncRequest & { operation: GatedOperation; draftHash: string }): Promise<ApplyOutcome> {
  const target = targetNamed(currentSyncConfig(), req.target);
  const server = targetServer(target);
  const stored = await readDraft(server, req.type, req.uid);
  if (!stored) return { action: 'draftMissing' };
  const checked = checkDraft(stored.value, req.type, req.uid, req.operation);
  if (!checked.ok) return { action: 'draftInvalid', reason: checked.reason };
  const edited = draftHash(stored.value) !== req.draftHash;
  if (req.operation === 'delete') {
    const deleted = await deleteResource(server, req.type, req.uid);
    return deleted.ok ? { action: 'deleted', edited } : { action: 'failed', error: deleted.message, errors: deleted.errors };
  }
  const resource = stripComputed(req.type, checked.resource);
  const current = await fetchResource(server, req.type, req.uid);
  const imported = await importResource(server, req.type, resource);
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

// ---- the ticket ----------------------------------------------------------------------------

export type TicketStatus = 'OPEN' | 'PENDING' | 'INVALID' | 'SOLVED';

export interface TicketRequest {
  target: string;
  type: ResourceType;
  uid: string;
  name?: string;
  operation: GatedOperation;
  changes: FieldChange[];
  gatedFields: string[];
  author?: string;
  quorum: number;
  fourEyes: boolean;
  /** The gate the links decide, and its opening. */
  gate: string;
  nonce: string;
  deadline: string;
  expiresAt: number;
  links: Array<{ approver: string; linkId: string }>;
  /** Reply in this ticket (a new opening of the same change) instead of opening one. */
  ticket?: string;
  /** A first line for a reply with new links (e.g. why the draft was refused). */
  preface?: string;
}

const label = (type: ResourceType, uid: string, name?: string) => `${type} ${name ? `'${name}' (${uid})` : uid}`;


/** The subject names the gate opening, so the ticket can be found again (the feedback API does not return its id). */
export const ticketSubject = (req: Pick<TicketRequest, 'type' | 'uid' | 'name' | 'target' | 'nonce'>) =>
  `[Runbooks org-unit sync] Approval needed: ${label(req.type, req.uid, req.name)} on ${req.target} [ref ${req.nonce.slice(0, 8)}]`.slice(0, 255);

async function findTicket(server: Dhis2Server, ref: string): Promise<string | undefined> {
  const res = await call<{ messageConversations?: Array<{ id?: unknown; subject?: unknown }> }>(server, 'GET', 'messageConversations', {
    query: { filter: `subject:like:[ref ${ref}]`, fields: 'id,subject', paging: 'false' },
  });
  if (res.status !== 200) throw refused(server, `answered GET /api/messageConversations with HTTP ${res.status}: ${snippet(res.text)}`);
  const found = (res.body?.messageConversations ?? []).find((c) => typeof c.id === 'string' && uidPattern.test(c.id) && typeof c.subject === 'string' && c.subject.includes(`[ref ${ref}]`));
  return found?.id as string | undefined;
}

async function reply(server: Dhis2Server, ticket: string, text: string): Promise<void> {
  const res = await call(server, 'POST', `messageConversations/${encodeURIComponent(ticket)}`, { text });
  if (res.status === 404) throw refused(server, `no longer has the ticket ${ticket} (deleted by hand?)`);
  if (res.status !== 201 && res.status !== 200) throw refused(server, `did not take the reply to ticket ${ticket} (HTTP ${res.status}): ${snippet(res.text)}`);
}

async function setStatus(server: Dhis2Server, ticket: string, status: TicketStatus): Promise<void> {
  const res = await call(server, 'POST', `messageConversations/${encodeURIComponent(ticket)}/status`, { query: { messageConversationStatus: status } });
  if (res.status !== 200 && res.status !== 204) throw refused(server, `did not set ticket ${ticket} to ${status} (HTTP ${res.status}): ${snippet(res.text)}`);
}

/**
 * The approval request as a ticket in the target (a channel of the gate): the diff, the review
 * link, and one signed link per approver, each bound to this opening of this gate of this run.
 * Returns the ticket's id. Retried safely: a ticket already opened for this gate opening is reused.
 */
export async function openApprovalTicket(req: TicketRequest): Promise<{ ref: string }> {
  const secret = approvalSecret();
  if (!secret) throw ApplicationFailure.nonRetryable('APPROVAL_SECRET (32+ characters) is not set on the worker: approval links cannot be signed', 'ConfigMissing');
  const run = Context.current().info.workflowExecution;
  if (!run?.runId) throw ApplicationFailure.nonRetryable('openApprovalTicket must be called from a workflow', 'RunbookBug');
  const target = targetNamed(currentSyncConfig(), req.target);
  const server = targetServer(target);
  const links = req.links.map((l) => ({
    approver: l.approver,
    url: approvalUrl({ workflowId: run.workflowId, runId: run.runId, gate: req.gate, nonce: req.nonce, approver: l.approver, exp: req.expiresAt, linkId: l.linkId }, secret),
  }));
  const until = new Date(req.expiresAt * 1000).toISOString();
  const key = draftKey(req.type, req.uid);
  const linkLines = [
    ...links.flatMap((l) => [`To decide as ${l.approver}, open:`, l.url, '']),
    `Each link shows the change first; only the Approve or Reject button on that page decides. A link works once, for this decision only, until ${until}.`,
    'Do not forward a link: whoever holds it decides in that approver\'s name.',
  ];
  if (req.ticket) {
    await reply(server, req.ticket, [req.preface ?? 'New approval links:', '', ...linkLines].join('\n'));
    return { ref: req.ticket };
  }
  const ref = req.nonce.slice(0, 8);
  const existing = await findTicket(server, ref);
  if (existing) return { ref: existing };
  const verb = { create: 'Create', update: 'Update', delete: 'Delete' }[req.operation];
  const text = [
    `${verb} ${label(req.type, req.uid, req.name)} on ${target.name}: this change waits for approval` +
      `${req.author ? ` (made on the source by ${req.author})` : ''}.`,
    '',
    req.operation === 'update' ? `What changes (* = needs approval: ${req.gatedFields.join(', ')}):` : `Every field (a ${req.operation} needs approval):`,
    ...diffLines(req.changes, req.gatedFields),
    '',
    `The draft import, which you may EDIT before approving (the edited draft is what gets applied; keep "operation" and the id):`,
    reviewLink(target, key),
    '',
    `${req.quorum} approval(s) needed${!req.fourEyes ? '' : req.author ? `; four-eyes: ${req.author} may not approve`
      : '; four-eyes is on, but the source did not say who made this change, so it cannot be enforced'}. The change waits until ${req.deadline}.`,
    '',
    ...linkLines,
    '',
    `Run: ${run.workflowId}. Only this resource waits; other changes keep flowing.`,
  ].join('\n');
  const res = await call(server, 'POST', 'messageConversations/feedback', { query: { subject: ticketSubject(req) }, text });
  if (res.status !== 201 && res.status !== 200) throw refused(server, `did not open the approval ticket (HTTP ${res.status}): ${snippet(res.text)}`);
  const opened = await findTicket(server, ref);
  if (!opened) throw ApplicationFailure.retryable(`DHIS2 ${target.name} took the approval ticket but does not list it yet`, 'Dhis2Unavailable');
  return { ref: opened };
}

/** A reply in the ticket, and its new status when the decision is final. */
export async function updateTicket(req: { target: string; ticket: string; text: string; status?: TicketStatus }): Promise<void> {
  const server = targetServer(targetNamed(currentSyncConfig(), req.target));
  await reply(server, req.ticket, req.text);
  if (req.status) await setStatus(server, req.ticket, req.status);
}

/** After the decision: the draft goes (a later change makes a new one), the ticket gets the outcome. */
export async function finishApproval(req: SyncRequest & { ticket?: string; text: string; status: TicketStatus; keepDraft?: boolean }): Promise<void> {
  if (!req.keepDraft) await deleteDraft(targetServer(targetNamed(currentSyncConfig(), req.target)), req.type, req.uid);
  if (req.ticket) await updateTicket({ target: req.target, ticket: req.ticket, text: req.text, status: req.status });
}
