/**
 * The two Firely Servers as their REST APIs show them: alive, which version, ready, what they hold
 * (per-type counts, a sample compared field by field), and a smoke test of the new one. And, after
 * the switch, what still reaches the old one and what was written on the new one.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { MigrateFirelyServerInput } from '../../contracts/firely/schema';
import { cmd } from '../lib/shell';
import { onSshHost } from '../lib/ssh-pool';
import { countOf, fhir, outcomeText, search, type Entry } from './fhir-client';
import { refuse } from '../../contracts/refuse';

const sleep = (ms: number) => Context.current().sleep(ms);

/** software.version of /metadata, when the server is a Firely Server. */
async function versionOf(base: string): Promise<string> {
  const a = await fhir(base, '/metadata');
  const software = a.body?.software as { name?: unknown; version?: unknown } | undefined;
  if (a.status !== 200 || a.body?.resourceType !== 'CapabilityStatement') throw new Error(`${base}/metadata: ${outcomeText(a)}`);
  if (software?.name !== 'Firely Server' || typeof software.version !== 'string') throw new Error(`${base}/metadata does not name a Firely Server (software: ${JSON.stringify(software ?? null).slice(0, 200)})`);
  return software.version;
}

const major = (v: string) => Number(/^(\d+)/.exec(v)?.[1] ?? NaN);

/** The old server answers $liveness and is Firely Server 5.0 or later (what the migration reads). */
export async function checkOldServer(r: { baseUrl: string }): Promise<{ version: string }> {
  let live;
  try {
    live = await fhir(r.baseUrl, '/$liveness', { timeoutMs: 10_000 });
  } catch (err) {
    throw refuse(`The old Firely Server does not answer: ${(err as Error).message}.`);
  }
  if (live.status === 402) throw refuse(`The old Firely Server at ${r.baseUrl} answers $liveness with 402: its license is not valid.`);
  if (live.status !== 200) throw refuse(`The old Firely Server at ${r.baseUrl} is not alive: $liveness answered ${outcomeText(live)}.`);
  const version = await versionOf(r.baseUrl).catch((err: Error) => { throw refuse(err.message); });
  if (!(major(version) >= 5)) throw refuse(`The old server is Firely Server ${version}: the migration reads from 5.0.0 or later. Upgrade it first.`);
  return { version };
}

export interface TypeCount { type: string; old: number; new: number }

/** Per-type counts, the old server first (so the new one had the longest to catch up). */
export async function countBoth(r: { oldUrl: string; newUrl: string; types: string[] }): Promise<TypeCount[]> {
  const counts: TypeCount[] = [];
  for (const type of r.types) {
    const old = await countOf(r.oldUrl, type);
    counts.push({ type, old, new: await countOf(r.newUrl, type) });
    Context.current().heartbeat();
  }
  return counts;
}

export const countsLine = (counts: TypeCount[]) => counts.map((c) => `${c.type} ${c.old} -> ${c.new}`).join(', ');

/** The fields of two versions of a resource that differ (top level), `meta` left out: a store sets it. */
function differingFields(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)].filter((k) => k !== 'meta'));
  return [...keys].filter((k) => !isDeepStrictEqual(a[k], b[k])).sort();
}

export interface SampleResult { compared: number; inFlight: number; differing: string[] }

type Verdict = 'same' | 'inFlight' | string;

/** One sampled resource on the new server against the old server's version of it. */
async function compareOne(r: { oldUrl: string; newUrl: string }, type: string, e: Entry): Promise<Verdict> {
  const got = await fhir(r.newUrl, `/${type}/${encodeURIComponent(e.id)}`);
  if (got.status !== 200) return `${type}/${e.id}: the new server answers ${outcomeText(got)}`;
  const version = String((got.body?.meta as { versionId?: unknown } | undefined)?.versionId);
  if (version !== e.versionId) return `${type}/${e.id}: version ${version} on the new server, ${e.versionId} on the old`;
  const fields = differingFields(e.resource, got.body!);
  return fields.length ? `${type}/${e.id} version ${e.versionId}: ${fields.join(', ')} differ` : 'same';
}

/**
 * The oldest and the newest resources of each type on the old server, read again on the new one and
 * compared. One that differs is looked at again over the next 20 s (two polls of the tool): if the
 * old server wrote a newer version meanwhile it was in flight; if it still differs, it differs.
 */
export async function compareSample(r: { oldUrl: string; newUrl: string; types: string[]; size: number }): Promise<SampleResult> {
  const result: SampleResult = { compared: 0, inFlight: 0, differing: [] };
  if (!r.size) return result;
  let suspects: Array<{ type: string; e: Entry; why: string }> = [];
  for (const type of r.types) {
    const half = Math.max(1, Math.ceil(r.size / 2));
    const picked = new Map<string, Entry>();
    for (const sort of ['_lastUpdated', '-_lastUpdated']) {
      for (const e of await search(r.oldUrl, type, `_sort=${sort}&_count=${half}`, half)) picked.set(e.id, e);
    }
    for (const e of picked.values()) {
      Context.current().heartbeat();
      result.compared += 1;
      const verdict = await compareOne(r, type, e);
      if (verdict !== 'same') suspects.push({ type, e, why: verdict });
    }
  }
  for (let round = 0; round < 4 && suspects.length; round++) {
    await sleep(5_000);
    const still: typeof suspects = [];
    for (const x of suspects) {
      const now = await fhir(r.oldUrl, `/${x.type}/${encodeURIComponent(x.e.id)}`);
      if (now.status !== 200 || String((now.body?.meta as { versionId?: unknown } | undefined)?.versionId) !== x.e.versionId) { result.inFlight += 1; continue; }
      const verdict = await compareOne(r, x.type, x.e);
      if (verdict !== 'same') still.push({ ...x, why: verdict });
    }
    suspects = still;
  }
  result.differing = suspects.map((x) => x.why);
  return result;
}

/** $readiness 200 (423 means busy with a long task: wait), and /metadata names the expected version. */
async function waitUntilReady(base: string, expectedVersion: string, withinMs: number): Promise<string> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const a = await fhir(base, '/$readiness', { timeoutMs: 10_000 }).catch((err: Error) => ({ status: 0, body: undefined, headers: {}, error: err.message }));
    if (a.status === 200) break;
    if (a.status === 402) throw ApplicationFailure.nonRetryable(`The new Firely Server at ${base} answers 402: its license is not valid.`, 'NewServerNotReady');
    if (a.status !== 423 && Date.now() > deadline) throw ApplicationFailure.nonRetryable(`The new Firely Server at ${base} is not ready: $readiness ${'error' in a ? a.error : outcomeText(a)}.`, 'NewServerNotReady');
    if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`The new Firely Server at ${base} stayed busy (423 Locked from $readiness) longer than ${withinMs / 1000} s.`, 'NewServerNotReady');
    Context.current().heartbeat(`$readiness ${a.status || 'no answer'}`);
    await sleep(1000);
  }
  const version = await versionOf(base);
  if (version !== expectedVersion && !version.startsWith(`${expectedVersion}.`)) {
    throw ApplicationFailure.nonRetryable(`The new server at ${base} is Firely Server ${version}, not ${expectedVersion}.`, 'NewServerWrongVersion');
  }
  return version;
}

/** Create, read, update, history, search, delete, 410 of one tagged resource: the new server does what clients will ask. */
async function smokeTest(base: string): Promise<string> {
  const tag = `smoke-${randomUUID()}`;
  const fail = (what: string, a: { status: number }) => { throw ApplicationFailure.nonRetryable(`The smoke test on the new server failed at ${what}: ${outcomeText(a as never)}.`, 'SmokeTestFailed'); };
  const resource = { resourceType: 'Basic', code: { text: 'Runbooks smoke test' }, meta: { tag: [{ system: 'https://runbooks.dev/smoke', code: tag }] } };
  const created = await fhir(base, '/Basic', { method: 'POST', body: resource });
  const id = created.body?.id;
  if (created.status !== 201 || typeof id !== 'string') fail('create (POST /Basic)', created);
  const path = `/Basic/${encodeURIComponent(id as string)}`;
  const read = await fhir(base, path);
  if (read.status !== 200) fail(`read (GET ${path})`, read);
  const updated = await fhir(base, path, { method: 'PUT', body: { ...resource, id, code: { text: 'Runbooks smoke test, updated' } } });
  if (updated.status !== 200) fail(`update (PUT ${path})`, updated);
  const history = await fhir(base, `${path}/_history`);
  if (history.status !== 200 || (history.body?.entry as unknown[] | undefined)?.length !== 2) fail(`history (2 versions of ${path})`, history);
  const found = await fhir(base, `/Basic?_tag=${encodeURIComponent(`https://runbooks.dev/smoke|${tag}`)}`);
  if (found.status !== 200 || (found.body?.entry as unknown[] | undefined)?.length !== 1) fail('search by _tag', found);
  const deleted = await fhir(base, path, { method: 'DELETE' });
  if (deleted.status !== 204 && deleted.status !== 200) fail(`delete (DELETE ${path})`, deleted);
  const gone = await fhir(base, path);
  if (gone.status !== 410) fail(`read after delete (410 expected from GET ${path})`, gone);
  return `Basic/${id}`;
}

export interface NewServerReport { version: string; smokeTest: string; counts: TypeCount[]; sample: SampleResult }

/**
 * The new server before clients reach it: ready, the expected version, the smoke test, per-type
 * counts equal to the old server's within `tolerance`, and a sample equal field by field.
 */
export async function verifyNewServer(r: {
  oldUrl: string; newUrl: string; expectedVersion: string; types: string[]; tolerance: number; sampleSize: number; readyWithinSeconds: number; dryRun: boolean;
}): Promise<NewServerReport> {
  const version = await waitUntilReady(r.newUrl, r.expectedVersion, r.readyWithinSeconds * 1000);
  const smoke = r.dryRun ? 'not run in a dry-run' : await smokeTest(r.newUrl);
  const counts = await countBoth({ oldUrl: r.oldUrl, newUrl: r.newUrl, types: r.types });
  // In a dry-run nothing was ingested: there is nothing to compare yet.
  const sample = await compareSample({ oldUrl: r.oldUrl, newUrl: r.newUrl, types: r.types, size: r.dryRun ? 0 : r.sampleSize });
  if (r.dryRun) return { version, smokeTest: smoke, counts, sample };
  const apart = counts.filter((c) => Math.abs(c.old - c.new) > r.tolerance);
  if (apart.length) throw ApplicationFailure.retryable(`The new server's counts differ from the old one's by more than ${r.tolerance}: ${countsLine(apart)}.`, 'CountsDiffer');
  if (sample.differing.length) {
    throw ApplicationFailure.nonRetryable(`Resources on the new server differ from the old server's: ${sample.differing.slice(0, 10).join('; ')}. ` +
      'Find why (a plugin, a custom search parameter, a write that bypassed the old server) before the cutover; the proxy was not switched.', 'SampleDiffers');
  }
  return { version, smokeTest: smoke, counts, sample };
}

/** The newest lastUpdated over the types (an ISO instant), or '' when the server holds none. */
async function newestWrite(base: string, types: string[]): Promise<string> {
  let newest = '';
  for (const type of types) {
    const [e] = await search(base, type, '_sort=-_lastUpdated&_count=1', 1);
    if (e && e.lastUpdated > newest) newest = e.lastUpdated;
  }
  return newest;
}

export interface Write { type: string; id: string; versionId: string; lastUpdated: string }

/** The newest write of each type on a server (by `_lastUpdated`); deletions show in the counts, not here. */
export async function newestWrites(base: string, types: string[]): Promise<Write[]> {
  const writes: Write[] = [];
  for (const type of types) {
    const [e] = await search(base, type, '_sort=-_lastUpdated&_count=1', 1);
    if (e) writes.push({ type, id: e.id, versionId: e.versionId, lastUpdated: e.lastUpdated });
  }
  return writes;
}

/** The writes that are not on the new server in that version or a newer one, described. */
export async function writesNotArrived(newUrl: string, writes: Write[]): Promise<string[]> {
  const behind: string[] = [];
  for (const w of writes) {
    const got = await fhir(newUrl, `/${w.type}/${encodeURIComponent(w.id)}`);
    const lu = String((got.body?.meta as { lastUpdated?: unknown } | undefined)?.lastUpdated ?? '');
    if (got.status !== 200 || lu < w.lastUpdated) behind.push(`${w.type}/${w.id} version ${w.versionId} of ${w.lastUpdated} (new server: ${got.status === 200 ? `version of ${lu}` : outcomeText(got)})`);
  }
  return behind;
}

/** After the switch: waits until no write reached the old server for `idleSeconds` (its old workers drained). */
export async function waitUntilOldServerIdle(r: { oldUrl: string; types: string[]; idleSeconds: number; withinSeconds: number; dryRun: boolean }): Promise<{ lastWrite: string }> {
  if (r.dryRun) return { lastWrite: '' };
  const deadline = Date.now() + r.withinSeconds * 1000;
  let last = await newestWrite(r.oldUrl, r.types);
  let since = Date.now();
  while (Date.now() - since < r.idleSeconds * 1000) {
    if (Date.now() > deadline) throw new Error(`The old server still receives writes (the newest at ${last}) ${r.withinSeconds} s after the switch: is a client reaching it around the proxy?`);
    Context.current().heartbeat(`newest write on the old server: ${last || 'none'}`);
    await sleep(1000);
    const now = await newestWrite(r.oldUrl, r.types);
    if (now !== last) { last = now; since = Date.now(); }
  }
  return { lastWrite: last };
}

/** Every write the old server took since `since` is on the new server, in that version or a newer one. */
export async function checkLateWritesArrived(r: { oldUrl: string; newUrl: string; types: string[]; since: string }): Promise<{ checked: number }> {
  const missing: string[] = [];
  let checked = 0;
  for (const type of r.types) {
    for (const e of await search(r.oldUrl, type, `_lastUpdated=ge${encodeURIComponent(r.since)}&_sort=_lastUpdated&_count=1000`, 10_000)) {
      checked += 1;
      Context.current().heartbeat();
      const got = await fhir(r.newUrl, `/${type}/${encodeURIComponent(e.id)}`);
      const lu = String((got.body?.meta as { lastUpdated?: unknown } | undefined)?.lastUpdated ?? '');
      if (got.status !== 200 && got.status !== 410) missing.push(`${type}/${e.id} (${outcomeText(got)})`);
      else if (got.status === 200 && lu < e.lastUpdated) missing.push(`${type}/${e.id} (version ${e.versionId} of ${e.lastUpdated} not there)`);
    }
  }
  if (missing.length) throw ApplicationFailure.retryable(`${missing.length} writes made on the old server since ${r.since} are not on the new one yet: ${missing.slice(0, 10).join(', ')}`, 'LateWritesMissing');
  return { checked };
}

/** Resources written through the new server since the switch (not copies of the old server's versions): what a rollback leaves behind. */
export async function writesOnNewServerSince(r: { oldUrl: string; newUrl: string; types: string[]; since: string; limit?: number }): Promise<{ count: number; resources: string[] }> {
  const resources: string[] = [];
  for (const type of r.types) {
    for (const e of await search(r.newUrl, type, `_lastUpdated=ge${encodeURIComponent(r.since)}&_sort=_lastUpdated&_count=1000`, r.limit ?? 10_000)) {
      Context.current().heartbeat();
      const old = await fhir(r.oldUrl, `/${type}/${encodeURIComponent(e.id)}`);
      const oldLu = String((old.body?.meta as { lastUpdated?: unknown } | undefined)?.lastUpdated ?? '');
      if (old.status !== 200 || oldLu !== e.lastUpdated) resources.push(`${type}/${e.id}`);
    }
  }
  return { count: resources.length, resources };
}

/** Stops the old server with the operator's command, then waits until it no longer answers. */
export async function stopOldServer(r: { oldUrl: string; stop: MigrateFirelyServerInput['oldServer']['stop']; dryRun: boolean }): Promise<ChangeReport> {
  const alive = () => fhir(r.oldUrl, '/$liveness', { timeoutMs: 5_000 }).then(() => true, () => false);
  if (!await alive()) return { changed: false, actions: [] };
  const h = r.stop.host;
  const line = cmd(...r.stop.command);
  if (r.dryRun) return { changed: false, actions: [`would stop the old Firely Server on ${h.name}: ${line}`] };
  await onSshHost(h, (s) => s.run(line, { what: 'stopping the old Firely Server', timeoutMs: 120_000 }));
  for (let i = 0; await alive(); i++) {
    if (i > 60) throw new Error(`The old Firely Server at ${r.oldUrl} still answers 60 s after \`${line}\` on ${h.name}.`);
    Context.current().heartbeat();
    await sleep(1000);
  }
  return { changed: true, actions: [`stopped the old Firely Server on ${h.name} (${line}); ${r.oldUrl} no longer answers`] };
}
