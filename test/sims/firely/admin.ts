/**
 * Firely Server's Administration API (`<base>/administration`) on its own database, the
 * administration database (vonkadmin), as firely-docs describes it:
 * - maintenance/administration_api.rst: create, read, update, delete and search on the conformance
 *   types below; its own database, separate from the data database (`Administration:MongoDbOptions`,
 *   e.g. mongodb://localhost/vonkadmin); 403 for a caller outside `AllowedNetworks`.
 * - maintenance/conformanceresources.rst: a canonical url is unique per type ("does not allow you to
 *   POST two conformance resources with the same canonical url"), a SearchParameter's base + code
 *   too; at startup the specification's conformance resources are loaded into it once, and while
 *   they load every request answers 423 Locked.
 * - maintenance/multiversion.rst: the specification's R4 resources have ids ending in `-Fhir4.0`;
 *   a StructureDefinition must have an R4 `fhirVersion` in an R4 context.
 * - security/permissions.rst: AccessPolicyDefinition is managed here too.
 * Operations ($import-resources, $reindex, $reset, $preload) are not modelled: refused by name.
 */
import { randomUUID } from 'node:crypto';
import type { Collection, Document } from 'mongodb';
import { fhirInstant } from './entries';
import { FhirError, ID_PATTERN, invalid, notImplemented, type Reply } from './fhir';

export const ADMIN_TYPES = ['StructureDefinition', 'SearchParameter', 'CompartmentDefinition', 'ValueSet', 'CodeSystem', 'StructureMap',
  'ConceptMap', 'Library', 'Measure', 'Questionnaire', 'Subscription', 'AccessPolicyDefinition'];

type Resource = Record<string, unknown> & { resourceType: string; id: string };
interface AdminDoc { _id: string; type: string; res_id: string; ver: number; lu: Date; deleted: boolean; res: Resource | null }

/**
 * The stand-in for the FHIR specification's conformance resources (specification.zip, about 4,000 of
 * them): a few, under the specification's canonical base, with the `-Fhir4.0` ids of an R4 import.
 */
export const SPECIFICATION: Resource[] = [
  { resourceType: 'StructureDefinition', id: 'Patient-Fhir4.0', url: 'http://hl7.org/fhir/StructureDefinition/Patient', version: '4.0.1', name: 'Patient', status: 'active', kind: 'resource', abstract: false, type: 'Patient', fhirVersion: '4.0.1' },
  { resourceType: 'StructureDefinition', id: 'Observation-Fhir4.0', url: 'http://hl7.org/fhir/StructureDefinition/Observation', version: '4.0.1', name: 'Observation', status: 'active', kind: 'resource', abstract: false, type: 'Observation', fhirVersion: '4.0.1' },
  { resourceType: 'SearchParameter', id: 'individual-gender-Fhir4.0', url: 'http://hl7.org/fhir/SearchParameter/individual-gender', version: '4.0.1', name: 'gender', status: 'active', code: 'gender', base: ['Patient', 'Person', 'Practitioner', 'RelatedPerson'], type: 'token', expression: 'Patient.gender' },
  { resourceType: 'CompartmentDefinition', id: 'patient-Fhir4.0', url: 'http://hl7.org/fhir/CompartmentDefinition/patient', version: '4.0.1', name: 'Base FHIR compartment definition for Patient', status: 'draft', code: 'Patient', search: true },
  { resourceType: 'ValueSet', id: 'administrative-gender-Fhir4.0', url: 'http://hl7.org/fhir/ValueSet/administrative-gender', version: '4.0.1', name: 'AdministrativeGender', status: 'active' },
  { resourceType: 'CodeSystem', id: 'administrative-gender-Fhir4.0', url: 'http://hl7.org/fhir/administrative-gender', version: '4.0.1', name: 'AdministrativeGender', status: 'active', content: 'complete' },
];

const SYSTEM_ID = 'vonk-admin-system';

export interface AdminContext {
  col: Collection<Document>;
  /** 423 while true: the conformance resources are loading (at first start, or the `adminLoading` knob). */
  loading(): boolean;
  forbidden(): boolean;
  notServed(type: string): boolean;
}

/** At first start on an empty administration database: the specification's resources, once (the import history says they were loaded). */
export async function loadSpecification(col: Collection<Document>, version: string): Promise<boolean> {
  if (await col.findOne({ _id: SYSTEM_ID as never })) return false;
  const lu = new Date();
  // Two servers starting at once on one administration database both load: the first insert wins, the other's is a duplicate key.
  const once = (p: Promise<unknown>) => p.then(() => true, (e: { code?: number }) => { if (e.code === 11000) return false; throw e; });
  for (const res of SPECIFICATION) {
    await once(col.insertOne({ _id: `${res.resourceType}/${res.id}` as never, type: res.resourceType, res_id: res.id, ver: 1, lu, deleted: false, res: withMeta(res, 1, lu) }));
  }
  return once(col.insertOne({ _id: SYSTEM_ID as never, importedBy: `Firely Server ${version}`, specification: 'R4 4.0.1', at: lu }));
}

function withMeta(res: Resource, ver: number, lu: Date): Resource {
  return { ...res, meta: { ...(res.meta as object | undefined), versionId: String(ver), lastUpdated: fhirInstant(lu) } };
}

const ADMIN_PARAMS = ['_count', '_elements', '_skip', '_format', 'url'];

function elements(res: Resource, wanted: string[] | undefined): Resource {
  if (!wanted) return res;
  const out: Resource = { resourceType: res.resourceType, id: res.id };
  if (res.meta) out.meta = { ...(res.meta as object), tag: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' }] };
  for (const k of wanted) if (k in res) out[k] = res[k];
  return out;
}

async function searchAdmin(ctx: AdminContext, base: string, type: string, query: URLSearchParams): Promise<Reply> {
  for (const name of new Set(query.keys())) {
    if (!ADMIN_PARAMS.includes(name)) throw notImplemented(`The search parameter '${name}' on /administration/${type}`);
    if (query.getAll(name).length > 1) throw invalid(`The search parameter '${name}' is given more than once`);
  }
  const num = (name: string, fallback: number, min: number, max: number) => {
    const raw = query.get(name);
    if (raw === null) return fallback;
    if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) throw invalid(`${name}: '${raw}' is not a number from ${min} to ${max}`);
    return Number(raw);
  };
  const count = num('_count', 10, 1, 1000);
  const skip = num('_skip', 0, 0, 10_000_000);
  const wanted = query.get('_elements')?.split(',').map((s) => s.trim()).filter(Boolean);
  const filter: Document = { type, deleted: false, ...(query.get('url') !== null ? { 'res.url': query.get('url') } : {}) };
  const total = await ctx.col.countDocuments(filter);
  const docs = await ctx.col.find(filter).sort({ _id: 1 }).skip(skip).limit(count + 1).toArray() as unknown as AdminDoc[];
  const link = [{ relation: 'self', url: `${base}/${type}?${query.toString()}` }];
  if (docs.length > count) {
    const next = new URLSearchParams(query);
    next.set('_skip', String(skip + count));
    link.push({ relation: 'next', url: `${base}/${type}?${next.toString()}` });
  }
  return {
    status: 200,
    body: {
      resourceType: 'Bundle', type: 'searchset', total, link,
      entry: docs.slice(0, count).map((d) => ({ fullUrl: `${base}/${type}/${d.res_id}`, resource: elements(d.res!, wanted), search: { mode: 'match' } })),
    },
  };
}

/** The uniqueness rules of conformanceresources.rst: one canonical url per type; one SearchParameter per base and code. */
async function checkUnique(col: Collection<Document>, res: Resource): Promise<void> {
  const others = { type: res.resourceType, deleted: false, res_id: { $ne: res.id } };
  if (typeof res.url === 'string') {
    const clash = await col.findOne({ ...others, 'res.url': res.url }) as unknown as AdminDoc | null;
    if (clash) throw invalid(`A ${res.resourceType} with canonical url '${res.url}' exists already (${res.resourceType}/${clash.res_id}): canonical urls must be unique`);
  }
  if (res.resourceType === 'SearchParameter' && typeof res.code === 'string' && Array.isArray(res.base)) {
    const clash = await col.findOne({ ...others, 'res.code': res.code, 'res.base': { $in: res.base } }) as unknown as AdminDoc | null;
    if (clash) throw invalid(`SearchParameter/${clash.res_id} has the code '${res.code}' on a base of this one (${(res.base as string[]).join(', ')}): base and code must be unique`);
  }
  if (res.resourceType === 'StructureDefinition' && res.fhirVersion !== undefined && !/^4\.0(\.\d+)?$/.test(String(res.fhirVersion))) {
    throw invalid(`StructureDefinition.fhirVersion '${String(res.fhirVersion)}' does not match the FHIR version of the request (4.0)`);
  }
}

function checkBody(raw: unknown, type: string, id?: string): Record<string, unknown> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('The request body is not a FHIR resource (a JSON object)');
  const res = raw as Record<string, unknown>;
  if (res.resourceType !== type) throw invalid(`The body is a ${String(res.resourceType)}, not a ${type}`);
  if (id !== undefined && res.id !== id) throw invalid(`The id in the body ('${String(res.id)}') does not match the id in the URL ('${id}')`);
  return res;
}

export interface AdminCall { method: string; segments: string[]; query: URLSearchParams; base: string; body(): Promise<unknown> }

/** `/administration/...`: `segments` is what follows `administration`. */
export async function handleAdmin(call: AdminCall, ctx: AdminContext): Promise<Reply> {
  if (ctx.forbidden()) throw new FhirError(403, 'security', 'The Administration API is not accessible from your network (Administration.AllowedNetworks)');
  if (ctx.loading()) throw new FhirError(423, 'lock-error', 'Firely Server is loading its conformance resources and cannot process requests');
  const base = `${call.base}/administration`;
  const [type, id, ...rest] = call.segments;
  if (type === undefined || type.startsWith('$') || id?.startsWith('$')) throw notImplemented(`${call.method} /administration/${call.segments.join('/')} (the administration operations)`);
  if (!ADMIN_TYPES.includes(type) || ctx.notServed(type)) throw new FhirError(404, 'not-supported', `Request for not-supported ResourceType(s) ${type} on the Administration API`);
  if (rest.length) throw notImplemented(`${call.method} /administration/${call.segments.join('/')}`);
  if (id !== undefined && !ID_PATTERN.test(id)) throw invalid(`'${id}' is not a valid resource id`);
  const { col } = ctx;
  const current = id === undefined ? null : await col.findOne({ _id: `${type}/${id}` as never }) as unknown as AdminDoc | null;

  if (id === undefined) {
    if (call.method === 'GET') return searchAdmin(ctx, base, type, call.query);
    if (call.method !== 'POST') throw new FhirError(405, 'not-supported', `${call.method} is not allowed on /administration/${type}`);
  } else if (call.method === 'GET') {
    if (!current) throw new FhirError(404, 'not-found', `Resource ${type}/${id} is not known`);
    if (current.deleted) throw new FhirError(410, 'deleted', `Resource ${type}/${id} was deleted`);
    return { status: 200, body: current.res };
  } else if (call.method === 'DELETE') {
    if (current && !current.deleted) await col.updateOne({ _id: current._id as never }, { $set: { deleted: true, res: null, lu: new Date() }, $inc: { ver: 1 } });
    return { status: 204 };
  } else if (call.method !== 'PUT') {
    throw new FhirError(405, 'not-supported', `${call.method} is not allowed on /administration/${type}/${id}`);
  }
  for (const name of call.query.keys()) if (name !== '_format') throw notImplemented(`The parameter '${name}' on ${call.method} /administration/${type}`);

  const body = checkBody(await call.body(), type, id);
  const newId = id ?? (typeof body.id === 'string' && ID_PATTERN.test(body.id) ? body.id : randomUUID());
  const res = { ...body, id: newId } as Resource;
  await checkUnique(col, res);
  const existing = id === undefined ? await col.findOne({ _id: `${type}/${newId}` as never }) as unknown as AdminDoc | null : current;
  if (id === undefined && existing && !existing.deleted) throw invalid(`${type}/${newId} exists already: update it with PUT`);
  const ver = (existing?.ver ?? 0) + 1;
  const lu = new Date();
  const stored = withMeta(res, ver, lu);
  await col.replaceOne({ _id: `${type}/${newId}` as never }, { type, res_id: newId, ver, lu, deleted: false, res: stored }, { upsert: true });
  const created = !existing || existing.deleted;
  return { status: created ? 201 : 200, body: stored, headers: { ETag: `W/"${ver}"`, Location: `${base}/${type}/${newId}/_history/${ver}` } };
}
