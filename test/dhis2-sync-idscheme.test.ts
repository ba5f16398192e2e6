/**
 * A target with idScheme CODE (issue 23 finding 8; the reference app's target.[n].idScheme): it holds
 * the source's org units under its OWN uids with the same codes. Creates, renames, moves and deletes
 * made on the source reach the target's objects found by code, with parents given by the target's
 * uids; nothing is created twice and nothing parks with E5003. An org unit without a code cannot go
 * to such a target and parks, naming why. Real Temporal, PostgreSQL with logical replication, the
 * listener and worker as processes, DHIS2 simulators.
 */
import { writeFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { loadSyncConfig } from '../activities/dhis2/config';
import { applyDraft, reviewDraft } from '../activities/dhis2/approval';
import { syncResource } from '../activities/dhis2/sync';
import { syncProgressQuery } from '../contracts/dhis2/messages';
import { syncWorkflowId } from '../contracts/dhis2/resources';
import { eventually, newUid, sourceDelete, sourceImport, startDhis2Lab, type Dhis2Lab } from './lab/dhis2';
import { startWorker, testClient, uniqueQueue, type Proc } from './support/processes';

let lab: Dhis2Lab;
let client: Client;
let worker: Proc;
const queue = uniqueQueue('dhis2code');

const ou = (id: string, code: string | undefined, name: string, parent?: string) => ({
  id, ...(code ? { code } : {}), name, shortName: name.slice(0, 50), openingDate: '2020-01-01', ...(parent ? { parent: { id: parent } } : {}),
});
// The same four org units on both sides, each side with its own uids.
const src = { root: newUid('R'), bo: newUid('B'), kenema: newUid('K'), clinic: newUid('C') };
const tgt = { root: newUid('r'), bo: newUid('b'), kenema: newUid('k'), clinic: newUid('c') };
/** A second CODE target that has only the top of the tree (under its own uids): the snapshot brings the rest. */
const tgt2 = { root: newUid('s'), bo: newUid('t') };
const group = newUid('G');
const codeless = newUid('Q');
/** On the source before capture, on no CODE target: a child created under it makes the target wait for it. */
const port = newUid('W');

async function targetImport(objects: object[], target = 'codes'): Promise<void> {
  const res = await fetch(`${lab.targets[target].baseUrl}/api/metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` },
    body: JSON.stringify({ organisationUnits: objects }),
  });
  expect(res.status).toBe(200);
}

/** The target's org unit with this code (the test's own lookup, through the simulator's tables). */
const byCode = async (code: string, target = 'codes') => (await lab.targets[target].list('organisationUnit')).filter((o: { code?: string }) => o.code === code);

beforeAll(async () => {
  lab = await startDhis2Lab([]);
  await lab.addTarget('codes', { config: { idScheme: 'CODE' } });
  await lab.addTarget('codes2', { config: { idScheme: 'CODE' } });
  client = await testClient();
  await sourceImport(lab, 'organisationUnit', [ou(src.root, 'SL', 'Sierra Leone'), ou(src.bo, 'SL_BO', 'Bo', src.root), ou(src.kenema, 'SL_KE', 'Kenema', src.root),
    ou(src.clinic, 'SL_BO_CL', 'Bo Clinic', src.bo), ou(codeless, undefined, 'Unnamed Post', src.root), ou(port, 'SL_PORT', 'Port Loko', src.root)]);
  await sourceImport(lab, 'organisationUnitGroup', [{ id: group, code: 'SL_GRP', name: 'Bo units', shortName: 'Bo units', organisationUnits: [{ id: src.bo }, { id: src.clinic }] }]);
  await targetImport([ou(tgt2.root, 'SL', 'Sierra Leone'), ou(tgt2.bo, 'SL_BO', 'Bo', tgt2.root)], 'codes2');
  await targetImport([ou(tgt.root, 'SL', 'Sierra Leone'), ou(tgt.bo, 'SL_BO', 'Bo', tgt.root), ou(tgt.kenema, 'SL_KE', 'Kenema', tgt.root),
    ou(tgt.clinic, 'SL_BO_CL', 'Bo Clinic', tgt.bo)]);
  worker = await startWorker(queue, lab.workerEnv);
  await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: uniqueQueue('setup'), args: [lab.setupInput()] });
  await lab.startListener(queue);
}, 180_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
});

test('snapshot to a CODE target: its own objects are updated, the rest created under its uids; a unit without a code is reported, not sent', async () => {
  const run = client.workflow.execute('orgUnitSnapshot', { taskQueue: queue, workflowId: uniqueQueue('snapshot'), args: [{ target: 'codes2', pageSize: 2 }] });
  await expect(run).rejects.toMatchObject({ cause: { message: expect.stringContaining(`codes2 refused 1 resource(s); everything else was copied. First: ${codeless} NotSyncable organisationUnit ${codeless} has no code on the source`) } });
  const units = await lab.targets.codes2.list('organisationUnit');
  const held = Object.fromEntries(units.map((o: { code: string; id: string; parent?: { id: string } }) => [o.code, { id: o.id, parent: o.parent?.id }]));
  expect(held).toEqual({
    SL: { id: tgt2.root, parent: undefined },
    SL_BO: { id: tgt2.bo, parent: tgt2.root },
    SL_KE: { id: src.kenema, parent: tgt2.root },
    SL_BO_CL: { id: src.clinic, parent: tgt2.bo },
    SL_PORT: { id: port, parent: tgt2.root },
  });
  const [copied] = await lab.targets.codes2.list('organisationUnitGroup');
  expect(copied.code).toBe('SL_GRP');
  expect(copied.organisationUnits.map((m: { id: string }) => m.id).sort()).toEqual([tgt2.bo, src.clinic].sort());
}, 120_000);

test('a CODE target gets a create, a rename, a move and a delete on its own objects, found by code', async () => {
  // Create: the new unit's parent is given by the target's uid of "SL_BO".
  const post = newUid('P');
  await sourceImport(lab, 'organisationUnit', [ou(post, 'SL_BO_HP', 'Bo Health Post', src.bo)]);
  const [created] = await eventually('the health post on the target', () => byCode('SL_BO_HP'), (l) => l.length === 1);
  expect(created.parent?.id).toBe(tgt.bo);
  expect(created.path).toBe(`/${tgt.root}/${tgt.bo}/${created.id}`);

  // Rename: the target's own clinic (its uid) is renamed; no second clinic appears.
  await sourceImport(lab, 'organisationUnit', [ou(src.clinic, 'SL_BO_CL', 'Bo Government Clinic', src.bo)]);
  await eventually('the clinic renamed on the target', () => byCode('SL_BO_CL'), (l) => l.length === 1 && l[0].name === 'Bo Government Clinic');
  expect((await byCode('SL_BO_CL'))[0].id).toBe(tgt.clinic);

  // Move: the clinic's new parent is the target's Kenema.
  await sourceImport(lab, 'organisationUnit', [ou(src.clinic, 'SL_BO_CL', 'Bo Government Clinic', src.kenema)]);
  const [moved] = await eventually('the clinic under Kenema on the target', () => byCode('SL_BO_CL'), (l) => l[0]?.parent?.id === tgt.kenema);
  expect(moved.id).toBe(tgt.clinic);
  expect(moved.path).toBe(`/${tgt.root}/${tgt.kenema}/${tgt.clinic}`);

  // Delete: the target's object with the deleted unit's code goes.
  await sourceDelete(lab, 'organisationUnit', post);
  await eventually('the health post gone from the target', () => byCode('SL_BO_HP'), (l) => l.length === 0);

  // Nothing parked, and the target holds no object under a source uid of a unit it already had.
  for (const uid of [post, src.clinic]) {
    const progress = await client.workflow.getHandle(syncWorkflowId('codes', 'organisationUnit', uid)).query(syncProgressQuery);
    expect(progress.parked).toBeUndefined();
  }
  for (const uid of Object.values(src)) expect(await lab.targets.codes.get('organisationUnit', uid)).toBeUndefined();
  expect((await lab.targets.codes.list('organisationUnit')).length).toBe(4);
}, 180_000);

test('an org unit without a code is parked on a CODE target, saying why, and nothing is sent', async () => {
  const nameless = newUid('N');
  await sourceImport(lab, 'organisationUnit', [ou(nameless, undefined, 'No Code Post', src.kenema)]);
  const handle = client.workflow.getHandle(syncWorkflowId('codes', 'organisationUnit', nameless));
  const parked = await eventually('the sync parked', () => handle.query(syncProgressQuery).catch(() => undefined), (p) => p?.status === 'parked');
  expect(parked!.parked?.error).toContain(`organisationUnit ${nameless} has no code on the source: target codes matches objects by code (idScheme CODE)`);
  expect((await lab.targets.codes.list('organisationUnit')).some((o: { name: string }) => o.name === 'No Code Post')).toBe(false);
}, 120_000);

test('a CODE target that uses a new unit\'s uid for another object, and a delete DHIS2 kept no record of: both park saying why, nothing is overwritten', async () => {
  const clash = newUid('X');
  await targetImport([ou(clash, 'LOCAL_ONLY', 'Local unit', tgt.root)]);
  await sourceImport(lab, 'organisationUnit', [ou(clash, 'SL_NEW', 'New on the source', src.root)]);
  const parked = await eventually('the clash parked', () => client.workflow.getHandle(syncWorkflowId('codes', 'organisationUnit', clash)).query(syncProgressQuery).catch(() => undefined),
    (p) => p?.status === 'parked');
  expect(parked!.parked?.error).toContain(`organisationUnit ${clash} (code "SL_NEW") is not on target codes by its code, and the target uses its uid for another organisationUnit (code "LOCAL_ONLY")`);
  expect(await lab.targets.codes.get('organisationUnit', clash)).toMatchObject({ code: 'LOCAL_ONLY', name: 'Local unit' });

  // Deleted by SQL behind DHIS2's back: no deletedObjects record, so the code (and the target's copy) is unknown.
  const sqlGone = newUid('Y');
  await sourceImport(lab, 'organisationUnit', [ou(sqlGone, 'SL_SQL', 'Deleted by SQL', src.root)]);
  await eventually('the unit on the target', () => byCode('SL_SQL'), (l) => l.length === 1);
  await lab.pg.sql('DELETE FROM organisationunit WHERE uid = $1', [sqlGone], 'dhis2_source');
  const stuck = await eventually('the delete parked', () => client.workflow.getHandle(syncWorkflowId('codes', 'organisationUnit', sqlGone)).query(syncProgressQuery),
    (p) => p.status === 'parked');
  expect(stuck.parked?.error).toContain(`organisationUnit ${sqlGone} is not on the source, and the source has no record of deleting it (GET /api/deletedObjects)`);
  expect(await byCode('SL_SQL')).toHaveLength(1);
}, 120_000);

test('a child whose parent the CODE target lacks waits for it: the parent is synced by its code, then the child goes under it', async () => {
  const child = newUid('V');
  await sourceImport(lab, 'organisationUnit', [ou(child, 'SL_PORT_1', 'Port Loko Clinic', port)]);
  const [held] = await eventually('the child on the target', () => byCode('SL_PORT_1'), (l) => l.length === 1);
  expect(held.parent?.id).toBe(port);
  expect(await byCode('SL_PORT')).toMatchObject([{ id: port, parent: { id: tgt.root } }]);
  const progress = await client.workflow.getHandle(syncWorkflowId('codes', 'organisationUnit', child)).query(syncProgressQuery);
  expect(progress.recent.map((r) => r.note ?? '')).toContainEqual(`the target lacks organisationUnit ${port} (parent)`);
}, 120_000);

test('approval on a CODE target: the draft names the source uids, shows only the real change, and the approved draft renames the target\'s own object', async () => {
  // A third CODE target, known only to this process (the worker and listener never see it): it holds Bo under its own
  // uid with an old name, and a rename of a unit needs approval there. The activities run here, as the worker runs them.
  const gated = await lab.addTarget('gated', { config: { idScheme: 'CODE', fieldsRequireApproval: ['organisationunit.name'], approval: { approvers: ['alice'], timeout: '1h' } } });
  const entry = lab.config.targets.find((t: { name: string }) => t.name === 'gated');
  lab.writeConfig((c) => { c.targets = c.targets.filter((t: { name: string }) => t.name !== 'gated'); });
  const file = `${lab.configFile}.gated.json`;
  writeFileSync(file, JSON.stringify({ ...lab.config, targets: [...lab.config.targets, entry] }));
  const gatedBo = newUid('g');
  await targetImport([ou(newUid('h'), 'SL', 'Sierra Leone')], 'gated');
  const [gatedRoot] = await byCode('SL', 'gated');
  await targetImport([ou(gatedBo, 'SL_BO', 'Bo (old name)', gatedRoot.id)], 'gated');
  Object.assign(process.env, { ...lab.workerEnv, ORGUNIT_SYNC_CONFIG: file });

  const req = { target: 'gated', type: 'organisationUnit' as const, uid: src.bo };
  const staged = await syncResource(req);
  if (staged.action !== 'needsApproval') throw new Error(`expected a gate, got ${JSON.stringify(staged)}`);
  expect(staged).toMatchObject({ operation: 'update', gatedFields: ['name'], draftKey: `organisationUnit-${src.bo}` });
  expect(staged.changes.map((c) => c.field).sort()).toEqual(['name', 'shortName']);
  const draft: any = await (await fetch(`${gated.baseUrl}/api/dataStore/org-unit-sync/organisationUnit-${src.bo}`, { headers: { authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` } })).json();
  expect(draft.organisationUnits[0]).toMatchObject({ id: src.bo, code: 'SL_BO', name: 'Bo', parent: { id: src.root } });
  const review = await reviewDraft({ ...req, operation: 'update' });
  expect(review).toMatchObject({ action: 'draft', view: { fingerprint: staged.draftHash, gatedFields: ['name'] } });

  expect(await applyDraft({ ...req, operation: 'update', draftHash: staged.draftHash, approved: staged.draftHash })).toEqual({ action: 'updated', edited: false });
  expect((await byCode('SL_BO', 'gated')).map((o: { id: string; name: string; parent: { id: string } }) => [o.id, o.name, o.parent.id])).toEqual([[gatedBo, 'Bo', gatedRoot.id]]);
  // Applied: the same pass now finds nothing to do.
  expect(await syncResource(req)).toEqual({ action: 'unchanged' });
}, 60_000);

test('idScheme is UID by default and takes only UID or CODE: another value is refused naming the field', () => {
  const file = `${lab.configFile}.idscheme.json`;
  const write = (idScheme: unknown) => writeFileSync(file, JSON.stringify({ ...lab.config, targets: lab.config.targets.map((t: object, i: number) => (i === 1 ? { ...t, idScheme } : t)) }));
  write(undefined);
  expect(loadSyncConfig(file).targets.map((t) => t.idScheme)).toEqual(['CODE', 'UID']);
  for (const bad of ['code', 'AUTO', 'NAME', 7]) {
    write(bad);
    expect(() => loadSyncConfig(file)).toThrow(/is not valid:\n {2}- targets\.1\.idScheme: UID \(match objects by uid\) or CODE \(match objects by code\)$/);
  }
});
