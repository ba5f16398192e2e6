/**
 * The administration database (vonkadmin) across the migration. Firely's zero-downtime migration
 * moves the data database only: the new server initialises a new vonkadmin from scratch, and the
 * custom conformance resources of the old one are created again "by manually creating/updating
 * the resources via the new FS installation's /administration endpoints" (firely-docs
 * releasenotes/zero_downtime_migration.rst, "Migration of Admin Database";
 * maintenance/conformanceresources.rst, "Manage Conformance Resources with the Administration API").
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import { CORE_CANONICAL_BASE } from '../../contracts/firely/schema';
import { fhir, outcomeText, search, type Entry } from './fhir-client';

const sleep = (ms: number) => Context.current().sleep(ms);
const ADMIN = '/administration';
/** Resources of one type listed at most (the FHIR specification has about 4,000 conformance resources in all). */
const MAX_PER_TYPE = 10_000;

/**
 * The new server's /administration endpoint answers a search. 423 Locked means it is still loading
 * its conformance resources (at first start: the specification's, into a new vonkadmin): it waits.
 * 403 means the worker is not in Administration.AllowedNetworks.
 */
async function waitForAdministration(base: string, type: string, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const a = await fhir(base, `${ADMIN}/${type}?_count=1&_elements=url`).catch((err: Error) => ({ status: 0, error: err.message }));
    if (a.status === 200 && 'body' in a && a.body?.resourceType === 'Bundle') return;
    if (a.status === 403) {
      throw ApplicationFailure.nonRetryable(`The new Firely Server at ${base} refuses ${ADMIN}/${type} with 403: the worker's address is not in its Administration.AllowedNetworks, or the operation is network-protected. Allow the worker's address there.`, 'AdministrationForbidden');
    }
    if (a.status !== 423 && Date.now() > deadline) {
      throw ApplicationFailure.nonRetryable(`The administration endpoint of the new Firely Server at ${base} does not answer: GET ${ADMIN}/${type} ${'error' in a ? a.error : outcomeText(a)}.`, 'AdministrationNotReady');
    }
    if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`The new Firely Server at ${base} stayed busy loading its conformance resources (423 Locked on ${ADMIN}) longer than ${withinMs / 1000} s.`, 'AdministrationNotReady');
    Context.current().heartbeat(`${ADMIN}/${type}: ${a.status || 'no answer'}`);
    await sleep(1000);
  }
}

interface Listed { type: string; id: string; key: string; url?: string; version?: string; versionId: string; lastUpdated: string }

/**
 * A conformance resource is the same one on both servers when its canonical url and version are (ids
 * may differ). A Subscription has no url: the same criteria to the same channel endpoint is the same
 * one (a second would notify twice). Anything else without a url: by its id.
 */
function listed(type: string, e: Entry): Listed {
  const str = (v: unknown) => typeof v === 'string' ? v : undefined;
  const url = str(e.resource.url);
  const version = str(e.resource.version);
  const channel = (e.resource.channel ?? {}) as Record<string, unknown>;
  const key = url ? `${type} ${url}|${version ?? ''}`
    : type === 'Subscription' && str(e.resource.criteria) ? `Subscription ${str(e.resource.criteria)} -> ${str(channel.type) ?? ''} ${str(channel.endpoint) ?? ''}`
      : `${type}/${e.id}`;
  return { type, id: e.id, url, version, versionId: e.versionId, lastUpdated: e.lastUpdated, key };
}

/** The resources of `types` on a server's Administration API; a type it answers 404 for (a plugin not loaded) is added to `notServed`. */
async function list(base: string, types: string[], notServed: string[] = []): Promise<Listed[]> {
  const all: Listed[] = [];
  for (const type of types) {
    const probe = await fhir(base, `${ADMIN}/${type}?_count=1&_elements=url`);
    if (probe.status === 404) { notServed.push(type); continue; }
    const found = await search(`${base}${ADMIN}`, type, '_count=100&_elements=url,version,criteria,channel', MAX_PER_TYPE).catch((err: Error) => {
      throw new Error(`Listing ${type} on ${base}${ADMIN}: ${err.message}`);
    });
    if (found.length >= MAX_PER_TYPE) throw ApplicationFailure.nonRetryable(`${base}${ADMIN} lists ${MAX_PER_TYPE} or more ${type} resources, more than the runbook compares.`, 'TooManyConformanceResources');
    all.push(...found.map((e) => listed(type, e)));
    Context.current().heartbeat({ listed: type, resources: all.length });
  }
  return all;
}

const name = (r: Listed) => `${r.type}/${r.id}${r.url ? ` (${r.url}${r.version ? `|${r.version}` : ''})` : ''}`;

export interface ConformanceReport extends ChangeReport {
  /** The old server's resources not under the FHIR specification's canonical base. */
  custom: number;
  /** Created on the new server by this run (none in a dry run). */
  imported: string[];
  /** The old server's specification resources the new server does not have: its own version of the specification is what it uses. */
  olderDefaults: string[];
  /** Custom SearchParameters the ingest tool was not given at its start: the data it copies is not indexed for them until a reindex. */
  searchParameters: string[];
}

/**
 * Compares the two servers' Administration APIs, and creates on the new one the old one's custom
 * resources it lacks, with the same id (PUT: a retry writes the same), then lists again to see
 * them there. With `importMissing` false it refuses, naming what is missing. It refuses too when
 * every resource on the two servers has the same id, version and lastUpdated: a new vonkadmin loads
 * its conformance resources itself at first start, so that means one administration database shared
 * (or copied).
 */
export async function syncConformance(r: {
  oldUrl: string; newUrl: string; types: string[]; importMissing: boolean; withinSeconds: number; dryRun: boolean;
  /** The canonical urls of the SearchParameters the ingest tool was started with (--extraParameters). */
  indexedAtLoad?: string[];
}): Promise<ConformanceReport> {
  await waitForAdministration(r.newUrl, r.types[0], r.withinSeconds * 1000);
  const oldNotServed: string[] = [];
  const old = await list(r.oldUrl, r.types, oldNotServed);
  let fresh = await list(r.newUrl, r.types);
  const stamp = (x: Listed) => `${x.type}/${x.id}/${x.versionId}/${x.lastUpdated}`;
  const newStamps = new Set(fresh.map(stamp));
  if (old.length > 0 && old.length === fresh.length && old.every((x) => newStamps.has(stamp(x)))) {
    throw ApplicationFailure.nonRetryable(`The new Firely Server's administration database looks like the old server's vonkadmin: all ${old.length} resources of ${r.types.join(', ')} on ${r.newUrl}${ADMIN} have the id, version and lastUpdated they have on ${r.oldUrl}${ADMIN}. ` +
      'A new server initialises its own vonkadmin from scratch (Firely: "specifying a different connection string for the admin database than your previous installation"): point Administration:MongoDbOptions:ConnectionString (or its SQLite file) elsewhere and restart it. The proxy was not switched.', 'SharedAdministrationDatabase');
  }
  const custom = old.filter((x) => !x.url?.startsWith(CORE_CANONICAL_BASE));
  const on = (xs: Listed[]) => { const keys = new Set(xs.map((x) => x.key)); return (x: Listed) => keys.has(x.key); };
  const onNew = on(fresh);
  const missing = old.filter((x) => !onNew(x));
  const olderDefaults = missing.filter((x) => x.url?.startsWith(CORE_CANONICAL_BASE)).map(name);
  const toImport = missing.filter((x) => !x.url?.startsWith(CORE_CANONICAL_BASE));
  const customParameters = custom.filter((x) => x.type === 'SearchParameter');
  const indexed = customParameters.filter((x) => r.indexedAtLoad?.includes(x.url!)).map(name);
  const searchParameters = customParameters.filter((x) => !r.indexedAtLoad?.includes(x.url!)).map(name);
  const report: ConformanceReport = { changed: false, custom: custom.length, imported: [], olderDefaults, searchParameters, actions: [] };
  const summary = `${custom.length} custom resources on the old server (${r.types.length} types compared), ${custom.length - toImport.length} on the new one already`;
  const notes = () => {
    if (indexed.length) report.actions.push(`custom SearchParameters ${indexed.join(', ')}: given to the ingest tool at its start (--extraParameters), which indexes the data it copies for them`);
    if (searchParameters.length) {
      report.actions.push(`custom SearchParameters ${searchParameters.join(', ')}: the ingest tool indexes only the FHIR specification's search parameters, so the copied data is not indexed for these until a $reindex on the new server (or fsi --extraParameters)`);
    }
    if (oldNotServed.length) report.actions.push(`the old server's Administration API does not serve ${oldNotServed.join(', ')} (404): none of those to compare`);
    if (olderDefaults.length) report.actions.push(`specification resources of the old server not on the new one (left to the new server's own specification): ${olderDefaults.slice(0, 20).join(', ')}${olderDefaults.length > 20 ? ', ...' : ''}`);
    return report;
  };

  if (!toImport.length) {
    report.actions.push(`${summary}; nothing to import`);
    return notes();
  }
  if (!r.importMissing) {
    throw ApplicationFailure.nonRetryable(`The new Firely Server lacks ${toImport.length} custom resources of the old server's Administration API: ${toImport.slice(0, 50).map(name).join(', ')}${toImport.length > 50 ? ', ...' : ''}. ` +
      `Create them on ${r.newUrl}${ADMIN} (or in its ImportDirectory), or let the runbook do it (admin.importMissing). The proxy was not switched.`, 'ConformanceResourcesMissing');
  }
  if (r.dryRun) {
    report.actions.push(`${summary}; would create on the new server: ${toImport.map(name).join(', ')}`);
    return notes();
  }
  for (const x of toImport) {
    const path = `${ADMIN}/${x.type}/${encodeURIComponent(x.id)}`;
    const got = await fhir(r.oldUrl, path);
    if (got.status !== 200 || got.body?.resourceType !== x.type || got.body.id !== x.id) throw new Error(`Reading ${name(x)} from the old server: ${outcomeText(got)}`);
    // meta is the store's: the new server sets its own versionId and lastUpdated.
    const { meta: _meta, ...body } = got.body;
    const put = await fhir(r.newUrl, path, { method: 'PUT', body });
    if (put.status !== 200 && put.status !== 201) {
      throw ApplicationFailure.nonRetryable(`The new Firely Server refused ${name(x)} (PUT ${path}): ${outcomeText(put)}. ${report.imported.length} were created before it: ${report.imported.join(', ') || 'none'}.`, 'ConformanceImportRefused');
    }
    report.imported.push(name(x));
    report.changed = true;
    Context.current().heartbeat({ imported: report.imported.length, of: toImport.length });
  }
  fresh = await list(r.newUrl, r.types);
  const stillMissing = toImport.filter((x) => !on(fresh)(x));
  if (stillMissing.length) throw new Error(`After the import the new server still lacks ${stillMissing.map(name).join(', ')}`);
  report.changed = true;
  report.actions.push(`${summary}; created on the new server through ${ADMIN}: ${report.imported.join(', ')}`);
  return notes();
}
