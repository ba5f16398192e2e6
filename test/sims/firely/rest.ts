/**
 * The RESTful interactions on resources: create, read, vread, update, delete, instance history,
 * type search. Writes go through one queue per server (see WriteQueue); reads see committed state.
 */
import { randomUUID } from 'node:crypto';
import type { Collection, Document } from 'mongodb';
import { appendVersion, currentEntry, versions, type Entry, type Resource, type SeqClock, type WriteQueue } from './entries';
import { FhirError, historyBundle, ID_PATTERN, invalid, notImplemented, RESOURCE_TYPES, versionHeaders, type Reply } from './fhir';
import { search } from './search';

export interface RestContext {
  col: Collection<Document>;
  writes: WriteQueue;
  clock: SeqClock;
  defaultTotal: 'accurate' | 'none';
  differ(res: Resource): Resource;
}

export interface RestCall {
  method: string;
  /** Path segments after the base, e.g. ['Patient', 'abc', '_history']. */
  segments: string[];
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  base: string;
  /** The parsed JSON body (415/400 are thrown by the server before this is called). */
  body(): Promise<unknown>;
}

const gone = (type: string, id: string) => new FhirError(410, 'deleted', `Resource ${type}/${id} was deleted`);
const notFound = (type: string, id: string) => new FhirError(404, 'not-found', `Resource ${type}/${id} is not known`);

function onlyParams(call: RestCall, allowed: string[]): void {
  for (const name of call.query.keys()) if (!allowed.includes(name)) throw notImplemented(`The parameter '${name}' on ${call.method} ${call.segments.join('/')}`);
}

function representation(call: RestCall, status: number, e: Entry, ctx: RestContext): Reply {
  const prefer = String(call.headers.prefer ?? 'return=representation');
  if (prefer !== 'return=representation' && prefer !== 'return=minimal') throw notImplemented(`Prefer: ${prefer}`);
  const body = prefer === 'return=minimal' ? undefined : ctx.differ(e.res!);
  return { status, body, headers: versionHeaders(call.base, e) };
}

async function resourceBody(call: RestCall, type: string, id?: string): Promise<Resource> {
  const body = await call.body();
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid('The request body is not a FHIR resource (a JSON object)');
  const res = body as Resource;
  if (res.resourceType !== type) throw invalid(`The body is a ${String(res.resourceType)}, not a ${type}`);
  if (id !== undefined && res.id !== id) throw invalid(`The id in the body ('${String(res.id)}') does not match the id in the URL ('${id}')`);
  return res;
}

function checkIfMatch(call: RestCall, current: Entry | null): void {
  const ifMatch = call.headers['if-match'];
  if (ifMatch === undefined) return;
  const wanted = /^W\/"([^"]+)"$/.exec(String(ifMatch))?.[1];
  if (!wanted) throw invalid(`If-Match: '${String(ifMatch)}' is not a weak ETag such as W/"3"`);
  if (!current || current.deleted || current.ver !== wanted) {
    throw new FhirError(412, 'conflict', `Version ${wanted} is not the current version of the resource (${current && !current.deleted ? current.ver : 'none'})`);
  }
}

function refuseConditional(call: RestCall): void {
  for (const h of ['if-none-exist', 'if-none-match', 'if-modified-since']) {
    if (call.headers[h] !== undefined) throw notImplemented(`The conditional header ${h}`);
  }
}

export async function handleRest(call: RestCall, ctx: RestContext): Promise<Reply> {
  const [type, id, op, vid, ...rest] = call.segments;
  if (!RESOURCE_TYPES.includes(type)) throw new FhirError(404, 'not-supported', `Request for not-supported ResourceType(s) ${type}`);
  if (rest.length || (op !== undefined && op !== '_history') || id?.startsWith('_') || id?.startsWith('$')) {
    throw notImplemented(`${call.method} ${call.segments.join('/')}`);
  }
  if (id !== undefined && !ID_PATTERN.test(id)) throw invalid(`'${id}' is not a valid resource id`);
  refuseConditional(call);
  const { col } = ctx;

  if (id === undefined) {
    if (call.method === 'GET') return { status: 200, body: await search({ col, base: call.base, type, query: call.query, defaultTotal: ctx.defaultTotal, differ: ctx.differ }) };
    if (call.method === 'POST') {
      onlyParams(call, ['_format']);
      const res = await resourceBody(call, type);
      const e = await ctx.writes.run(() => appendVersion(col, ctx.clock, type, randomUUID(), res, 'created', null));
      return representation(call, 201, e, ctx);
    }
    throw new FhirError(405, 'not-supported', `${call.method} is not allowed on ${type}`);
  }

  onlyParams(call, ['_format']);
  if (op === '_history') {
    if (call.method !== 'GET') throw new FhirError(405, 'not-supported', `${call.method} is not allowed on ${type}/${id}/_history`);
    if (vid === undefined) {
      const list = await versions(col, type, id);
      if (!list.length) throw notFound(type, id);
      return { status: 200, body: historyBundle(call.base, list, ctx.differ) };
    }
    const current = await currentEntry(col, type, id);
    const e = current?.ver === vid ? current : (await versions(col, type, id)).find((v) => v.ver === vid);
    if (!e) throw new FhirError(404, 'not-found', `Version ${vid} of ${type}/${id} is not known`);
    if (e.deleted) throw gone(type, id);
    return { status: 200, body: ctx.differ(e.res!), headers: versionHeaders(call.base, e) };
  }

  switch (call.method) {
    case 'GET': {
      const e = await currentEntry(col, type, id);
      if (!e) throw notFound(type, id);
      if (e.deleted) throw gone(type, id);
      const { Location: _, ...headers } = versionHeaders(call.base, e);
      return { status: 200, body: ctx.differ(e.res!), headers };
    }
    case 'PUT': {
      const res = await resourceBody(call, type, id);
      return ctx.writes.run(async () => {
        const current = await currentEntry(col, type, id);
        checkIfMatch(call, current);
        const exists = current !== null && !current.deleted;
        const e = await appendVersion(col, ctx.clock, type, id, res, exists ? 'updated' : 'created', current);
        return representation(call, exists ? 200 : 201, e, ctx);
      });
    }
    case 'DELETE':
      return ctx.writes.run(async () => {
        const current = await currentEntry(col, type, id);
        if (!current) throw notFound(type, id);
        checkIfMatch(call, current);
        if (current.deleted) return { status: 204 };
        const e = await appendVersion(col, ctx.clock, type, id, null, 'deleted', current);
        return { status: 204, headers: { ETag: `W/"${e.ver}"` } };
      });
    default:
      throw new FhirError(405, 'not-supported', `${call.method} is not allowed on ${type}/${id}`);
  }
}
