/**
 * The Firely simulators (test/sims/firely) behave as the reference notes say Firely Server and
 * Firely Server Ingest do, over real MongoDB-protocol databases (FerretDB on SQLite): the FHIR REST
 * surface a runbook's checks use (CRUD, 410, history, counting, $readiness), and the ingest tool's
 * command line, log lines, OnlyIfNewer, license tokens, recovery journal and continuous polling.
 * Every server and tool run is a real process started from its bin/ command.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { startFerretDb, type FerretDb } from './support/ferretdb';
import { appendVersion, entries, provision, schemaVersionOf, SeqClock, type Entry } from './sims/firely/entries';
import { FSI_BIN, launch, runFsi, SERVER_BIN, startFirelyServer, TOKENS, writeLicense, type FirelySim } from './sims/firely/control';

const IDLE_LINE = 'No new items found in the database. Waiting for 00:00:05 before retrying...';

let ferret: FerretDb;
let mongo: MongoClient;
let work: string;
const servers: FirelySim[] = [];

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'firely-sim-test-'));
  ferret = await startFerretDb();   // builds FerretDB first if this machine has never built it
  mongo = await MongoClient.connect(ferret.url);
}, 180_000);

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await mongo?.close();
  await ferret?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Answer { status: number; headers: Headers; body: any }

async function fhir(base: string, method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${urlPath}`, {
    method, headers: { ...(body !== undefined ? { 'Content-Type': 'application/fhir+json' } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function server(name: string, version: string, database: string): Promise<FirelySim> {
  const s = await startFirelyServer({ name, version, mongoUrl: ferret.uri(database), stateDir: path.join(work, `${name}-${database}`) });
  servers.push(s);
  return s;
}

/** An old 5.x server and a new 6.x one, each on a database of its own. */
const pair = (label: string) => Promise.all([server('old', '5.11.0', `${label}_old`), server('new', '6.1.0', `${label}_new`)]);

const patient = (family: string, extra: Record<string, unknown> = {}) => ({ resourceType: 'Patient', name: [{ family }], ...extra });

async function count(s: FirelySim, type: string): Promise<number> {
  const r = await fhir(s.baseUrl, 'GET', `/${type}?_summary=count&_total=accurate`);
  expect(r.status).toBe(200);
  return r.body.total;
}

async function eventually<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The ingest tool's migration command line, as the procedure gives it (with the current OnlyIfNewer). */
function fsiArgs(license: string, from: string, to: string, extra: string[] = []): string[] {
  return ['--fhir-version', 'R4', '--license', license, '--sourceType', 'MongoDb', '--srcMongoConnectionString', ferret.uri(from),
    '--srcMongoCollection', 'vonkentries', '--update-existing-resources', 'OnlyIfNewer', '--dbType', 'MongoDb',
    '--provisionTargetDatabase', 'true', '--mongoConnectionstring', ferret.uri(to), '--mongoCollection', 'vonkentries', ...extra];
}

const fullLicense = () => writeLicense(path.join(work, 'full-license.json'), [TOKENS.unlimited, TOKENS.migration]);
const targetEntries = (db: string) => mongo.db(db).collection('vonkentries').find({ type: { $exists: true } }).toArray() as unknown as Promise<Entry[]>;

test('FHIR CRUD: create, read, update, history, delete then 410, search and counts; errors as OperationOutcome', async () => {
  const [old] = await pair('crud');
  const created = await fhir(old.baseUrl, 'POST', '/Patient', patient('Smoke', { meta: { tag: [{ system: 'urn:runbooks', code: 'smoke' }] } }));
  expect(created.status).toBe(201);
  expect(created.headers.get('x-sim-server')).toBe('old');
  const id = created.body.id;
  expect(created.headers.get('location')).toBe(`${old.baseUrl}/Patient/${id}/_history/1`);
  expect(created.headers.get('etag')).toBe('W/"1"');

  expect((await fhir(old.baseUrl, 'GET', `/Patient/${id}`)).body).toEqual(created.body);
  const updated = await fhir(old.baseUrl, 'PUT', `/Patient/${id}`, { ...created.body, gender: 'female' }, { 'If-Match': 'W/"1"' });
  expect(updated).toMatchObject({ status: 200, body: { gender: 'female', meta: { versionId: '2' } } });
  expect(updated.body.meta.lastUpdated > created.body.meta.lastUpdated).toBe(true);
  expect((await fhir(old.baseUrl, 'PUT', `/Patient/${id}`, created.body, { 'If-Match': 'W/"1"' })).status).toBe(412);

  const found = await fhir(old.baseUrl, 'GET', '/Patient?_tag=urn:runbooks|smoke');
  expect(found.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1, entry: [{ resource: { id, gender: 'female' } }] });
  expect(await count(old, 'Patient')).toBe(1);

  expect((await fhir(old.baseUrl, 'DELETE', `/Patient/${id}`)).status).toBe(204);
  const gone = await fhir(old.baseUrl, 'GET', `/Patient/${id}`);
  expect(gone).toMatchObject({ status: 410, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'deleted' }] } });
  const history = await fhir(old.baseUrl, 'GET', `/Patient/${id}/_history`);
  expect(history.body.type).toBe('history');
  expect(history.body.entry.map((e: any) => [e.request.method, e.response.etag, e.resource?.meta.versionId])).toEqual([
    ['DELETE', 'W/"3"', undefined], ['PUT', 'W/"2"', '2'], ['POST', 'W/"1"', '1'],
  ]);
  expect(await count(old, 'Patient')).toBe(0);
  expect((await fhir(old.baseUrl, 'GET', `/Patient/${id}/_history/2`)).body.gender).toBe('female');

  // Anything the simulator does not implement is an error, never a lenient success.
  for (const [method, url, status, body, headers] of [
    ['GET', '/Patient?name=Smoke', 400], ['GET', '/Patient/nope', 404], ['GET', '/Unicorn/1', 404], ['GET', '/Patient/_history', 400],
    ['POST', '/', 400, { resourceType: 'Bundle', type: 'transaction' }], ['PUT', '/Patient/other', 400, patient('X', { id: 'mismatch' })],
    ['POST', '/Patient', 400, patient('X'), { 'If-None-Exist': 'identifier=1' }], ['GET', '/Patient?_format=xml', 406],
    ['POST', '/Patient', 415, undefined, { 'Content-Type': 'text/plain' }],
  ] as Array<[string, string, number, unknown?, Record<string, string>?]>) {
    const r = await fhir(old.baseUrl, method, url, body, headers);
    expect([method, url, r.status, r.body?.resourceType]).toEqual([method, url, status, 'OperationOutcome']);
  }
});

test('metadata names the version; a 6.x server counts only with _total=accurate and refuses a 5.x database', async () => {
  const [old, neu] = await pair('meta');
  for (const s of [old, neu]) {
    expect((await fhir(s.baseUrl, 'GET', '/metadata')).body).toMatchObject({ resourceType: 'CapabilityStatement', software: { name: 'Firely Server', version: s.version } });
    await fhir(s.baseUrl, 'POST', '/Observation', { resourceType: 'Observation', status: 'final' });
  }
  expect((await fhir(old.baseUrl, 'GET', '/Observation?_summary=count')).body.total).toBe(1);
  const noTotal = await fhir(neu.baseUrl, 'GET', '/Observation?_summary=count');
  expect(noTotal.status).toBe(200);
  expect(noTotal.body.total).toBeUndefined();
  expect(await count(neu, 'Observation')).toBe(1);

  const wrong = launch(SERVER_BIN, ['--name', 'wrong', '--version', '6.1.0', '--mongo-url', ferret.uri('meta_old'), '--port', '0']);
  expect(await wrong.exited).toEqual({ code: 1, signal: null });
  expect(wrong.output()).toMatch(/FTL\] Database meta_old has schema version 25; Firely Server 6\.1\.0 needs 26/);
});

test('fault knobs: $readiness 423 for N requests and for a time, a sample resource that differs, an invalid license', async () => {
  const [old] = await pair('knobs');
  const live = await fhir(old.baseUrl, 'GET', '/$liveness');
  expect(live.status).toBe(200);
  old.setFaults({ readinessLocked: { requests: 2 } });
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await fhir(old.baseUrl, 'GET', '/$readiness')).status);
  expect(statuses).toEqual([423, 423, 200]);

  old.setFaults({ lockReadinessForSeconds: 1 });
  const locked = await fhir(old.baseUrl, 'GET', '/$readiness');
  expect(locked).toMatchObject({ status: 423, body: { issue: [{ code: 'lock-error' }] } });
  expect((await fhir(old.baseUrl, 'GET', '/$liveness')).status).toBe(200);   // alive while busy
  await eventually(async () => (await fhir(old.baseUrl, 'GET', '/$readiness')).status === 200, 'readiness 200 once the lock expires');

  const p = (await fhir(old.baseUrl, 'POST', '/Patient', patient('Sample', { gender: 'male' }))).body;
  old.setFaults({ differ: [{ type: 'Patient', id: p.id, patch: { gender: 'unknown' } }] });
  expect((await fhir(old.baseUrl, 'GET', `/Patient/${p.id}`)).body.gender).toBe('unknown');
  old.setFaults({ licenseInvalid: true });
  expect((await fhir(old.baseUrl, 'GET', '/$liveness')).status).toBe(402);
  old.setFaults({});
  expect((await fhir(old.baseUrl, 'GET', `/Patient/${p.id}`)).body.gender).toBe('male');
});

test('the ingest tool copies every version and tombstone, then prints the idle line; the new server serves the same data', async () => {
  const [old, neu] = await pair('copy');
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await fhir(old.baseUrl, 'POST', '/Patient', patient(`P${i}`))).body.id);
  for (let i = 0; i < 3; i++) await fhir(old.baseUrl, 'POST', '/Observation', { resourceType: 'Observation', status: 'final' });
  await fhir(old.baseUrl, 'PUT', `/Patient/${ids[0]}`, { ...patient('P0-renamed'), id: ids[0] });
  await fhir(old.baseUrl, 'DELETE', `/Patient/${ids[1]}`);

  const fsi = launch(FSI_BIN, fsiArgs(fullLicense(), 'copy_old', 'copy_new', ['--srcMongoRunningMode', 'Continuous', '--mongoBatch', '4',
    '--useRecoveryJournal', path.join(work, 'copy-journal')]));
  await fsi.waitFor(new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d INF\\] ${IDLE_LINE.replace(/[.]/g, '\\.')}$`, 'm'));
  expect(fsi.output()).toMatch(/Batch 3: 2 items read, 2 saved as current, 0 saved as historical, 0 skipped, 0 already present, 0 errors\. 10 items processed in total\./);
  expect(await fsi.stop()).toEqual({ code: 0, signal: null });
  expect(fsi.output()).toContain('Application is shutting down...');

  expect([await count(neu, 'Patient'), await count(neu, 'Observation')]).toEqual([await count(old, 'Patient'), await count(old, 'Observation')]);
  const [fromOld, fromNew] = [await fhir(old.baseUrl, 'GET', `/Patient/${ids[0]}`), await fhir(neu.baseUrl, 'GET', `/Patient/${ids[0]}`)];
  expect(fromNew.body).toEqual(fromOld.body);
  expect(fromNew.headers.get('x-sim-server')).toBe('new');
  expect((await fhir(neu.baseUrl, 'GET', `/Patient/${ids[0]}/_history`)).body.total).toBe(2);
  expect((await fhir(neu.baseUrl, 'GET', `/Patient/${ids[1]}`)).status).toBe(410);
  // countDocuments on the collection counts versions, tombstones and the system document alike.
  const [src, dst] = ['copy_old', 'copy_new'].map((db) => mongo.db(db).collection('vonkentries'));
  expect(await dst.countDocuments()).toBe(await src.countDocuments());
  expect(await dst.countDocuments({})).toBe(11);
});

test('OnlyIfNewer: an older version from the source is saved as historical and never overwrites newer data on the target', async () => {
  const [old, neu] = await pair('newer');
  const a = (await fhir(old.baseUrl, 'POST', '/Patient', patient('A'))).body;
  const b = (await fhir(old.baseUrl, 'POST', '/Patient', patient('B'))).body;
  const license = fullLicense();
  expect((await runFsi(fsiArgs(license, 'newer_old', 'newer_new'))).code).toBe(0);

  await fhir(old.baseUrl, 'PUT', `/Patient/${a.id}`, { ...a, name: [{ family: 'A-on-old' }] });          // older ...
  const onNew = (await fhir(neu.baseUrl, 'PUT', `/Patient/${a.id}`, { ...a, name: [{ family: 'A-on-new' }] })).body;   // ... than this
  await fhir(old.baseUrl, 'PUT', `/Patient/${b.id}`, { ...b, name: [{ family: 'B-on-old' }] });
  const again = await runFsi(fsiArgs(license, 'newer_old', 'newer_new'));
  expect(again.code).toBe(0);
  expect(again.output).toMatch(/Migration finished: 4 items processed in total; this run: 1 saved as current, 1 saved as historical, 0 skipped, 2 already present, 0 errors\./);

  expect((await fhir(neu.baseUrl, 'GET', `/Patient/${a.id}`)).body).toEqual(onNew);
  expect((await fhir(neu.baseUrl, 'GET', `/Patient/${b.id}`)).body.name).toEqual([{ family: 'B-on-old' }]);
  const history = (await fhir(neu.baseUrl, 'GET', `/Patient/${a.id}/_history`)).body.entry.map((e: any) => e.resource.name[0].family);
  expect(history).toEqual(['A-on-new', 'A-on-old', 'A']);
});

test('the license needs the migration token (and the unlimited one for the journal); refusals exit 1 and write nothing', async () => {
  const noMigration = writeLicense(path.join(work, 'no-migration.json'), [TOKENS.unlimited]);
  const refused = await runFsi(fsiArgs(noMigration, 'lic_old', 'lic_new'));
  expect(refused.code).toBe(1);
  expect(refused.output).toMatch(/FTL\] The license does not contain the token http:\/\/fire\.ly\/vonk\/plugins\/migration, which a migration/);
  const essentials = writeLicense(path.join(work, 'essentials.json'), [TOKENS.bulkImport, TOKENS.migration]);
  const noJournal = await runFsi(fsiArgs(essentials, 'lic_old', 'lic_new', ['--useRecoveryJournal', path.join(work, 'lic-journal')]));
  expect([noJournal.code, noJournal.output]).toEqual([1, expect.stringContaining(`requires the token ${TOKENS.unlimited}`)]);
  expect(await mongo.db('lic_new').listCollections().toArray()).toEqual([]);

  const typo = await runFsi([...fsiArgs(fullLicense(), 'lic_old', 'lic_new'), '--srcMongoRunMode', 'Continuous']);
  expect([typo.code, typo.output]).toEqual([1, expect.stringContaining("Unrecognized command or argument '--srcMongoRunMode'.")]);
  // Provisioning only, as the sharding recipe does before sh.shardCollection.
  const provisioned = await runFsi(['--fhir-version', 'R4', '--license', fullLicense(), '--sourceType', 'None', '--dbType', 'MongoDb',
    '--provisionTargetDatabase', 'true', '--mongoConnectionstring', ferret.uri('lic_new')]);
  expect(provisioned.code).toBe(0);
  expect(await mongo.db('lic_new').collection('vonkentries').findOne({ _id: 'vonk-system' as never })).toMatchObject({ schemaVersion: 26 });
});

test('a crash mid-batch resumes from the recovery journal: every entry on the target exactly once', async () => {
  const source = entries(mongo.db('crash_old'));
  await provision(source, schemaVersionOf('5.11.0'), 'test');
  const clock = new SeqClock();
  for (let i = 0; i < 25; i++) await appendVersion(source, clock, 'Patient', `p${i}`, patient(`P${i}`), 'created');
  const journal = path.join(work, 'crash-journal');
  const faults = path.join(work, 'crash-faults.json');
  writeFileSync(faults, JSON.stringify({ crashAfterItems: 15 }));
  const args = fsiArgs(fullLicense(), 'crash_old', 'crash_new', ['--mongoBatch', '10', '--useRecoveryJournal', journal]);

  const crashed = await runFsi(args, { FSI_SIM_FAULTS: faults });
  expect(crashed.signal).toBe('SIGKILL');
  expect(JSON.parse(readFileSync(path.join(journal, 'fsi-journal.json'), 'utf8'))).toMatchObject({ processed: 10, batches: 1 });
  expect(await targetEntries('crash_new')).toHaveLength(15);
  expect(JSON.parse(readFileSync(faults, 'utf8'))).toEqual({});

  const resumed = await runFsi(args, { FSI_SIM_FAULTS: faults });
  expect(resumed.code).toBe(0);
  expect(resumed.output).toContain('resuming after 10 processed items (batch 1');
  expect(resumed.output).toMatch(/Batch 2: 10 items read, 5 saved as current, 0 saved as historical, 0 skipped, 5 already present/);
  expect(resumed.output).toMatch(/Migration finished: 25 items processed in total/);
  const copied = await targetEntries('crash_new');
  expect(copied).toHaveLength(25);
  expect(new Set(copied.map((e) => `${e.type}/${e.res_id}/${e.ver}`)).size).toBe(25);
  expect(copied.every((e) => e.cur)).toBe(true);
});

test('in Continuous mode a write made after the tool went idle reaches the new server', async () => {
  const [old, neu] = await pair('live');
  await fhir(old.baseUrl, 'POST', '/Patient', patient('Before'));
  const fsi = launch(FSI_BIN, fsiArgs(fullLicense(), 'live_old', 'live_new', ['--srcMongoRunningMode', 'Continuous', '--useRecoveryJournal', path.join(work, 'live-journal')]),
    { FSI_SIM_POLL_INTERVAL_MS: '200' });
  await fsi.waitFor(/No new items found in the database\. Waiting for 00:00:00\.2000000 before retrying\.\.\./);
  const late = (await fhir(old.baseUrl, 'POST', '/Patient', patient('After'))).body;
  await fsi.waitFor(/Batch 2: 1 items read, 1 saved as current/);
  expect((await fhir(neu.baseUrl, 'GET', `/Patient/${late.id}`)).body).toEqual(late);
  expect(await fsi.stop()).toEqual({ code: 0, signal: null });
});

// firely-docs connecting_data_sources/firely-server-ingest.rst, "Custom Search Parameters": --extraParameters names an .ndjson
// file of SearchParameters to index at load time; those derived from core search parameters are ignored.
test('--extraParameters: an .ndjson of SearchParameters is read (derived ones ignored); a line that is not one is refused, exit 1, nothing written', async () => {
  const file = path.join(work, 'extra.ndjson');
  const sp = { resourceType: 'SearchParameter', url: 'http://hospital.example/fhir/SearchParameter/Patient-mrn', name: 'mrn', status: 'active', code: 'mrn', base: ['Patient'], type: 'token', expression: 'Patient.identifier' };
  writeFileSync(file, `${JSON.stringify(sp)}\n${JSON.stringify({ ...sp, url: 'http://hospital.example/fhir/SearchParameter/derived', code: 'x', derivedFrom: 'http://hl7.org/fhir/SearchParameter/Patient-identifier' })}\n`);
  const provision = (extra: string, db: string) => runFsi(['--fhir-version', 'R4', '--license', fullLicense(), '--sourceType', 'None', '--dbType', 'MongoDb',
    '--provisionTargetDatabase', 'true', '--mongoConnectionstring', ferret.uri(db), '--extraParameters', extra]);
  const ok = await provision(file, 'extra_new');
  expect(ok.code).toBe(0);
  expect(ok.output).toMatch(/WRN\] Ignoring extra search parameter http:\/\/hospital.example\/fhir\/SearchParameter\/derived: derived from a core search parameter/);
  expect(ok.output).toMatch(/INF\] Indexing 1 extra search parameters at load time: http:\/\/hospital.example\/fhir\/SearchParameter\/Patient-mrn\n/);
  writeFileSync(file, '{"resourceType":"Patient","id":"x"}\n');
  const bad = await provision(file, 'extra_bad');
  expect([bad.code, bad.output]).toEqual([1, expect.stringMatching(/FTL\] .*extra.ndjson line 1 is not a SearchParameter with url, code, base and expression/)]);
  expect(await mongo.db('extra_bad').listCollections().toArray()).toEqual([]);
});
