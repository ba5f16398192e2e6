/**
 * A target with `idScheme: "CODE"` holds the source's objects under its own uids: the same object
 * is the one with the same code. The sync keeps working in the source's uids (requests, drafts,
 * diffs, workflow ids) and translates at the target's edge, by code: a read finds the target's
 * object by the source object's code and names it (and what it points at) by source uids; an
 * import names the target's object and its references by the target's uids, and goes in with
 * `identifier=UID`.
 *
 * Why not `identifier=CODE` (our reading of dhis2-core, not run against a real server): the update
 * of a matched object first gives the payload a uid if it has none (IdentifiableObjectBundleHook.preUpdate
 * -> BaseIdentifiableObject.setAutoFields), then merges every property of the payload into the stored
 * one (DefaultObjectBundleService.handleUpdates -> DefaultMetadataMergeService.merge, MergeMode.REPLACE,
 * `id` included), so the target's object would take the source's uid, or a new random one; and CODE
 * preheats references by code only (DefaultPreheatService.preheat, connectReferences ->
 * Preheat.get(CODE, ref)), so a parent given by uid would not be found. Translating keeps the
 * target's uids and leaves nothing to how CODE treats each property.
 */
import { ApplicationFailure } from '@temporalio/common';
import { endpointOf, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, refused, snippet, type Dhis2Server, type ImportError } from './api';
import type { Resource } from './mapping';

/** The references each type owns to resources the sync also syncs (the other references are left as they are). */
export const syncedReferences: Record<ResourceType, Array<{ field: string; type: ResourceType; many: boolean }>> = {
  organisationUnit: [{ field: 'parent', type: 'organisationUnit', many: false }],
  organisationUnitGroup: [{ field: 'organisationUnits', type: 'organisationUnit', many: true }],
  organisationUnitGroupSet: [{ field: 'organisationUnitGroups', type: 'organisationUnitGroup', many: true }],
};

const klassOf: Record<ResourceType, string> = { organisationUnit: 'OrganisationUnit', organisationUnitGroup: 'OrganisationUnitGroup', organisationUnitGroupSet: 'OrganisationUnitGroupSet' };

/**
 * A code the sync can look up: DHIS2's `in` operator splits its [list] on commas (dhis2-core
 * DefaultQueryParser / QueryUtils.parseValue), so a code holding `,`, `[` or `]` cannot be asked for.
 * DHIS2 codes are at most 50 characters.
 */
export function codeProblem(code: unknown): string | undefined {
  if (code === undefined || code === null || code === '') return 'has no code';
  if (typeof code !== 'string') return 'has a code that is not a string';
  if (code.length > 50) return 'has a code longer than 50 characters';
  if (/[,[\]\u0000-\u001f]/.test(code)) return `has the code ${JSON.stringify(code)}, which holds a comma, a bracket or a control character (it cannot be looked up in a DHIS2 filter)`;
  return undefined;
}

/** Why a resource cannot go to a CODE target: the message names the resource, the target and what to do. */
export class NotSyncable extends Error {}

export const notSyncable = (type: ResourceType, uid: string, target: string, problem: string): NotSyncable =>
  new NotSyncable(`${type} ${uid} ${problem} on the source: target ${target} matches objects by code (idScheme CODE), so it cannot be synced there. Give it a code on the source (then retry), or drop this change.`);

const chunk = <T>(items: T[], size: number): T[][] => Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, i * size + size));

/** GET /api/<type>?filter=<property>:in:[...]&fields=id,code: uid -> code (id filter) or code -> uid (code filter). */
async function lookUp(server: Dhis2Server, type: ResourceType, property: 'id' | 'code', values: string[]): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  const wanted = [...new Set(values)];
  const endpoint = endpointOf[type];
  for (const part of chunk(wanted, 50)) {
    const res = await call<Record<string, unknown>>(server, 'GET', endpoint, {
      query: { filter: `${property}:in:[${part.join(',')}]`, fields: 'id,code', paging: 'false' }, maxBytes: answerLimits.report,
    });
    const items = res.status === 200 ? res.body?.[endpoint] : undefined;
    if (!Array.isArray(items)) throw refused(server, `answered GET /api/${endpoint}?filter=${property}:in:[...] with HTTP ${res.status}: ${snippet(res.text)}`);
    for (const item of items as Array<{ id?: unknown; code?: unknown }>) {
      if (typeof item?.id !== 'string' || !uidPattern.test(item.id)) throw refused(server, `answered GET /api/${endpoint} with an object whose id is not a DHIS2 uid: ${snippet(JSON.stringify(item))}`);
      const code = typeof item.code === 'string' ? item.code : undefined;
      const key = property === 'id' ? item.id : code;
      // A server answering what was not asked for is ignored, not believed.
      if (key === undefined || !part.includes(key)) continue;
      if (property === 'code' && out.has(key) && out.get(key) !== item.id) {
        throw refused(server, `holds two ${endpoint} with the code ${JSON.stringify(key)} (${out.get(key)}, ${item.id}): DHIS2 keeps codes unique, so the target's object cannot be told`);
      }
      out.set(key, property === 'id' ? code : item.id);
    }
  }
  return out;
}

export const codesOf = (server: Dhis2Server, type: ResourceType, uids: string[]) => lookUp(server, type, 'id', uids.filter((u) => uidPattern.test(u)));
export const uidsOf = async (server: Dhis2Server, type: ResourceType, codes: string[]) =>
  new Map([...(await lookUp(server, type, 'code', codes.filter((c) => !codeProblem(c))))].map(([k, v]) => [k, v!]));

/** GET /api/<type>?filter=code:eq:<code>&fields=*: the server's object with this code, or undefined. */
export async function findByCode(server: Dhis2Server, type: ResourceType, code: string): Promise<Resource | undefined> {
  const endpoint = endpointOf[type];
  const res = await call<Record<string, unknown>>(server, 'GET', endpoint, { query: { filter: `code:eq:${code}`, fields: '*', paging: 'false' }, maxBytes: answerLimits.resource });
  const items = res.status === 200 ? res.body?.[endpoint] : undefined;
  if (!Array.isArray(items)) throw refused(server, `answered GET /api/${endpoint}?filter=code:eq:... with HTTP ${res.status}: ${snippet(res.text)}`);
  const found = (items as Resource[]).filter((r) => r && typeof r === 'object' && r.code === code);
  if (found.length > 1) throw refused(server, `holds ${found.length} ${endpoint} with the code ${JSON.stringify(code)}: DHIS2 keeps codes unique, so the target's object cannot be told`);
  if (found.length && (typeof found[0].id !== 'string' || !uidPattern.test(found[0].id))) throw refused(server, `answered GET /api/${endpoint} with an object whose id is not a DHIS2 uid`);
  return found[0];
}

/**
 * The code a deleted object had: GET /api/deletedObjects?uid=&klass= (dhis2-core DeletedObjectController;
 * DeletedObject keeps klass, uid and code of each object deleted through DHIS2). `null`: deleted without
 * a code; undefined: no record (deleted behind DHIS2's back, e.g. by SQL).
 */
export async function deletedCode(server: Dhis2Server, type: ResourceType, uid: string): Promise<string | null | undefined> {
  const res = await call<{ deletedObjects?: Array<{ uid?: unknown; klass?: unknown; code?: unknown }> }>(server, 'GET', 'deletedObjects', {
    query: { uid, klass: klassOf[type], fields: 'uid,klass,code', paging: 'false' }, maxBytes: answerLimits.report,
  });
  const items = res.status === 200 ? res.body?.deletedObjects : undefined;
  if (!Array.isArray(items)) throw refused(server, `answered GET /api/deletedObjects?uid=${uid} with HTTP ${res.status}: ${snippet(res.text)}`);
  const record = items.find((d) => d?.uid === uid && d?.klass === klassOf[type]);
  if (!record) return undefined;
  return typeof record.code === 'string' && record.code ? record.code : null;
}

const refIds = (value: unknown, many: boolean): string[] => {
  const refs = many ? (Array.isArray(value) ? value : []) : value ? [value] : [];
  return refs.map((r) => (r as { id?: unknown })?.id).filter((id): id is string => typeof id === 'string');
};

function replaceRefs(resource: Resource, field: string, many: boolean, map: (id: string) => string): void {
  const value = resource[field];
  if (many && Array.isArray(value)) resource[field] = value.map((r) => (typeof r?.id === 'string' ? { ...r, id: map(r.id) } : r));
  else if (!many && value && typeof (value as { id?: unknown }).id === 'string') resource[field] = { ...(value as object), id: map((value as { id: string }).id) };
}

export interface Translated {
  /** The resource as the target should get it (target uids), when it can go. */
  resource?: Resource;
  /** Why it cannot go at all (no code, a reference without a code, a uid taken). */
  problem?: string;
  /** Referenced resources the target lacks (named by source uids): an E5002 in DHIS2's shape, so the sync waits for them. */
  missing?: ImportError[];
}

/**
 * Source terms -> target terms, for a batch (one resource, or a snapshot page): each resource takes
 * the uid of the target's object with its code (its own uid when the target has none, unless the
 * target uses that uid for another object), and each synced reference the uid of the target's
 * object with the referenced resource's code. Resources of the batch count as on the target (a page
 * creates parents before their children).
 */
export async function toTarget(source: Dhis2Server, target: Dhis2Server, targetName: string, type: ResourceType, batch: Resource[]): Promise<Translated[]> {
  const problems = batch.map((r) => codeProblem(r.code));
  const good = batch.filter((_, i) => !problems[i]);
  const onTarget = await uidsOf(target, type, good.map((r) => r.code as string));
  // A resource new to the target keeps its source uid, unless the target has that uid under another code.
  const fresh = good.filter((r) => !onTarget.has(r.code as string)).map((r) => r.id);
  const taken = await codesOf(target, type, fresh);
  const assigned = new Map<string, string>();
  for (const r of good) assigned.set(r.code as string, onTarget.get(r.code as string) ?? r.id);

  // Source codes and target uids of every synced reference, per referenced type.
  const refCodes = new Map<ResourceType, Map<string, string | undefined>>();
  const refTargets = new Map<ResourceType, Map<string, string>>();
  for (const ref of syncedReferences[type]) {
    const ids = [...new Set(good.flatMap((r) => refIds(r[ref.field], ref.many)))];
    const known = new Map<string, string | undefined>(ref.type === type ? good.map((r) => [r.id, r.code as string]) : []);
    const codes = new Map([...known, ...(await codesOf(source, ref.type, ids.filter((id) => !known.has(id))))]);
    refCodes.set(ref.type, codes);
    const targets = await uidsOf(target, ref.type, [...new Set([...codes.values()].filter((c): c is string => !!c))]);
    if (ref.type === type) for (const [code, uid] of assigned) if (!targets.has(code)) targets.set(code, uid);
    refTargets.set(ref.type, targets);
  }

  return batch.map((r, i) => {
    if (problems[i]) return { problem: notSyncable(type, r.id, targetName, problems[i]!).message };
    const id = assigned.get(r.code as string)!;
    if (id === r.id && !onTarget.has(r.code as string) && taken.has(r.id)) {
      return { problem: `${type} ${r.id} (code ${JSON.stringify(r.code)}) is not on target ${targetName} by its code, and the target uses its uid for another ${type} (code ${JSON.stringify(taken.get(r.id) ?? null)}): creating it would overwrite that one. Give one of them another code or uid.` };
    }
    const out: Resource = { ...structuredClone(r), id };
    const missing: ImportError[] = [];
    for (const ref of syncedReferences[type]) {
      for (const refId of refIds(r[ref.field], ref.many)) {
        const code = refCodes.get(ref.type)!.get(refId);
        const problem = codeProblem(code);
        if (problem) return { problem: `${type} ${r.id} points (${ref.field}) at ${ref.type} ${refId}, which ${problem === 'has no code' && !refCodes.get(ref.type)!.has(refId) ? 'the source does not have' : problem} on the source: target ${targetName} matches by code (idScheme CODE), so the reference cannot be given there.` };
        if (!refTargets.get(ref.type)!.has(code!)) {
          const decorated = `[${refId}] (${klassOf[ref.type]})`;
          missing.push({ code: 'E5002', uid: r.id, property: ref.field, properties: [decorated, `[${r.id}] (${klassOf[type]})`, ref.field],
            message: `Invalid reference ${decorated} on object [${r.id}] (${klassOf[type]}) for association \`${ref.field}\`: target ${targetName} has no ${ref.type} with the code ${JSON.stringify(code)} (found by the sync before importing)` });
        }
      }
      replaceRefs(out, ref.field, ref.many, (refId) => refTargets.get(ref.type)!.get(refCodes.get(ref.type)!.get(refId)!) ?? refId);
    }
    return missing.length ? { missing } : { resource: out };
  });
}

/**
 * Target terms -> source terms, for the target's object with a source resource's code: it takes the
 * source uid, and each synced reference the source uid of the object with the same code (a
 * reference the source has no counterpart of keeps the target's uid, and so shows as a difference).
 */
export async function toSource(source: Dhis2Server, target: Dhis2Server, type: ResourceType, held: Resource, sourceUid: string): Promise<Resource> {
  const out: Resource = { ...held, id: sourceUid };
  for (const ref of syncedReferences[type]) {
    const ids = refIds(held[ref.field], ref.many);
    if (!ids.length) continue;
    const codes = await codesOf(target, ref.type, ids);
    const sourceIds = await uidsOf(source, ref.type, [...codes.values()].filter((c): c is string => !!c));
    replaceRefs(out, ref.field, ref.many, (id) => {
      const code = codes.get(id);
      return (code && sourceIds.get(code)) || id;
    });
  }
  return out;
}

/** For callers that must stop the activity: a NotSyncable as a non-retryable failure. */
export const asFailure = (err: NotSyncable): ApplicationFailure => ApplicationFailure.nonRetryable(err.message, 'NotSyncable');
