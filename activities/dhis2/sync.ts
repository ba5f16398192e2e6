/**
 * Syncing one resource to one target: read the source NOW (so a burst of changes becomes one
 * apply of the latest state), map it, compare with the target's copy, and send only a difference.
 * Idempotent by construction: a second call finds nothing to do.
 */
import { ApplicationFailure } from '@temporalio/common';
import { resourceTypes, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { snippet, type ImportError } from './api';
import { diffFields, mapForTarget, stripComputed, type FieldChange, type Resource } from './mapping';
import { authorOf, clip, draftHash, draftOf, draftView, needsApproval, restrictDraft, type ApprovalNeeded, type RefreshOutcome } from './approval';
import { NotSyncable } from './codes';
import { draftKey, missingReferences, openTarget, type Dhis2Target, type GatedOperation, type MissingReference, type SyncRequest } from './target';

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
  return syncResourceOn(openTarget(req.target), req);
}

/**
 * What a change comes to, once both sides are read: nothing to do (with why), a change that needs
 * approval, or a create / update / delete to send. The pass below and the batch apply (./batch.ts)
 * decide alike.
 */
export type Plan =
  | { kind: 'settled'; outcome: SyncOutcome; reason: string }
  | { kind: 'gated'; op: GatedOperation; changes: FieldChange[]; gatedFields: string[]; wanted?: Resource; held?: Resource }
  | { kind: 'send'; op: GatedOperation; changes: FieldChange[]; wanted?: Resource; held?: Resource };

export async function planChange(target: Dhis2Target, type: ResourceType, source: Resource | undefined, current: Resource | undefined): Promise<Plan> {
  const { settings } = target;
  let wanted: Resource | null | undefined;
  try {
    wanted = source && await mapForTarget(target.config, settings, type, source);
  } catch (err) {
    return { kind: 'settled', outcome: { action: 'failed', error: (err as Error).message, errors: [] }, reason: '' };
  }
  const held = current && stripComputed(type, current);
  if (!wanted && !current) return { kind: 'settled', outcome: { action: 'unchanged' }, reason: 'the resource is on neither side any more' };
  const changes = diffFields(held, wanted ?? undefined);
  if (!changes.length) return { kind: 'settled', outcome: { action: 'unchanged' }, reason: 'the target already holds what the source holds' };
  const op: GatedOperation = !wanted ? 'delete' : current ? 'update' : 'create';
  if (!settings.operations.includes(op)) {
    const reason = `target ${target.name} does not take ${op}s`;
    return { kind: 'settled', outcome: { action: 'skipped', reason }, reason };
  }
  const gatedFields = needsApproval(settings, type, op, changes);
  if (gatedFields) return { kind: 'gated', op, changes, gatedFields, wanted: wanted ?? undefined, held };
  return { kind: 'send', op, changes, wanted: wanted ?? undefined, held };
}

/** The pass on a target the caller opened (the fast path opens it to see how the target is doing). */
export async function syncResourceOn(target: Dhis2Target, req: SyncRequest): Promise<SyncOutcome> {
  const { settings } = target;
  if (!settings.resources.includes(req.type)) return release(target, req, `target ${target.name} does not take ${req.type}`, { action: 'skipped', reason: `target ${target.name} does not take ${req.type}` });
  let source: Resource | undefined;
  let current: Resource | undefined;
  try {
    [source, current] = await target.bothSides(req.type, req.uid);
  } catch (err) {
    // A CODE target cannot find its copy (no code on the source): parked with the reason, nothing sent.
    if (err instanceof NotSyncable) return { action: 'failed', error: err.message, errors: [] };
    throw err;
  }
  const plan = await planChange(target, req.type, source, current);
  if (plan.kind === 'settled') return plan.outcome.action === 'failed' ? plan.outcome : release(target, req, plan.reason, plan.outcome);
  const { op, changes, wanted, held } = plan;
  if (plan.kind === 'gated') return stage(target, req, op, changes, plan.gatedFields, wanted ?? held!, source ?? current!, current);
  if (req.held) return release(target, req, 'the change no longer touches fields that need approval', { action: 'unchanged' });

  if (!wanted) {
    const deleted = await target.deleteResource(req.type, req.uid);
    if (!deleted.ok) return { action: 'failed', error: deleted.message, errors: deleted.errors };
    return finish(target, req, 'deleted', current!, []);
  }
  const imported = await target.importResource(req.type, wanted);
  if (!imported.ok) {
    const missing = missingReferences(imported.errors);
    if (missing) return { action: 'waitingForReferences', missing };
    return { action: 'failed', error: imported.message, errors: imported.errors };
  }
  return finish(target, req, current ? 'updated' : 'created', wanted, changes);
}

/** A gated change: store (or, while its gate is open, update) the draft; nothing reaches the target's metadata. */
async function stage(target: Dhis2Target, req: SyncRequest, operation: GatedOperation, changes: FieldChange[], gatedFields: string[], resource: Resource, about: Resource, current: Resource | undefined): Promise<SyncOutcome> {
  const draft = draftOf(req.type, operation, resource);
  if (req.held) {
    const stored = await target.readDraft(req.type, req.uid);
    if (!stored) return { action: 'draftMissing' };
    if (draftHash(stored.value) !== req.held.draftHash) return { action: 'draftEdited' };
    if (draftHash(draft) === req.held.draftHash) return { action: 'same', draftHash: req.held.draftHash };
  }
  await target.writeDraft(req.type, req.uid, draft);
  await restrictDraft(target, req.type, req.uid);
  const key = draftKey(req.type, req.uid);
  return {
    action: 'needsApproval', operation, gatedFields, draftKey: key, reviewLink: target.reviewLink(key), draftHash: draftHash(draft), approval: target.settings.approval!,
    view: draftView(target.settings, req.type, req.uid, operation, draft, current),
    changes: changes.map((c) => ({ field: c.field, old: clip(c.old), new: clip(c.new) })),
    name: typeof about.name === 'string' ? about.name.slice(0, 230) : undefined,
    author: authorOf(about),
  };
}

/** Without an open gate: `outcome`. With one: the gate is no longer needed; its draft goes unless a reviewer edited it. */
async function release(target: Dhis2Target, req: SyncRequest, reason: string, outcome: SyncOutcome): Promise<SyncOutcome> {
  if (!req.held) return outcome;
  const stored = await target.readDraft(req.type, req.uid);
  if (stored && draftHash(stored.value) !== req.held.draftHash) return { action: 'draftEdited' };
  await target.deleteDraft(req.type, req.uid);
  return { action: 'released', reason };
}

export async function finish(target: Dhis2Target, req: Pick<SyncRequest, 'type' | 'uid'>, action: 'created' | 'updated' | 'deleted', resource: Resource, changes: FieldChange[]): Promise<SyncOutcome> {
  const recorded = changes.map((c) => ({ field: c.field, old: clip(c.old), new: clip(c.new) }));
  const { notify } = target.settings;
  if (!notify.on.includes('success')) return { action, changes: recorded, notified: false };
  const verb = { created: 'Created', updated: 'Updated', deleted: 'Deleted' }[action];
  const { subject, text } = describeChange(verb, req.type, req.uid, resource.name, changes);
  try {
    await target.notify(subject, text);
    return { action, changes: recorded, notified: notify.users.length + notify.userGroups.length > 0 };
  } catch (err) {
    return { action, changes: recorded, notified: false, notifyError: (err as Error).message };
  }
}

