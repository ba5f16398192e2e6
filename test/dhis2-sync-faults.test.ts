/**
 * The org-unit sync under faults: the listener SIGKILLed mid-stream, the worker SIGKILLed
 * mid-apply, a target refusing a change for good, a bad configuration.
 */
import { writeFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { retrySyncSignal, syncProgressQuery } from '../contracts/dhis2/messages';
import { syncWorkflowId } from '../contracts/dhis2/resources';
import { converged, eventually, newUid, sourceDelete, sourceImport, startDhis2Lab, type Dhis2Lab } from './lab/dhis2';
import { runCli, startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';

let lab: Dhis2Lab;
let client: Client;
let worker: Proc;
const queue = uniqueQueue('dhis2f');
const district = newUid('D');
const ou = (id: string, name: string, extra: object = {}) => ({ id, name, shortName: name.slice(0, 50), openingDate: '2020-01-01', parent: { id: district }, ...extra });

beforeAll(async () => {
  lab = await startDhis2Lab(['t1', 't2']);
  client = await testClient();
  worker = await startWorker(queue, lab.workerEnv);
  await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: uniqueQueue('setup'), args: [lab.setupInput()] });
  await lab.startListener(queue);
  await sourceImport(lab, 'organisationUnit', [{ id: district, name: 'Kenema', shortName: 'Kenema', openingDate: '1990-01-01' }]);
}, 120_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
});

test('the listener SIGKILLed mid-stream and restarted: nothing is lost, and PostgreSQL is told only what was handed over', async () => {
  const units = Array.from({ length: 20 }, (_, i) => newUid(`L${i % 10}`));
  await sourceImport(lab, 'organisationUnit', units.map((u, i) => ou(u, `Unit ${i} v0`)));
  let killedAt = -1;
  for (let round = 1; round <= 6; round++) {
    for (const [i, u] of units.entries()) {
      await sourceImport(lab, 'organisationUnit', [ou(u, `Unit ${i} v${round}`)]);
      // Killed in the middle of a burst, while transactions are received but not yet handed over.
      if (round === 2 && i === 7) { await lab.listener!.kill('SIGKILL'); killedAt = round; }
    }
    // Changes made while it is down wait in the slot.
    if (round === 4) await lab.startListener(queue);
  }
  expect(killedAt).toBe(2);
  const [{ lsn }] = await lab.pg.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', [], 'dhis2_source');
  await sourceImport(lab, 'organisationUnit', [ou(units[0], 'Unit 0 final')]);
  await converged(lab, 't1');
  await converged(lab, 't2');
  expect((await lab.targets.t2.get('organisationUnit', units[0])).name).toBe('Unit 0 final');
  // Acknowledged once handed over: the slot's confirmed position passes the last write.
  await eventually('the slot confirms the last change', () => lab.pg.sql<{ ok: boolean }>(
    'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = \'runbooks_orgunit_sync\'', [lsn], 'dhis2_source'), (rows) => rows[0]?.ok === true);
}, 180_000);

test('the worker SIGKILLed mid-apply: a new worker finishes the change, applied once', async () => {
  const unit = newUid('M');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Mid-apply v1')]);
  await converged(lab, 't1');
  lab.targets.t1.slowMs = 2500;
  const handle = client.workflow.getHandle(syncWorkflowId('t1', 'organisationUnit', unit));
  try {
    const seen = lab.source.requests.length;
    await sourceImport(lab, 'organisationUnit', [ou(unit, 'Mid-apply v2')]);
    // The pass has read the source and waits on slow t1: the worker dies right there.
    await eventually('the sync pass reading the source', async () => lab.source.requests.slice(seen),
      (rs) => rs.some((r) => r.method === 'GET' && r.path.endsWith(`/organisationUnits/${unit}`)), 30_000);
    await worker.kill('SIGKILL');
  } finally {
    lab.targets.t1.slowMs = 0;
  }
  worker = await startWorker(queue, lab.workerEnv);
  await converged(lab, 't1');
  await converged(lab, 't2');
  const updates = (await lab.targets.t1.messages()).filter((m: { subject: string }) => m.subject.includes(`Updated organisationUnit 'Mid-apply v2' (${unit})`));
  expect(updates.length).toBeLessThanOrEqual(1);
  expect((await handle.query(syncProgressQuery)).status).toBe('idle');
}, 120_000);

test('a change a target refuses for good (E5003 duplicate code) is parked, told to the target, queues later changes, and applies on retry', async () => {
  const squatter = newUid('Z');
  // t2 already has another unit with this code.
  const res = await fetch(`${lab.targets.t2.baseUrl}/api/metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` },
    body: JSON.stringify({ organisationUnits: [{ id: squatter, name: 'Local unit', shortName: 'Local', openingDate: '2021-01-01', code: 'DUP_CODE' }] }),
  });
  expect(res.status).toBe(200);
  const unit = newUid('U');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Clashing', { code: 'DUP_CODE' })]);
  await eventually('t1 has it', async () => lab.targets.t1.get('organisationUnit', unit), (r) => Boolean(r));
  const id = syncWorkflowId('t2', 'organisationUnit', unit);
  const handle = client.workflow.getHandle(id);
  const parked = await eventually('t2 sync parked', () => handle.query(syncProgressQuery), (p) => p.status === 'parked');
  expect(parked.parked?.errors.map((e) => e.code)).toEqual(['E5003']);
  await eventually('a failure notice on t2', () => lab.targets.t2.messages(), (ms) => ms.some((m: { subject: string }) => m.subject.includes(`FAILED to sync organisationUnit ${unit}`)));

  // A later change queues behind the parked one: nothing applies until a person decides.
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Clashing', { code: 'DUP_CODE_2' })]);
  await eventually('the change queued', () => handle.query(syncProgressQuery), (p) => (p.parked?.queued ?? 0) >= 1);
  expect(await lab.targets.t2.get('organisationUnit', unit)).toBeUndefined();
  const listed = await runCli(['parked', '--target', 't2'], {});
  expect(listed.stdout).toContain(id);
  expect(listed.stdout).toMatch(/E5003/);
  expect((await runCli(['parked', '--target', 't1'], {})).stdout).not.toContain(unit);

  const retried = await runCli(['retry', id, '--by', 'ops-anna'], {});
  expect(retried.code).toBe(0);
  expect(retried.stdout).toMatch(/retried: by ops-anna/);
  await eventually('t2 applied the latest change', async () => lab.targets.t2.get('organisationUnit', unit), (r) => r?.code === 'DUP_CODE_2');
  expect((await runCli(['retry', id, '--by', 'ops-anna'], {})).code).toBe(1);
}, 120_000);

test('a delete blocked by E4030 is parked; retried after the blocker is removed it applies; another is dropped with a reason', async () => {
  const [kept, gone] = [newUid('K'), newUid('G')];
  await sourceImport(lab, 'organisationUnit', [ou(kept, 'Has data'), ou(gone, 'Has data too')]);
  await converged(lab, 't1');
  lab.targets.t1.block(kept);
  lab.targets.t1.block(gone);
  await sourceDelete(lab, 'organisationUnit', kept);
  await sourceDelete(lab, 'organisationUnit', gone);
  const keptId = syncWorkflowId('t1', 'organisationUnit', kept);
  const goneId = syncWorkflowId('t1', 'organisationUnit', gone);
  for (const id of [keptId, goneId]) {
    const p = await eventually(`${id} parked`, () => client.workflow.getHandle(id).query(syncProgressQuery), (x) => x.status === 'parked');
    expect(p.parked?.errors[0]?.code).toBe('E4030');
  }
  const listed = await runCli(['parked', '--target', 't1', '--json'], {});
  expect(JSON.parse(listed.stdout).map((r: { workflowId: string }) => r.workflowId)).toEqual(expect.arrayContaining([keptId, goneId]));

  expect((await runCli(['drop', keptId], {})).code).toBe(2);
  const dropped = await runCli(['drop', keptId, '--by', 'ops-ben', '--reason', 'facility data must stay on t1'], {});
  expect(dropped.code).toBe(0);
  const after = await client.workflow.getHandle(keptId).query(syncProgressQuery);
  expect(after.status).toBe('idle');
  expect(after.recent.at(-1)).toMatchObject({ action: 'dropped', note: 'by ops-ben: facility data must stay on t1' });
  expect(await lab.targets.t1.get('organisationUnit', kept)).toBeDefined();

  lab.targets.t1.unblock(gone);
  expect((await runCli(['retry', goneId, '--by', 'ops-ben'], {})).code).toBe(0);
  await eventually('the delete applied', async () => lab.targets.t1.get('organisationUnit', gone), (r) => r === undefined);
}, 120_000);

test('an import answered 200 with status ERROR counts as a failure, not a success', async () => {
  const unit = newUid('E');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Quirky v1')]);
  // (t1 as a whole differs from the source now: it keeps the unit whose delete was dropped.)
  await eventually('t1 has it', async () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.name === 'Quirky v1');
  lab.targets.t1.answerErrorWith200Next(1);
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Quirky v2')]);
  const handle = client.workflow.getHandle(syncWorkflowId('t1', 'organisationUnit', unit));
  const parked = await eventually('t1 sync parked', () => handle.query(syncProgressQuery), (p) => p.status === 'parked');
  expect(parked.error).toMatch(/HTTP 200 status ERROR/);
  expect((await lab.targets.t1.get('organisationUnit', unit)).name).toBe('Quirky v1');
  await handle.signal(retrySyncSignal, { by: 'ops' });
  await eventually('t1 applied it on retry', async () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.name === 'Quirky v2');
}, 60_000);

test('a bad configuration stops the worker and the listener before they start, naming every bad field', async () => {
  const bad = `${lab.configFile}.bad.json`;
  writeFileSync(bad, JSON.stringify({
    source: { baseUrl: 'ftp://source', auth: { token: 'd2pat_plain_text_secret' }, database: { host: 'db', database: 'dhis2', user: 'cdc', password: { secret: 'x' }, slot: 'Bad-Slot' } },
    targets: [
      { name: 'same', baseUrl: 'http://a', auth: { token: { secret: 'a' } }, operations: ['create', 'upsert'], fieldsRequireApproval: ['organisationunit.nosuch'] },
      { name: 'same', baseUrl: 'http://b', auth: { token: { secret: 'b' } }, transform: 'missing.ts' },
    ],
  }));
  for (const script of ['test/support/worker-entry.ts', 'workers/orgunit-listener.ts']) {
    const proc = startProcess(script, [], { ...lab.workerEnv, ORGUNIT_SYNC_CONFIG: bad, RUNBOOKS_TASK_QUEUE: uniqueQueue('bad') });
    expect(await proc.exited).toBe(1);
    const out = proc.output();
    for (const field of ['source.baseUrl', 'source.auth', 'source.database.slot', 'targets.0.operations.1', 'targets.0.fieldsRequireApproval.0', 'targets.0.approval', 'targets.1.name', 'targets.1.transform']) {
      expect(out).toContain(field);
    }
    expect(out).not.toContain('d2pat_plain_text_secret');
  }
  // A good file but no slot yet: the listener says what to run.
  const noSlot = `${lab.configFile}.noslot.json`;
  writeFileSync(noSlot, JSON.stringify({ ...lab.config, source: { ...lab.config.source, database: { ...lab.config.source.database, slot: 'not_created_yet' } } }));
  const listener = startProcess('workers/orgunit-listener.ts', [], { ...lab.workerEnv, ORGUNIT_SYNC_CONFIG: noSlot });
  expect(await listener.exited).toBe(1);
  expect(listener.output()).toMatch(/replication slot "not_created_yet" does not exist.*Run the orgUnitSyncSetup runbook first/);
}, 60_000);
