/**
 * The administration database (vonkadmin) across migrateFirelyServer: Firely's zero-downtime migration
 * moves the data database only; the new server initialises a new vonkadmin from scratch, and the
 * custom conformance resources of the old server are created again through the new server's
 * /administration endpoint (firely-docs releasenotes/zero_downtime_migration.rst, "Migration of Admin
 * Database"). Real Temporal, FerretDB, sshd and nginx; the Firely Servers and FSI are the simulators.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { syncConformance } from '../activities/firely/admin';
import { CONFORMANCE_TYPES } from '../contracts/firely/schema';
import { rejectSignal, type Progress } from '../contracts/messages';
import { startFirelyLab, type FirelyLab } from './lab/firely';
import { useLabs } from './lab/suite';
import { startFirelyServer, type FirelySim } from './sims/firely/control';
import { startFerretDb, type FerretDb } from './support/ferretdb';
import { progressOf, waitForProgress } from './support/runs';

const suite = useLabs<FirelyLab>('firely-admin', (secretsDir) => startFirelyLab({ secretsDir }));
let seq = 0;
const start = (input: unknown) =>
  suite.client.workflow.start('migrateFirelyServer', { taskQueue: suite.queue, workflowId: `admin-${suite.queue}-${++seq}`, args: [input] });
async function outcome(handle: WorkflowHandle) {
  const done = await handle.result().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
  return { ...done, progress: await progressOf(handle) };
}
const causeOf = (err: unknown): string => { const e = err as { message: string; cause?: unknown }; return e?.cause ? `${e.message}: ${causeOf(e.cause)}` : e?.message; };
const stepActions = (p: Progress, step: string) => p.steps.find((s) => s.name === step)?.actions.join('\n') ?? '';

async function adminCall(base: string, method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/administration${urlPath}`, { method, headers: body ? { 'Content-Type': 'application/fhir+json; fhirVersion=4.0' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
const put = async (base: string, res: { resourceType: string; id: string }) => {
  const r = await adminCall(base, 'PUT', `/${res.resourceType}/${res.id}`, res);
  if (r.status !== 201 && r.status !== 200) throw new Error(`PUT ${res.resourceType}/${res.id} on ${base}: ${r.status} ${JSON.stringify(r.body)}`);
};
const idsOf = async (base: string, type: string) => ((await adminCall(base, 'GET', `/${type}?_count=1000`)).body.entry ?? []).map((e: any) => e.resource.id).sort();

// The old server's own resources, as an operator would have put them there.
const myPatient = { resourceType: 'StructureDefinition', id: 'MyPatient', url: 'http://hospital.example/fhir/StructureDefinition/MyPatient', version: '2', name: 'MyPatient',
  status: 'active', kind: 'resource', abstract: false, type: 'Patient', fhirVersion: '4.0.1', baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient', derivation: 'constraint' };
const mrn = { resourceType: 'SearchParameter', id: 'Patient-mrn', url: 'http://hospital.example/fhir/SearchParameter/Patient-mrn', name: 'mrn', status: 'active',
  description: 'The hospital MRN', code: 'mrn', base: ['Patient'], type: 'token', expression: "Patient.identifier.where(system='urn:mrn')" };
const subscription = { resourceType: 'Subscription', id: 'lab-results', status: 'active', reason: 'Lab results to the EHR', criteria: 'Observation?category=laboratory',
  channel: { type: 'rest-hook', endpoint: 'https://ehr.hospital.example/fhir-hook', payload: 'application/fhir+json' } };
/** On both servers already, under different ids: the same canonical resource, not created again. */
const codes = { resourceType: 'ValueSet', url: 'http://hospital.example/fhir/ValueSet/codes', version: '1', name: 'Codes', status: 'active' };

test('input: a new administration database that is the old one (or a data database) is refused, naming the field', async () => {
  const lab = await suite.newLab();
  const oldAdmin = lab.oldDb.uri('vonkadmin');
  const refusedWith = async (admin: Record<string, unknown>) => causeOf(await (await start(lab.migrationInput({ admin }))).result().then(() => undefined, (err: Error) => err));
  expect(await refusedWith({ oldDatabase: oldAdmin, newDatabase: oldAdmin.replace('/vonkadmin', '/VonkAdmin') }))
    .toMatch(/admin.newDatabase: names the same database \(database VonkAdmin on .*\) as the old server's administration database/);
  expect(await refusedWith({ newDatabase: lab.newDb.uri('vonkdata') })).toMatch(/admin.newDatabase: names the same database .* as the new server's data database/);
  expect(await refusedWith({ newDatabase: 'mongodb://admin:secret@db:27017/vonkadmin' })).toMatch(/admin.newDatabase: must not hold a password/);
  expect(await idsOf(lab.new.baseUrl, 'StructureDefinition')).toEqual(['Observation-Fhir4.0', 'Patient-Fhir4.0']);
}, 300_000);

test('the old server\'s custom conformance resources are created on the new server before the cutover gate; a dry-run with importMissing false refuses, naming them', async () => {
  const lab = await suite.newLab();
  await lab.seed(30, 10);
  for (const r of [myPatient, mrn, subscription, { ...codes, id: 'codes-old' }]) await put(lab.old.baseUrl, r);
  await put(lab.new.baseUrl, { ...codes, id: 'codes' });
  const admin = { oldDatabase: lab.oldDb.uri('vonkadmin'), newDatabase: lab.newDb.uri('vonkadmin') };

  // Refused, listing what the new server lacks (not the specification's resources, not the ValueSet it has under another id).
  const refused = await outcome(await start(lab.migrationInput({ dryRun: true, admin: { ...admin, importMissing: false } })));
  expect(causeOf(refused.error)).toMatch(/The new Firely Server lacks 3 custom resources of the old server's Administration API: StructureDefinition\/MyPatient \(http:\/\/hospital.example\/fhir\/StructureDefinition\/MyPatient\|2\), SearchParameter\/Patient-mrn \(.*\), Subscription\/lab-results\. .*The proxy was not switched/);
  expect(await idsOf(lab.new.baseUrl, 'StructureDefinition')).toEqual(['Observation-Fhir4.0', 'Patient-Fhir4.0']);

  // The real run; the new server is still loading its conformance resources for its first answers (423).
  lab.new.setFaults({ adminLoading: { requests: 2 } });
  const handle = await start(lab.migrationInput({ admin }));
  const atGate = await waitForProgress(handle, 'gate cutover to open', (p) => p.approvals.some((g) => g.gate === 'cutover' && g.state === 'open') || p.status === 'failed', 240_000);
  expect(atGate.status).not.toBe('failed');
  const said = stepActions(atGate, 'conformance');
  expect(said).toMatch(/created on the new server through \/administration: StructureDefinition\/MyPatient .*, SearchParameter\/Patient-mrn .*, Subscription\/lab-results/);
  // The ingest tool was started with the old server's custom SearchParameter, so the data it copies is indexed for it (no $reindex to ask for).
  expect(said).toMatch(/custom SearchParameters SearchParameter\/Patient-mrn .*: given to the ingest tool at its start \(--extraParameters\)/);
  expect(atGate.approvals.find((g) => g.gate === 'cutover')!.summary).toMatch(/Administration API: 4 custom resources on the old server, 3 created on the new one\.$/);
  expect(stepActions(atGate, 'startIngest')).toMatch(/--extraParameters \/var\/lib\/firely-migration\/journal.extra-search-parameters.ndjson.*custom SearchParameters indexed at load time .*: http:\/\/hospital.example\/fhir\/SearchParameter\/Patient-mrn$/);
  expect(lab.migration.sh('grep -h "extra search parameters" ~/.runbooks-jobs/*/log').stdout).toMatch(/Indexing 1 extra search parameters at load time: http:\/\/hospital.example\/fhir\/SearchParameter\/Patient-mrn/);
  // On the new server, as on the old (its own meta), with the same ids; the ValueSet once; the specification's its own.
  for (const r of [myPatient, mrn, subscription]) {
    const got = await adminCall(lab.new.baseUrl, 'GET', `/${r.resourceType}/${r.id}`);
    expect(got.status).toBe(200);
    const { meta: _meta, ...body } = got.body;
    expect(body).toEqual(r);
  }
  expect(await idsOf(lab.new.baseUrl, 'ValueSet')).toEqual(['administrative-gender-Fhir4.0', 'codes']);
  expect(await idsOf(lab.new.baseUrl, 'StructureDefinition')).toEqual(['MyPatient', 'Observation-Fhir4.0', 'Patient-Fhir4.0']);
  expect(lab.currentUpstream()).toBe(lab.upstreamOf(lab.old));
  await handle.signal(rejectSignal, { gate: 'cutover', by: 'bob', reason: 'only checking' });
  expect((await outcome(handle)).progress.status).toBe('rolled_back');
}, 600_000);

describe('syncConformance against two servers (activity)', () => {
  let ferret: FerretDb;
  let work: string;
  const servers: FirelySim[] = [];
  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'firely-admin-'));
    ferret = await startFerretDb();
  }, 120_000);
  afterAll(async () => {
    for (const s of servers) await s.stop();
    await ferret?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });
  const server = async (name: string, version: string, admin: string) => {
    const s = await startFirelyServer({ name, version, mongoUrl: ferret.uri(`data-${name}`), adminMongoUrl: ferret.uri(admin), stateDir: path.join(work, name) });
    servers.push(s);
    return s;
  };
  const sync = (oldUrl: string, newUrl: string, importMissing = true) => new MockActivityEnvironment().run(syncConformance,
    { oldUrl, newUrl, types: [...CONFORMANCE_TYPES], importMissing, withinSeconds: 30, dryRun: false }).then((r) => r, (e: Error) => e);

  test('a new server on the old server\'s vonkadmin (shared or copied) is refused; 403 from /administration names AllowedNetworks', async () => {
    const old = await server('a-old', '5.11.0', 'vonkadmin-a');
    await put(old.baseUrl, myPatient);
    // The new server was given the old administration connection string: it sees the old resources, with their meta.
    const shared = await server('a-new', '6.1.0', 'vonkadmin-a');
    const r = await sync(old.baseUrl, shared.baseUrl);
    expect(r).toBeInstanceOf(Error);
    expect((r as Error).message).toMatch(/administration database looks like the old server's vonkadmin: all 7 resources .* have the id, version and lastUpdated .*The proxy was not switched/);
    shared.setFaults({ adminForbidden: true });
    expect(((await sync(old.baseUrl, shared.baseUrl)) as Error).message).toMatch(/refuses \/administration\/StructureDefinition with 403: .*Administration.AllowedNetworks/);
  }, 120_000);

  test('a fresh vonkadmin: what is missing is created once; a second pass creates nothing; a Subscription the new server has under another id is not doubled', async () => {
    const old = await server('b-old', '5.11.0', 'vonkadmin-b-old');
    const fresh = await server('b-new', '6.1.0', 'vonkadmin-b-new');
    // The old server without the plugin that serves Library and Measure: none of those, said so.
    old.setFaults({ adminNotServed: ['Library', 'Measure'] });
    await put(old.baseUrl, mrn);
    await put(old.baseUrl, subscription);
    await put(fresh.baseUrl, { ...subscription, id: 'made-by-hand' });
    const first = await sync(old.baseUrl, fresh.baseUrl);
    expect(await idsOf(fresh.baseUrl, 'Subscription')).toEqual(['made-by-hand']);
    expect(first).toMatchObject({ changed: true, custom: 2, imported: ['SearchParameter/Patient-mrn (http://hospital.example/fhir/SearchParameter/Patient-mrn)'] });
    const again = await sync(old.baseUrl, fresh.baseUrl);
    expect(again).toMatchObject({ changed: false, imported: [], actions: [expect.stringMatching(/2 custom resources on the old server .*2 on the new one already; nothing to import/), expect.any(String),
      'the old server\'s Administration API does not serve Library, Measure (404): none of those to compare'] });
  }, 120_000);
});
