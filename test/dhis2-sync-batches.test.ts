/**
 * The org-unit sync with `batches`: one orgUnitBatch workflow per target applies captured changes
 * in bulk, and only resources that need more get their own orgUnitSync. Killed mid-burst (worker and
 * listener), every unit still reaches every target exactly once, and a gated or parked resource is
 * still held on its own while the rest flows.
 */
import type { Client } from '@temporalio/client';
import { batchProgressQuery, syncProgressQuery } from '../contracts/dhis2/messages';
import { batchWorkflowId, syncWorkflowId } from '../contracts/dhis2/resources';
import { eventually, newUid, sourceImport, startDhis2Lab, type Dhis2Lab } from './lab/dhis2';
import { startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import type { Dhis2Write } from './sims/dhis2';

let lab: Dhis2Lab;
let client: Client;
let worker: Proc;
const queue = uniqueQueue('dhis2b');
const district = newUid('D');
const region = newUid('R');
const ou = (id: string, name: string, extra: object = {}) => ({ id, name, shortName: name.slice(0, 50), openingDate: '2020-01-01', parent: { id: district }, ...extra });
const targets = ['t1', 't2'] as const;

beforeAll(async () => {
  lab = await startDhis2Lab([]);
  // t1 asks for approval of anything about org-unit groups; t2 takes everything as it comes.
  await lab.addTarget('t1', { config: { fieldsRequireApproval: ['organisationUnitGroup.name'], approval: { approvers: ['alice', 'bob'], quorum: 1, timeout: '1h', assignee: 'M5zQapPyTZI' } } });
  await lab.addTarget('t2', { auth: 'token' });
  lab.writeConfig((c) => { c.batches = true; });
  // A region the source had before capture began: no target has it.
  await sourceImport(lab, 'organisationUnit', [{ id: region, name: 'Northern', shortName: 'Northern', openingDate: '1980-01-01' }]);
  client = await testClient();
  worker = await startWorker(queue, lab.workerEnv);
  await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: uniqueQueue('setup'), args: [lab.setupInput()] });
  await lab.startListener(queue);
  await sourceImport(lab, 'organisationUnit', [{ id: district, name: 'Bombali', shortName: 'Bombali', openingDate: '1990-01-01' }]);
  for (const t of targets) await eventually(`${t} has the district`, () => lab.targets[t].get('organisationUnit', district), Boolean);
}, 180_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
});

const runningSyncs = async (target: string) => {
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'orgUnitSync' AND RunbookTarget = '${target}' AND ExecutionStatus = 'Running' AND TaskQueue = '${queue}'` })) ids.push(wf.workflowId);
  return ids;
};

test('1,000 new org units, the worker and the listener SIGKILLed mid-burst: every unit on every target exactly once; a gated group and a parked unit held one by one', async () => {
  // t2 already has another unit with the code one of the new units will carry: t2 refuses that one (E5003).
  const squatter = newUid('Z');
  const res = await fetch(`${lab.targets.t2.baseUrl}/api/metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` },
    body: JSON.stringify({ organisationUnits: [{ id: squatter, name: 'Local unit', shortName: 'Local', openingDate: '2021-01-01', code: 'DUP_BATCH' }] }),
  });
  expect(res.status).toBe(200);

  const creates = new Map<string, number>();
  const offs = targets.map((t) => lab.targets[t].onWrite((w: Dhis2Write) => {
    if (w.type === 'organisationUnit' && w.op === 'create') creates.set(`${t}:${w.uid}`, (creates.get(`${t}:${w.uid}`) ?? 0) + 1);
  }));
  const units = Array.from({ length: 1000 }, () => newUid("N"));
  expect(new Set(units).size).toBe(1000);
  const clash = units[617];
  const group = newUid('G');
  try {
    await sourceImport(lab, 'organisationUnitGroup', [{ id: group, name: 'Burst group', shortName: 'Burst group' }]);
    for (let i = 0; i < 20; i++) {
      await sourceImport(lab, 'organisationUnit', units.slice(i * 50, (i + 1) * 50).map((u, k) => ou(u, `Burst ${i * 50 + k}`, u === clash ? { code: 'DUP_BATCH' } : {})));
      if (i === 4) {
        // The worker dies once batches are landing on the targets.
        await eventually('the first batch on t1', async () => [...creates.keys()].filter((k) => k.startsWith('t1:')).length, (n) => n > 0);
        await worker.kill('SIGKILL');
      }
      if (i === 9) await lab.listener!.kill('SIGKILL');
      if (i === 14) {
        worker = await startWorker(queue, lab.workerEnv);
        await lab.startListener(queue);
      }
    }
    const expected = (t: string) => units.filter((u) => !(t === 't2' && u === clash));
    for (const t of targets) {
      await eventually(`every new unit on ${t}`, async () => {
        const held = new Set((await lab.targets[t].list('organisationUnit')).map((r: { id: string }) => r.id));
        return expected(t).filter((u) => !held.has(u)).length;
      }, (missing) => missing === 0, 180_000);
    }
    // Exactly once: one create per unit and target, and nothing else made on either.
    for (const t of targets) {
      const made = expected(t).map((u) => creates.get(`${t}:${u}`) ?? 0);
      expect({ t, once: made.filter((n) => n === 1).length, more: made.filter((n) => n > 1).length }).toEqual({ t, once: expected(t).length, more: 0 });
    }
    expect(await lab.targets.t2.get('organisationUnit', clash)).toBeUndefined();
    expect((await lab.targets.t1.get('organisationUnit', clash))?.code).toBe('DUP_BATCH');

    // The group waits for approval on t1 alone, in its own sync; t2 has it.
    const gated = await eventually('the group held at its gate on t1', () => client.workflow.getHandle(syncWorkflowId('t1', 'organisationUnitGroup', group)).query(syncProgressQuery).catch(() => undefined),
      (p) => p?.status === 'waiting_for_approval');
    expect(gated?.awaiting).toBeDefined();
    expect(await lab.targets.t1.get('organisationUnitGroup', group)).toBeUndefined();
    expect((await lab.targets.t2.get('organisationUnitGroup', group))?.name).toBe('Burst group');
    // The clashing unit is parked on t2 alone, in its own sync; a later change of it queues behind it.
    const parkedSync = client.workflow.getHandle(syncWorkflowId('t2', 'organisationUnit', clash));
    const parked = await eventually('the clash parked on t2', () => parkedSync.query(syncProgressQuery).catch(() => undefined), (p) => p?.status === 'parked');
    expect(parked?.parked?.errors.map((e) => e.code)).toEqual(['E5003']);
    await sourceImport(lab, 'organisationUnit', [ou(clash, 'Burst clash renamed', { code: 'DUP_BATCH' })]);
    await eventually('the later change queued behind the parked one', () => parkedSync.query(syncProgressQuery), (p) => (p.parked?.queued ?? 0) >= 1);
    await eventually('t1 took the rename in a batch', () => lab.targets.t1.get('organisationUnit', clash), (r) => r?.name === 'Burst clash renamed');
    expect(await lab.targets.t2.get('organisationUnit', clash)).toBeUndefined();

    // Batches, not a workflow per change: a handful of resources have a sync of their own.
    for (const t of targets) {
      const progress = await client.workflow.getHandle(batchWorkflowId(queue, t)).query(batchProgressQuery);
      // A batch the killed worker had applied is found in step when it runs again, and the restarted listener hands over again what it had not confirmed.
      expect({ t, batches: progress.batches < 200, seen: progress.applied + progress.unchanged >= expected(t).length, handedToSyncs: progress.handedToSyncs <= 3 })
        .toEqual({ t, batches: true, seen: true, handedToSyncs: true });
      expect((await runningSyncs(t)).length).toBeLessThanOrEqual(2);
    }
  } finally {
    offs.forEach((off) => off());
  }
}, 420_000);

test('300 new units under a region the targets lack, then each renamed on its own: the region comes first in a batch, and every rename lands', async () => {
  const units = Array.from({ length: 300 }, () => newUid('C'));
  const unit = (u: string, i: number, v: number) => ({ id: u, name: `Chiefdom ${i} v${v}`, shortName: `Chiefdom ${i}`, openingDate: '2020-01-01', parent: { id: region } });
  await sourceImport(lab, 'organisationUnit', units.map((u, i) => unit(u, i, 0)));
  for (const t of targets) {
    await eventually(`every chiefdom on ${t}`, async () => {
      const held = new Map((await lab.targets[t].list('organisationUnit')).map((r: { id: string; parent?: { id: string } }) => [r.id, r.parent?.id]));
      return units.filter((u) => held.get(u) !== region).length;
    }, (missing) => missing === 0, 120_000);
  }
  for (const [i, u] of units.entries()) await sourceImport(lab, 'organisationUnit', [unit(u, i, 1)]);
  for (const t of targets) {
    await eventually(`every rename on ${t}`, async () => {
      const names = new Map((await lab.targets[t].list('organisationUnit')).map((r: { id: string; name: string }) => [r.id, r.name]));
      return units.filter((u, i) => names.get(u) !== `Chiefdom ${i} v1`).length;
    }, (missing) => missing === 0, 120_000);
  }
  expect((await lab.targets.t1.get('organisationUnit', region))?.name).toBe('Northern');
}, 300_000);
