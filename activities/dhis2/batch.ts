/**
 * The batch apply of the org-unit sync (an activity of the target's orgUnitBatch workflow, on the target's queue):
 * many resources' changes on one target in a few calls — both sides read in bulk (`filter=id:in:[…]`),
 * one `POST /api/metadata` with `atomicMode=NONE` for every plain create and update — instead of a
 * workflow, a pass and two reads per resource.
 *
 * It applies only what needs nothing more. Everything else is handed back, resource by resource, for
 * the resource's own orgUnitSync workflow: a change that needs approval, a delete, a mapping error, an
 * object the import refused (a missing reference waits there, a refusal parks there), and every
 * resource when the target is troubled or matches objects by code. Each decision is the one the
 * per-resource pass would make (planChange), and the pass reads both sides again, so handing a
 * resource back is always safe.
 */
import { endpointOf, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, importErrors, refused, snippet, type Dhis2Server, type ImportError } from './api';
import { onHealthyTarget } from './fast-path';
import { diffFields, stripComputed, type FieldChange, type Resource } from './mapping';
import { checkRequest, finish, planChange } from './sync';
import { missingReferences, type Dhis2Target, type MissingReference } from './target';

export interface BatchItem { type: ResourceType; uid: string }
export interface BatchRequest { target: string; items: BatchItem[] }
export interface BatchApplied extends BatchItem { action: 'created' | 'updated' | 'unchanged' | 'skipped'; notifyError?: string }
export interface BatchHandBack extends BatchItem {
  reason: string;
  /** The import lacked only these synced resources (E5002): they may come in a later batch. */
  missing?: MissingReference[];
}
export interface BatchOutcome { applied: BatchApplied[]; handBack: BatchHandBack[] }

/** Ids per list request: `filter=id:in:[…]` of 100 uids is a 1.3 kB query string. */
const idsPerRead = 100;
/** A list answer of 100 resources: each at most answerLimits.resource, in practice a few kB. */
const listLimit = 64 * 1024 * 1024;

const batchImportQuery = { importStrategy: 'CREATE_AND_UPDATE', identifier: 'UID', atomicMode: 'NONE', skipSharing: 'true', userOverrideMode: 'CURRENT', importReportMode: 'ERRORS' };

/** A batch is slow (the target counts as troubled for a while) past 5 s and 20 ms per resource. */
const slowBatchMs = (n: number) => 5_000 + 20 * n;

const keyOf = (i: BatchItem) => `${i.type}:${i.uid}`;

/** The activity: applies what it can in one import; the rest goes back, each with its reason. */
export async function applyBatch(req: BatchRequest): Promise<BatchOutcome> {
  for (const i of req.items) checkRequest({ target: req.target, ...i });
  const items = dedupe(req.items);
  const handAll = (reason: string): BatchOutcome => ({ applied: [], handBack: items.map((i) => ({ ...i, reason })) });
  const outcome = await onHealthyTarget(req.target, async (target) => {
    // A CODE target translates every reference one by one: the per-resource pass does that.
    if (target.byCode) return handAll(`target ${target.name} matches objects by code (idScheme CODE)`);
    return applyOn(target, items);
  }, slowBatchMs(items.length));
  return 'action' in outcome ? handAll(outcome.reason) : outcome;
}

function dedupe(items: BatchItem[]): BatchItem[] {
  const seen = new Map<string, BatchItem>();
  for (const i of items) seen.set(keyOf(i), { type: i.type, uid: i.uid });
  return [...seen.values()];
}

interface Send { item: BatchItem; op: 'create' | 'update'; wanted: Resource; changes: FieldChange[] }

async function applyOn(target: Dhis2Target, items: BatchItem[]): Promise<BatchOutcome> {
  const applied: BatchApplied[] = [];
  const handBack: BatchHandBack[] = [];
  const sends: Send[] = [];
  const byType = new Map<ResourceType, BatchItem[]>();
  for (const i of items) {
    if (!target.settings.resources.includes(i.type)) applied.push({ ...i, action: 'skipped' });
    else byType.set(i.type, [...(byType.get(i.type) ?? []), i]);
  }
  for (const [type, list] of byType) {
    const uids = list.map((i) => i.uid);
    const [sources, currents] = await Promise.all([readMany(target.source, type, uids), readMany(target.server, type, uids)]);
    for (const item of list) {
      const plan = await planChange(target, type, sources.get(item.uid), currents.get(item.uid));
      if (plan.kind === 'settled') {
        if (plan.outcome.action === 'unchanged' || plan.outcome.action === 'skipped') applied.push({ ...item, action: plan.outcome.action });
        else handBack.push({ ...item, reason: plan.reason || 'the mapping failed' });
      } else if (plan.kind === 'gated') handBack.push({ ...item, reason: `${plan.op} touches fields that need approval (${plan.gatedFields.join(', ')})` });
      else if (plan.op === 'delete' || !plan.wanted) handBack.push({ ...item, reason: 'a delete (DHIS2 may veto it): the resource\'s own sync deletes it' });
      else sends.push({ item, op: plan.op, wanted: plan.wanted, changes: plan.changes });
    }
  }
  if (sends.length) {
    const refusedUids = await importAll(target, sends);
    const written = sends.filter((s) => {
      const why = refusedUids.get(s.item.uid);
      if (why !== undefined) handBack.push({ ...s.item, ...why });
      return why === undefined;
    });
    const notifyError = await tellRecipients(target, written);
    for (const s of written) applied.push({ ...s.item, action: s.op === 'create' ? 'created' : 'updated', notifyError });
  }
  return { applied, handBack };
}

/** Lines of a batch's message, one per change; past that, how many more. */
const maxMessageLines = 500;

/**
 * The target's recipients hear of what a batch applied: one change as the per-resource pass tells
 * it; many in ONE message listing each (an inbox is not flooded with a message per unit of a burst).
 * Best effort, as there: the changes are applied either way. Returns the failure, if any.
 */
async function tellRecipients(target: Dhis2Target, written: Send[]): Promise<string | undefined> {
  if (!written.length || !target.settings.notify.on.includes('success')) return undefined;
  if (written.length === 1) {
    const [s] = written;
    const done = await finish(target, s.item, s.op === 'create' ? 'created' : 'updated', s.wanted, s.changes);
    return 'notifyError' in done ? done.notifyError : undefined;
  }
  const created = written.filter((s) => s.op === 'create').length;
  const lines = written.slice(0, maxMessageLines).map((s) => {
    const name = typeof s.wanted.name === 'string' ? `'${s.wanted.name}' (${s.item.uid})` : s.item.uid;
    return `- ${s.op === 'create' ? 'Created' : 'Updated'} ${s.item.type} ${name}: ${s.changes.map((c) => c.field).join(', ')}`;
  });
  if (written.length > maxMessageLines) lines.push(`- … and ${written.length - maxMessageLines} more`);
  const subject = `[Runbooks org-unit sync] ${written.length} changes from the source: ${created} created, ${written.length - created} updated`;
  try {
    await target.notify(subject, [`${written.length} changes from the source, applied in one import:`, '', ...lines].join('\n'));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The resources of one type a server holds among `uids`, by uid (absent: not there). */
async function readMany(server: Dhis2Server, type: ResourceType, uids: string[]): Promise<Map<string, Resource>> {
  const out = new Map<string, Resource>();
  const endpoint = endpointOf[type];
  for (let i = 0; i < uids.length; i += idsPerRead) {
    const chunk = uids.slice(i, i + idsPerRead);
    const res = await call<Record<string, unknown>>(server, 'GET', endpoint, {
      query: { filter: `id:in:[${chunk.join(',')}]`, fields: '*', paging: 'false' }, maxBytes: listLimit,
    });
    const list = res.status === 200 && typeof res.body === 'object' && res.body !== null ? res.body[endpoint] : undefined;
    if (!Array.isArray(list)) throw refused(server, `answered GET ${endpoint}?filter=id:in:[…] with HTTP ${res.status} and no list: ${snippet(res.text)}`);
    for (const r of list as Resource[]) if (r && typeof r === 'object' && typeof r.id === 'string' && chunk.includes(r.id)) out.set(r.id, r);
  }
  return out;
}

/**
 * One import of every send. An OK report means every object was written. Any other answer is not
 * trusted object by object (a report can list one error and ignore the rest): the target is read
 * again, and whatever it does not hold as sent goes back with the report's words.
 */
async function importAll(target: Dhis2Target, sends: Send[]): Promise<Map<string, { reason: string; missing?: MissingReference[] }>> {
  const bundle: Record<string, Resource[]> = {};
  for (const s of sends) (bundle[endpointOf[s.item.type]] ??= []).push(s.wanted);
  const res = await call<{ status?: string }>(target.server, 'POST', 'metadata', { query: batchImportQuery, json: bundle, timeoutMs: 120_000, maxBytes: answerLimits.resource });
  const status = typeof res.body === 'object' && res.body ? res.body.status : undefined;
  if (res.status === 200 && (status === 'OK' || status === 'SUCCESS')) return new Map();
  if (res.status !== 200 && res.status !== 409) throw refused(target.server, `answered POST /api/metadata with HTTP ${res.status}: ${snippet(res.text)}`);
  const said = new Map<string, ImportError[]>();
  for (const e of importErrors(res.body, sends.length * 4)) if (e.uid) said.set(e.uid, [...(said.get(e.uid) ?? []), e]);
  const refusedUids = new Map<string, { reason: string; missing?: MissingReference[] }>();
  const byType = new Map<ResourceType, Send[]>();
  for (const s of sends) byType.set(s.item.type, [...(byType.get(s.item.type) ?? []), s]);
  for (const [type, list] of byType) {
    const now = await readMany(target.server, type, list.map((s) => s.item.uid));
    for (const s of list) {
      const held = now.get(s.item.uid);
      const landed = held !== undefined && !diffFields(stripComputed(type, held), s.wanted).length;
      if (landed) continue;
      const errors = said.get(s.item.uid) ?? [];
      const words = errors.map((e) => `${e.code} ${e.message}`).join('; ') || 'this object was not written';
      refusedUids.set(s.item.uid, { reason: snippet(`the import answered HTTP ${res.status} status ${status ?? '?'}: ${words}`, 400), missing: missingReferences(errors) });
    }
  }
  return refusedUids;
}
