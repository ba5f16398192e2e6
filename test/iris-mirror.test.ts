/**
 * mirrorHssys against a two-member lab: real sshd on network-namespace hosts, the IRIS simulator as
 * each instance (one reached directly, one through `docker exec`), a real Temporal server and worker.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { progressQuery, type Progress } from '../contracts/messages';
import { loadFaults } from './sims/iris/faults';
import { useLabs } from './lab/suite';
import { readableHistory } from './support/runs';
import { HS_SERVICES_SECRET, IRIS_OWNER, mirrorHssysInputFor, startIrisLab, type IrisLab } from './lab/iris';
import { secretsIn, watchCommandLines } from './support/process-watch';

const suite = useLabs<IrisLab>('iris-mirror', (secretsDir) => startIrisLab({ secretsDir, containers: ['b'] }));
// No secret on any process's command line during the file (issue 24, finding 6): fsi, ssh, iris, servers.
watchCommandLines(() => secretsIn([suite.secretsDir]));
let seq = 0;

async function run(lab: IrisLab, extra: Record<string, unknown> = {}) {
  const handle = await suite.client.workflow.start('mirrorHssys', {
    taskQueue: suite.queue, workflowId: `mirror-hssys-${suite.queue}-${++seq}`, args: [mirrorHssysInputFor(lab, extra)],
  });
  const outcome = await handle.result().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
  return { handle, ...outcome, progress: await handle.query(progressQuery) };
}

const actionsOf = (p: Progress) => Object.fromEntries(p.steps.map((s) => [s.name, s.actions]));
const hssys = (lab: IrisLab, h: 'a' | 'b') => lab[h].state().databases.HSSYS;
const causeOf = (err: unknown): string => { const e = err as { message: string; cause?: unknown }; return e.cause ? `${e.message}: ${causeOf(e.cause)}` : e.message; };

test('mirrors HSSYS: copy checksummed with owner and mode kept, backup active and caught up, settings on both; a second run changes nothing', async () => {
  const lab = await suite.newLab();
  const before = statSync(lab.a.hssysDat);
  const first = await run(lab);
  expect(first.error).toBeUndefined();
  expect(first.result).toMatchObject({ mirrored: true, copied: true });

  // The primary has HSSYS mounted and mirrored; the backup has it mirrored, active and caught up.
  expect(hssys(lab, 'a')).toMatchObject({ mounted: true, mirror: { set: 'HEALTHCONNECT', activationRequired: false } });
  expect(hssys(lab, 'b')).toMatchObject({ mounted: true, readOnly: true, mirror: { set: 'HEALTHCONNECT', activationRequired: false, catchup: false } });
  const copy = statSync(lab.b.hssysDat);
  expect([copy.uid, copy.gid, copy.mode & 0o777]).toEqual([IRIS_OWNER.uid, IRIS_OWNER.gid, before.mode & 0o777]);
  expect(existsSync(`${lab.b.hssysDat}.runbooks-incoming`)).toBe(false);
  // The network host name was set before the copy: the backup's IRIS.DAT carries it.
  expect(lab.b.session('%SYS', 'write !,"NHN=",^|"HSSYS"|%SYS("HealthShare","NetworkHostName"),!').stdout).toContain('NHN=loadbalancer');
  for (const h of [lab.a, lab.b]) {
    expect(lab.passwordMatches(h, lab.hsServicesPassword)).toBe(true);
    expect(lab.credentialMatches(h, lab.hsServicesPassword)).toBe(true);
  }
  expect(lab.b.state().tasks.filter((t) => t.taskClass === 'HS.Util.Mirror.Task' && t.namespace === 'HSSYS')).toHaveLength(1);
  expect(actionsOf(first.progress).copy.join()).toMatch(/copied IRIS\.DAT of HSSYS .* from healthconnect-0 to healthconnect-1/);

  // The password never enters the run's history.
  const history = await readableHistory(first.handle);
  // As JSON writes it (the lab's password has a quote in it, escaped in the history's JSON text).
  expect(history).not.toContain(JSON.stringify(lab.hsServicesPassword).slice(1, -1));
  expect(history).not.toContain(lab.hsServicesPassword.split('"')[0]);
  expect(history).toContain(HS_SERVICES_SECRET);

  const datBefore = readFileSync(lab.b.hssysDat);
  const second = await run(lab);
  expect(second.error).toBeUndefined();
  const actions = actionsOf(second.progress);
  expect(Object.values(actions).flat()).toEqual([]);
  expect(second.progress.steps.find((s) => s.name === 'copy')).toMatchObject({ state: 'skipped' });
  expect(readFileSync(lab.b.hssysDat).equals(datBefore)).toBe(true);
  expect(lab.b.state().tasks).toHaveLength(1);
}, 180_000);

test('swapped roles, and a member that is down, are refused before anything changes', async () => {
  const lab = await suite.newLab();
  lab.swapRoles();
  const before = [JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state())];
  const r = await run(lab);
  expect(causeOf(r.error)).toMatch(/Roles are swapped: healthconnect-0 is the Backup and healthconnect-1 the Primary.*Nothing was changed/);
  expect([JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state())]).toEqual(before);

  const other = await suite.newLab();
  other.b.crash();
  const down = await run(other);
  expect(causeOf(down.error)).toMatch(/healthconnect-1 \(.*\) cannot be asked for its mirror state: .*(down|cannot connect).*Nothing was changed/s);
  expect(other.a.state().databases.HSSYS).toMatchObject({ mounted: true, mirror: null });
  expect(other.a.state().users.HS_Services.enabled).toBe(false);
}, 120_000);

test('a corrupted copy is detected by its checksum and made again; a refused dismount and a failed catch-up are retried', async () => {
  const lab = await suite.newLab();
  lab.b.faults({ corruptCopy: 1, catchupFails: 1 });
  lab.a.faults({ dismountInUse: { HSSYS: 1 } });
  const r = await run(lab);
  expect(r.error).toBeUndefined();
  expect(actionsOf(r.progress).copy.join()).toMatch(/attempt 2: earlier copies differed and were removed/);
  // Each fault fired (its count is used up), and the run went on past it.
  expect(loadFaults(lab.b.home)).toMatchObject({ corruptCopy: 0, catchupFails: 0 });
  expect(loadFaults(lab.a.home).dismountInUse).toMatchObject({ HSSYS: 0 });
  expect(hssys(lab, 'b')).toMatchObject({ mounted: true, mirror: { activationRequired: false, catchup: false } });
  expect(hssys(lab, 'a')).toMatchObject({ mounted: true });
}, 180_000);

test('a copy that keeps failing ends the run with a clear failure and HSSYS mounted again on the primary', async () => {
  const lab = await suite.newLab();
  lab.b.faults({ corruptCopy: 5 });
  const r = await run(lab, { copyAttempts: 2 });
  expect(causeOf(r.error)).toMatch(/Every copy of IRIS\.DAT of HSSYS .* \(2\) differed from the source: check the disk and the network of healthconnect-1\. Nothing was placed/);
  expect(r.progress.compensations).toEqual([expect.objectContaining({ title: 'Mount HSSYS on healthconnect-0 again', state: 'done' })]);
  expect(hssys(lab, 'a')).toMatchObject({ mounted: true });
  expect(hssys(lab, 'b')).toMatchObject({ mounted: true, mirror: null });
  expect(existsSync(`${lab.b.hssysDat}.runbooks-incoming`)).toBe(false);
}, 120_000);

test('a dry-run checks for real and returns the plan, changing nothing', async () => {
  const lab = await suite.newLab();
  const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
  const before = [JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state()), sha(lab.a.hssysDat), sha(lab.b.hssysDat)];
  const r = await run(lab, { dryRun: true });
  expect(r.error).toBeUndefined();
  const plan = r.result as { dryRun: boolean; steps: Array<{ name: string; actions: string[] }> };
  expect(plan.dryRun).toBe(true);
  const planned = Object.fromEntries(plan.steps.map((s) => [s.name, s.actions.join('; ')]));
  expect(planned.hsServices).toMatch(/would set HS_Services on healthconnect-0.*would set HS_Services on healthconnect-1/);
  expect(planned.networkHostName).toMatch(/would set network host name loadbalancer/);
  expect(planned.addToMirror).toMatch(/would add HSSYS to mirror HEALTHCONNECT/);
  expect(planned.dismountPrimary).toMatch(/would dismount HSSYS on healthconnect-0/);
  expect(planned.copy).toMatch(/would copy IRIS\.DAT of HSSYS/);
  expect(planned.mirrorTask).toMatch(/would schedule the mirror monitor task/);
  expect([JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state()), sha(lab.a.hssysDat), sha(lab.b.hssysDat)]).toEqual(before);
}, 120_000);
