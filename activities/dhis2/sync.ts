/**
 * Syncing one resource to one target: read the source NOW (so a burst of changes becomes one
 * apply of the latest state), map it, compare with the target's copy, and send only a difference.
 * Idempotent by construction: a second call finds nothing to do.
 */
import { ApplicationFailure } from '@temporalio/common';
import { endpointOf, resourceTypes, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { call, importErrors, refused, snippet, type Dhis2Server, type ImportError } from './api';
import { currentSyncConfig, targetNamed, type SyncConfig, type SyncTarget } from './config';
import { diffFields, mapForTarget, stripComputed, type FieldChange, type Resource } from './mapping';
import {
  authorOf, deleteDraft, draftHash, draftKey, draftOf, needsApproval, readDraft, reviewLink, writeDraft,
  type ApprovalNeeded, type GatedOperation, type RefreshOutcome,
} from './approval';

export interface SyncRequest {
  target: string;
  type: ResourceType;
  uid: string;
  /** A gate is open for this resource: bring its draft up to date instead of applying anything. */
  held?: { draftHash: string };
}

export interface MissingReference { type: ResourceType; uid: string; property?: string }

export type SyncOutcome =
  | { action: 'created' | 'updated' | 'deleted'; changes: FieldChange[]; notified: boolean; notifyError?: string }
  | { action: 'unchanged' }
  | { action: 'skipped'; reason: string }
  /** The target lacks what this resource points at (E5002): sync those first, then this again. */
  | { action: 'waitingForReferences'; missing: MissingReference[] }
  /** The target refused for good (a 409 such as E5003 or E4030, a mapping error): retrying will not help until something changes. */
  | { action: 'failed'; error: string; errors: ImportError[] }
  /** The change touches fields that need approval: the draft is stored, nothing was applied. */
  | ApprovalNeeded
  /** Only with `held`: what became of the open gate's draft. */
  | Exclude<RefreshOutcome, ApprovalNeeded>;

export const sourceServer = (config: SyncConfig): Dhis2Server => ({ name: 'source', baseUrl: config.source.baseUrl, auth: config.source.auth, concurrency: 16 });
export const targetServer = (t: SyncTarget): Dhis2Server => ({ name: t.name, baseUrl: t.baseUrl, auth: t.auth, concurrency: t.concurrency });

/** GET /api/<type>/<uid>?fields=*: the resource, or undefined when the server does not have it. */
export async function fetchResource(server: Dhis2Server, type: ResourceType, uid: string): Promise<Resource | undefined> {
  const res = await call<Resource>(server, 'GET', `${endpointOf[type]}/${uid}`, { query: { fields: '*' } });
  if (res.status === 404) return undefined;
  if (res.status !== 200 || typeof res.body !== 'object' || res.body === null || res.body.id !== uid) {
    throw refused(server, `answered GET ${endpointOf[type]}/${uid} with HTTP ${res.status} and not the ${type}: ${snippet(res.text)}`);
  }
  return res.body;
}

const metadataQuery = { importStrategy: 'CREATE_AND_UPDATE', identifier: 'UID', atomicMode: 'ALL', skipSharing: 'true', userOverrideMode: 'CURRENT' };

/** POST /api/metadata with one resource; the report is checked (a 200 can still say ERROR). */
export async function importResource(server: Dhis2Server, type: ResourceType, resource: Resource): Promise<{ ok: true } | { ok: false; errors: ImportError[]; message: string }> {
  const res = await call<{ status?: string; message?: string }>(server, 'POST', 'metadata', { query: metadataQuery, json: { [endpointOf[type]]: [resource] }, timeoutMs: 120_000 });
  const status = typeof res.body === 'object' && res.body ? res.body.status : undefined;
  if (res.status === 200 && (status === 'OK' || status === 'SUCCESS')) return { ok: true };
  if (res.status === 200 || res.status === 409) {
    const errors = importErrors(res.body);
    return { ok: false, errors, message: `import of ${type} ${resource.id} answered HTTP ${res.status} status ${status ?? '?'}: ${errors.map((e) => `${e.code} ${e.message}`).join('; ') || snippet(res.text)}` };
  }
  throw refused(server, `answered POST /api/metadata with HTTP ${res.status}: ${snippet(res.text)}`);
}

const klassTypes: Record<string, ResourceType> = { OrganisationUnit: 'organisationUnit', OrganisationUnitGroup: 'organisationUnitGroup', OrganisationUnitGroupSet: 'organisationUnitGroupSet' };

/** E5002 "Invalid reference [uid] (Klass) on object ...": which synced resources the target lacks. */
export function missingReferences(errors: ImportError[]): MissingReference[] | undefined {
  if (!errors.length || errors.some((e) => e.code !== 'E5002')) return undefined;
  const out: MissingReference[] = [];
  for (const e of errors) {
    const [uid, klass] = e.properties?.length ? e.properties : (/Invalid reference \[([^\]]+)\] \(([^)]+)\)/.exec(e.message) ?? []).slice(1);
    const type = klass ? klassTypes[klass.split('.').pop()!] : undefined;
    if (!uid || !uidPattern.test(uid) || !type) return undefined;
    if (!out.some((m) => m.uid === uid && m.type === type)) out.push({ type, uid, property: e.property });
  }
  // Each missing reference starts a sync workflow: a target cannot make us start thousands.
  return out.slice(0, 20);
}

export async function deleteResource(server: Dhis2Server, type: ResourceType, uid: string): Promise<{ ok: true } | { ok: false; errors: ImportError[]; message: string }> {
  const res = await call(server, 'DELETE', `${endpointOf[type]}/${uid}`);
  if (res.status === 200 || res.status === 204 || res.status === 404) return { ok: true };
  if (res.status === 409) {
    const errors = importErrors(res.body);
    return { ok: false, errors, message: `delete of ${type} ${uid} answered HTTP 409: ${errors.map((e) => `${e.code} ${e.message}`).join('; ') || snippet(res.text)}` };
  }
  throw refused(server, `answered DELETE ${endpointOf[type]}/${uid} with HTTP ${res.status}: ${snippet(res.text)}`);
}

/** A message to the target's configured recipients (best effort: the sync itself already happened). */
export async function notifyTarget(config: SyncConfig, target: SyncTarget, subject: string, text: string): Promise<void> {
  const { users, userGroups } = target.notify;
  if (!users.length && !userGroups.length) return;
  const res = await call(targetServer(target), 'POST', 'messageConversations', {
    json: { subject: subject.slice(0, 255), text, users: users.map((id) => ({ id })), userGroups: userGroups.map((id) => ({ id })) },
  });
  if (res.status !== 201 && res.status !== 200) throw refused(targetServer(target), `did not take the notification (HTTP ${res.status}): ${snippet(res.text)}`);
}

function describeChange(action: string, type: ResourceType, uid: string, name: unknown, changes: FieldChange[]): { subject: string; text: string } {
  const label = typeof name === 'string' ? `'${name}' (${uid})` : uid;
  const lines = changes.slice(0, 30).map((c) => `- ${c.field}: ${short(c.old)} -> ${short(c.new)}`);
  return { subject: `[Runbooks org-unit sync] ${action} ${type} ${label}`, text: [`${action} ${type} ${label} from the source.`, '', ...lines].join('\n') };
}
const short = (v: unknown) => (v === undefined ? '(none)' : snippet(JSON.stringify(v), 120));

export function checkRequest(req: SyncRequest): void {
  if (!resourceTypes.includes(req.type)) throw ApplicationFailure.nonRetryable(`type: "${req.type}" is not one of ${resourceTypes.join(', ')}`, 'InvalidInput');
  if (!uidPattern.test(req.uid)) throw ApplicationFailure.nonRetryable(`uid: "${req.uid}" is not a DHIS2 uid`, 'InvalidInput');
}

/** The activity: one pass of "make the target hold what the source holds now" (or, for a gated change, of "stage it for approval"). */
export async function syncResource(req: SyncRequest): Promise<SyncOutcome> {
  checkRequest(req);
  const config = currentSyncConfig();
  const target = targetNamed(config, req.target);
  if (!target.resources.includes(req.type)) return release(req, `target ${target.name} does not take ${req.type}`, { action: 'skipped', reason: `target ${target.name} does not take ${req.type}` });
  const server = targetServer(target);
  const [source, current] = await Promise.all([fetchResource(sourceServer(config), req.type, req.uid), fetchResource(server, req.type, req.uid)]);
  let wanted: Resource | null | undefined;
  try {
    wanted = source && await mapForTarget(config, target, req.type, source);
  } catch (err) {
    return { action: 'failed', error: (err as Error).message, errors: [] };
  }
  const held = current && stripComputed(req.type, current);
  if (!wanted && !current) return release(req, 'the resource is on neither side any more', { action: 'unchanged' });
  const changes = diffFields(held, wanted ?? undefined);
  if (!changes.length) return release(req, 'the target already holds what the source holds', { action: 'unchanged' });
  const op: GatedOperation = !wanted ? 'delete' : current ? 'update' : 'create';
  if (!target.operations.includes(op)) return release(req, `target ${target.name} does not take ${op}s`, { action: 'skipped', reason: `target ${target.name} does not take ${op}s` });

  const gated = needsApproval(target, req.type, op, changes);
  if (gated) return stage(req, target, op, changes, gated, wanted ?? held!, source ?? current!);
  if (req.held) return release(req, 'the change no longer touches fields that need approval', { action: 'unchanged' });

  if (!wanted) {
    const deleted = await deleteResource(server, req.type, req.uid);
    if (!deleted.ok) return { action: 'failed', error: deleted.message, errors: deleted.errors };
    return finish(config, target, req, 'deleted', current!, []);
  }
  const imported = await importResource(server, req.type, wanted);
  if (!imported.ok) {
    const missing = missingReferences(imported.errors);
    if (missing) return { action: 'waitingForReferences', missing };
    return { action: 'failed', error: imported.message, errors: imported.errors };
  }
  return finish(config, target, req, current ? 'updated' : 'created', wanted, changes);
}

/** A gated change: store (or, while its gate is open, update) the draft; nothing reaches the target's metadata. */
async function stage(req: SyncRequest, target: SyncTarget, operation: GatedOperation, changes: FieldChange[], gatedFields: string[], resource: Resource, about: Resource): Promise<SyncOutcome> {
  const server = targetServer(target);
  const draft = draftOf(req.type, operation, resource);
  if (req.held) {
    const stored = await readDraft(server, req.type, req.uid);
    if (!stored) return { action: 'draftMissing' };
    if (draftHash(stored.value) !== req.held.draftHash) return { action: 'draftEdited' };
    if (draftHash(draft) === req.held.draftHash) return { action: 'same', draftHash: req.held.draftHash };
  }
  const hash = await writeDraft(server, req.type, req.uid, draft);
  const key = draftKey(req.type, req.uid);
  return {
    action: 'needsApproval', operation, gatedFields, draftKey: key, reviewLink: reviewLink(target, key), draftHash: hash, approval: target.approval!,
    changes: changes.map((c) => ({ field: c.field, old: clip(c.old), new: clip(c.new) })),
    name: typeof about.name === 'string' ? about.name.slice(0, 230) : undefined,
    author: authorOf(about),
  };
}

/** Without an open gate: `outcome`. With one: the gate is no longer needed; its draft goes unless a reviewer edited it. */
async function release(req: SyncRequest, reason: string, outcome: SyncOutcome): Promise<SyncOutcome> {
  if (!req.held) return outcome;
  const server = targetServer(targetNamed(currentSyncConfig(), req.target));
  const stored = await readDraft(server, req.type, req.uid);
  if (stored && draftHash(stored.value) !== req.held.draftHash) return { action: 'draftEdited' };
  await deleteDraft(server, req.type, req.uid);
  return { action: 'released', reason };
}

async function finish(config: SyncConfig, target: SyncTarget, req: SyncRequest, action: 'created' | 'updated' | 'deleted', resource: Resource, changes: FieldChange[]): Promise<SyncOutcome> {
  const recorded = changes.map((c) => ({ field: c.field, old: clip(c.old), new: clip(c.new) }));
  if (!target.notify.on.includes('success')) return { action, changes: recorded, notified: false };
  const verb = { created: 'Created', updated: 'Updated', deleted: 'Deleted' }[action];
  const { subject, text } = describeChange(verb, req.type, req.uid, resource.name, changes);
  try {
    await notifyTarget(config, target, subject, text);
    return { action, changes: recorded, notified: target.notify.users.length + target.notify.userGroups.length > 0 };
  } catch (err) {
    return { action, changes: recorded, notified: false, notifyError: (err as Error).message };
  }
}

/** Values kept in the run's history are clipped: the history records what changed, not whole documents. */
const clip = (v: unknown): unknown => {
  if (v === undefined) return undefined;
  const s = JSON.stringify(v);
  return s.length > 500 ? `${s.slice(0, 500)}…` : v;
};
