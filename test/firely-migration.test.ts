/**
 * migrateFirelyServer end to end: the old and the new Firely Server (simulators on real FerretDB),
 * the ingest tool (simulator) on a lab host over real SSH, a real nginx in front, a real Temporal,
 * and a steady client load through the proxy the whole time.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { approveSignal, rejectSignal, type Progress } from '../contracts/messages';
import { useLabs } from './lab/suite';
import { FIRELY_USER, startFirelyLab, type FirelyLab } from './lab/firely';
import { TOKENS } from './sims/firely/control';
import { startLoad, type LoadStats } from './support/load';
import { progressOf, readableHistory, waitForProgress } from './support/runs';
import { secretsIn, watchCommandLines } from './support/process-watch';

/** The proxy of the next lab: nginx, or HAProxy for the test that switches back through the workflow. */
let nextProxy: 'nginx' | 'haproxy' = 'nginx';
const suite = useLabs<FirelyLab>('firely-mig', (secretsDir) => startFirelyLab({ secretsDir, proxy: nextProxy }));
// No secret on any process's command line during the file (issue 24, finding 6): fsi, ssh, iris, servers.
watchCommandLines(() => secretsIn([suite.secretsDir]));
let seq = 0;
const start = (input: unknown) =>
  suite.client.workflow.start('migrateFirelyServer', { taskQueue: suite.queue, workflowId: `migrate-${suite.queue}-${++seq}`, args: [input] });

async function outcome(handle: WorkflowHandle) {
  const done = await handle.result().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
  return { ...done, progress: await progressOf(handle) };
}
const causeOf = (err: unknown): string => { const e = err as { message: string; cause?: unknown }; return e?.cause ? `${e.message}: ${causeOf(e.cause)}` : e?.message; };
const actions = (p: Progress) => p.steps.flatMap((s) => s.actions);
/** Waits for the gate; if it does not open, the error carries the ingest tool's last lines and both servers' counts. */
const gateOpen = (handle: WorkflowHandle, gate: string, lab?: FirelyLab, timeoutMs = 240_000) =>
  waitForProgress(handle, `gate ${gate} to open`, (p) => p.approvals.some((g) => g.gate === gate && g.state === 'open'), timeoutMs).catch(async (e: Error) => {
    if (!lab) throw e;
    const counts = await Promise.all(['Patient', 'Observation'].map(async (t) => `${t} ${await count(lab.old.baseUrl, t).catch(() => -1)} -> ${await count(lab.new.baseUrl, t).catch(() => -1)}`));
    throw new Error(`${e.message}\ncounts old -> new: ${counts.join(', ')}\nthe ingest tool's last lines:\n${lab.migration.sh('tail -n 60 ~/.runbooks-jobs/*/log').stdout}`);
  });

const count = async (base: string, type: string) => ((await (await fetch(`${base}/${type}?_summary=count&_total=accurate`)).json()) as { total: number }).total;
const alive = async (base: string) => { try { return (await fetch(`${base}/$liveness`, { signal: AbortSignal.timeout(3_000) })).status; } catch { return 0; } };
/** This lab's fsi processes (labs share the PID namespace: matched by the lab's target database; [n] keeps the shell asking out). */
const fsiProcesses = (lab: FirelyLab) => lab.migration.sh(`pgrep -u ${FIRELY_USER.name} -f -- '[n]ode .*ingest/fsi[.]ts .*--mongoConnectionstring ${lab.newDb.uri('vonkdata')} ' || true`)
  .stdout.trim().split('\n').filter(Boolean).length;
/** Every Patient the load wrote is on the new server. */
async function missingOnNew(lab: FirelyLab, stats: LoadStats): Promise<string[]> {
  const missing: string[] = [];
  for (const w of stats.written) {
    const r = await fetch(`${lab.new.baseUrl}/Patient/${w.id}`);
    await r.body?.cancel();
    if (r.status !== 200) missing.push(`${w.id} (${r.status}, written through ${w.by})`);
  }
  return missing;
}
// Writes keep coming while the run waits for the ingest to catch up: each poll of the tool finds the last
// moments' writes, and the tool keeps up (polls in a row that reach the end after less than a batch).
// Reads ask for seeded Patients: both servers have them once the ingest caught up.
const loadOn = (lab: FirelyLab, readIds: string[]) => startLoad(lab.proxyUrl, { connections: 4, writeEvery: 50, readIds });

test('the whole migration under a steady load: not one failed request, every acknowledged write on the new server, old server and ingest stopped', async () => {
  const lab = await suite.newLab();
  const seeded = await lab.seed(300, 150);
  // The new server is busy with a long task for its first readiness checks: the run waits for 200.
  lab.new.setFaults({ readinessLocked: { requests: 3 } });
  const load = loadOn(lab, seeded);
  const handle = await start(lab.migrationInput({ countTolerance: 20, oldServerIdleSeconds: 2 }));

  const atCutover = await gateOpen(handle, 'cutover', lab);
  const gate = atCutover.approvals.find((g) => g.gate === 'cutover')!;
  expect(gate.summary).toMatch(/Counts old -> new: Patient \d+ -> \d+, Observation 150 -> 150; sample: \d+ compared, 0 differing/);
  expect(actions(atCutover).join('\n')).toMatch(/started the ingest tool on migration/);
  // Nothing reaches the new server before the approval.
  expect(lab.currentUpstream()).toBe(lab.upstreamOf(lab.old));
  expect(fsiProcesses(lab)).toBe(1);
  // It asked through the three 423 answers.
  expect(JSON.parse(readFileSync(path.join(lab.new.stateDir, 'faults.json'), 'utf8'))).toMatchObject({ readinessLocked: { requests: 0 } });
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });

  const atDecommission = await gateOpen(handle, 'decommission', lab);
  expect(atDecommission.approvals.find((g) => g.gate === 'decommission')!.summary).toMatch(/ROLLBACK IS NO LONGER POSSIBLE/);
  expect(lab.currentUpstream()).toBe(lab.upstreamOf(lab.new));
  // At least 10,000 requests over the migration before it ends.
  await load.after(Math.max(0, 10_000 - load.stats.requests));
  await handle.signal(approveSignal, { gate: 'decommission', by: 'bob' });
  const done = await outcome(handle);
  expect(done.error).toBeUndefined();
  expect(done.result).toMatchObject({ migrated: true });
  await load.after(200);
  const stats = await load.stop();

  expect(stats.failures).toEqual([]);
  expect(stats.requests).toBeGreaterThanOrEqual(10_000);
  expect(stats.byUpstream.get(lab.upstreamOf(lab.new))).toBeGreaterThan(0);
  expect(stats.written.filter((w) => w.by === lab.upstreamOf(lab.old)).length).toBeGreaterThan(0);
  expect(await missingOnNew(lab, stats)).toEqual([]);
  // The writes through the old server are all on the new one; counts: the new one has those plus its own.
  expect(await count(lab.new.baseUrl, 'Observation')).toBe(150);
  expect(await count(lab.new.baseUrl, 'Patient')).toBe(300 + stats.written.length);
  expect(await alive(lab.old.baseUrl)).toBe(0);
  expect(fsiProcesses(lab)).toBe(0);
  expect(actions(done.progress).join('\n')).toMatch(/switched upstream firely on proxy from .* to .*\n(.|\n)*stopped the ingest tool on migration(.|\n)*stopped the old Firely Server on migration/);
  expect(await readableHistory(handle)).not.toMatch(/PRIVATE KEY/);
}, 600_000);

test('the ingest tool killed mid-batch is restarted with its journal (no duplicates); a rejected cutover stops it and leaves the proxy alone', async () => {
  const lab = await suite.newLab();
  const seeded = await lab.seed(400, 100);
  lab.setFsiFaults({ crashAfterItems: 150 });
  const load = loadOn(lab, seeded);
  const handle = await start(lab.migrationInput({ countTolerance: 20, ingest: { ...(lab.migrationInput().ingest as object), mongoBatch: 100 } }));
  const atCutover = await gateOpen(handle, 'cutover', lab);
  // It died once, and its restart resumed from the journal: the counts agree, so nothing came twice.
  const jobs = lab.migration.sh('cat ~/.runbooks-jobs/*/restarts; grep -h "resuming after" ~/.runbooks-jobs/*/log');
  expect(jobs.stdout).toMatch(/^1\n.*Recovery journal .*resuming after \d+ processed items/);
  expect(atCutover.approvals.find((g) => g.gate === 'cutover')!.summary).toMatch(/Observation 100 -> 100/);
  await handle.signal(rejectSignal, { gate: 'cutover', by: 'bob', reason: 'not tonight' });
  const done = await outcome(handle);
  expect(done.error).toBeUndefined();
  expect(done.result).toMatchObject({ migrated: false, rolledBack: expect.stringMatching(/rejected by bob: not tonight/) });
  expect(done.progress.status).toBe('rolled_back');
  expect(fsiProcesses(lab)).toBe(0);
  expect(lab.currentUpstream()).toBe(lab.upstreamOf(lab.old));
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  expect([...stats.byUpstream.keys()]).toEqual([lab.upstreamOf(lab.old)]);
}, 600_000);

test('caught up is decided by comparing the servers: a tool that prints no idle and no batch line still reaches the cutover gate under load', async () => {
  const lab = await suite.newLab();
  const seeded = await lab.seed(200, 50);
  // The tool writes errors only (Firely Server's documented default minimum level is Error).
  lab.setFsiFaults({ minimumLevel: 'ERR' });
  const load = loadOn(lab, seeded);
  const handle = await start(lab.migrationInput({ countTolerance: 20, ingest: { ...(lab.migrationInput().ingest as object), catchUpWithin: '3m' } }));
  const atCutover = await gateOpen(handle, 'cutover', lab);
  expect(atCutover.approvals.find((g) => g.gate === 'cutover')!.summary).toMatch(/Observation 50 -> 50/);
  expect(lab.migration.sh('cat ~/.runbooks-jobs/*/log').stdout).not.toMatch(/No new items|Batch \d+/);
  expect(JSON.stringify(atCutover.steps.find((st) => st.name === 'catchUp'))).toMatch(/checks in a row found the new server caught up/);
  await handle.signal(rejectSignal, { gate: 'cutover', by: 'bob', reason: 'only checking' });
  expect((await outcome(handle)).progress.status).toBe('rolled_back');
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
}, 600_000);

test('HAProxy in front, the worker killed during the drain: the run resumes without a second ingest tool; a rollback after the switch puts clients back on the old server and names the writes made on the new one', async () => {
  nextProxy = 'haproxy';
  const lab = await suite.newLab();
  nextProxy = 'nginx';
  expect(lab.migrationInput().proxy).toMatchObject({ kind: 'haproxy' });
  const seeded = await lab.seed(200, 50);
  const load = loadOn(lab, seeded);
  const handle = await start(lab.migrationInput({ countTolerance: 20, oldServerIdleSeconds: 3 }));
  await gateOpen(handle, 'cutover', lab);
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  await waitForProgress(handle, 'the drain', (p) => p.currentStep === 'drain', 120_000);
  await suite.killWorker();
  expect(fsiProcesses(lab)).toBe(1);
  await suite.startWorker();
  await gateOpen(handle, 'decommission', lab);
  expect(fsiProcesses(lab)).toBe(1);
  expect(lab.migration.sh('ls ~/.runbooks-jobs/*/').stdout).not.toMatch(/restarts|log\.1/);
  await load.after(500);
  await handle.signal(rejectSignal, { gate: 'decommission', by: 'bob', reason: 'errors in the new server\'s log' });
  const done = await outcome(handle);
  expect(done.error).toBeUndefined();
  expect(done.progress.status).toBe('rolled_back');
  expect(lab.currentUpstream()).toBe(lab.upstreamOf(lab.old));
  expect(fsiProcesses(lab)).toBe(0);
  await load.after(200);
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  const onNew = stats.written.filter((w) => w.by === lab.upstreamOf(lab.new));
  expect(onNew.length).toBeGreaterThan(0);
  const said = actions(done.progress).find((a) => a.startsWith('switched back to'))!;
  expect(said).toMatch(new RegExp(`${onNew.length} writes made on the new server since the switch need re-applying on the old one`));
  for (const w of onNew.slice(0, 50)) expect(said).toContain(`Patient/${w.id}`);
  expect(await alive(lab.old.baseUrl)).toBe(200);
}, 600_000);

test('refused before anything changes: a license without the migration token, a journal that is not empty, the old server down; a dry-run plans', async () => {
  const lab = await suite.newLab();
  await lab.seed(20, 5);
  const before = lab.currentUpstream();
  const untouched = () => {
    expect(lab.currentUpstream()).toBe(before);
    expect(fsiProcesses(lab)).toBe(0);
    expect(lab.migration.sh('ls -A ~/.runbooks-jobs 2>/dev/null || true').stdout.trim()).toBe('');
  };

  lab.writeLabLicense([TOKENS.bulkImport, TOKENS.unlimited]);
  let r = await outcome(await start(lab.migrationInput()));
  expect(causeOf(r.error)).toMatch(/The license \/opt\/firely\/license.json lacks http:\/\/fire.ly\/vonk\/plugins\/migration .*Nothing was changed/);
  lab.writeLabLicense([TOKENS.bulkImport, TOKENS.unlimited, TOKENS.migration]);
  r = await outcome(await start(lab.migrationInput({ sharding: { enabled: true } })));
  expect(causeOf(r.error)).toMatch(/lacks http:\/\/fire.ly\/vonk\/plugins\/repository\/mongo-db\/sharding/);
  untouched();

  mkdirSync(lab.journalDir, { recursive: true });
  writeFileSync(path.join(lab.journalDir, 'fsi-journal.json'), '{}');
  execFileSync('chown', ['-R', `${FIRELY_USER.uid}:${FIRELY_USER.uid}`, lab.journalDir]);
  r = await outcome(await start(lab.migrationInput()));
  expect(causeOf(r.error)).toMatch(/The recovery journal directory \/var\/lib\/firely-migration\/journal on migration is not empty \(fsi-journal.json\)/);
  rmSync(path.join(lab.journalDir, 'fsi-journal.json'));
  untouched();

  const input = lab.migrationInput() as { oldServer: Record<string, unknown> };
  r = await outcome(await start({ ...input, oldServer: { ...input.oldServer, baseUrl: `http://${lab.migration.address}:9` } }));
  expect(causeOf(r.error)).toMatch(/The old Firely Server does not answer: .*Nothing was changed/);
  untouched();

  const bad = await (await start({ ...lab.migrationInput(), newServer: { ...(lab.migrationInput().newServer as object), database: { connectionString: 'mongodb://u:secret@db:27017/vonkdata' } } }))
    .result().then(() => undefined, (err: Error) => err);
  expect(causeOf(bad)).toMatch(/newServer.database.connectionString: must not hold a password/);

  const dry = await outcome(await start(lab.migrationInput({ dryRun: true })));
  expect(dry.error).toBeUndefined();
  expect(actions(dry.progress).join('\n')).toMatch(/would start on migration: fsi -f R4 .*--srcMongoRunningMode Continuous .*--update-existing-resources OnlyIfNewer(.|\n)*would wait for approval "cutover"(.|\n)*would switch upstream firely on proxy from .* to (.|\n)*would stop the ingest tool on migration\nwould stop the old Firely Server on migration/);
  untouched();
  expect(existsSync(lab.journalDir) ? readdirSync(lab.journalDir) : []).toEqual([]);
  expect(await count(lab.new.baseUrl, 'Patient')).toBe(0);

  // A sampled resource that reads differently on the new server (a plugin, a hand edit): stopped before the gate, the tool stopped, the proxy untouched.
  const [oldest] = ((await (await fetch(`${lab.old.baseUrl}/Patient?_sort=_lastUpdated&_count=1`)).json()) as { entry: Array<{ resource: { id: string } }> }).entry;
  lab.new.setFaults({ differ: [{ type: 'Patient', id: oldest.resource.id, patch: { gender: 'other' } }] });
  r = await outcome(await start(lab.migrationInput()));
  expect(causeOf(r.error)).toMatch(new RegExp(`Resources on the new server differ from the old server's: Patient/${oldest.resource.id} version 1: gender differ.*the proxy was not switched`));
  expect(r.progress.approvals).toEqual([]);
  expect(lab.currentUpstream()).toBe(before);
  expect(fsiProcesses(lab)).toBe(0);
}, 300_000);

test('the license: the migration token as the procedure names it, in a layout other than the simulator\'s, passes the preflight; an expired one named anywhere is refused', async () => {
  const lab = await suite.newLab();
  await lab.seed(5, 0);
  const write = (license: unknown) => { writeFileSync(lab.licenseFile, JSON.stringify(license)); execFileSync('chown', [`${FIRELY_USER.uid}:${FIRELY_USER.uid}`, lab.licenseFile]); };
  // Firely does not document the file's layout: the tokens nested, the seed's name for the migration token.
  write({ License: { Licensee: 'Lab', Expires: '2099-12-31', Tokens: [{ Name: 'http://fire.ly/vonk/plugins/bulk-data-import/migration' }, { Name: TOKENS.unlimited }] } });
  const planned = await outcome(await start(lab.migrationInput({ dryRun: true })));
  expect(planned.error).toBeUndefined();
  expect(actions(planned.progress).join('\n')).toMatch(/would start on migration: /);
  write({ License: { Licensee: 'Lab', Expires: '2020-01-01', Tokens: [TOKENS.migration, TOKENS.unlimited] } });
  const expired = await outcome(await start(lab.migrationInput({ dryRun: true })));
  expect(causeOf(expired.error)).toMatch(/The license \/opt\/firely\/license.json expired \(2020-01-01\).*Nothing was changed/);
}, 300_000);
