/**
 * createMirroredNamespace and switchIrisMirror on a mirror pair whose HSSYS the real mirrorHssys
 * runbook mirrored first: real sshd on lab hosts, the IRIS simulator, nginx as the HTTP load balancer
 * and Debian's HAProxy on the superserver port (health-checking each member's mirror_status.cxw).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery, type Progress } from '../contracts/messages';
import { useLabs } from './lab/suite';
import { chownSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { IRIS_OWNER, irisNodeInput, mirrorHssysInputFor, MIRROR, startIrisLab, type IrisLab } from './lab/iris';
import { transact } from './sims/iris/instance';
import { setArbiter } from './sims/iris/admin';
import { parseServersState } from '../activities/lib/haproxy';
import { switchIrisMirrorInput } from '../contracts/iris/schema';
import { waitForGate } from './support/runs';

// A, the first primary, is the container deployment: installs through docker exec, the switchover stops and starts the container.
// HAProxy in front of the superserver port as in the simplemirror seed (the switchover checks it only when loadBalancer names it).
const suite = useLabs<IrisLab>('iris-ns', (secretsDir) => startIrisLab({ secretsDir, containers: ['a'], haproxy: true }));
let seq = 0;

const start = (type: string, input: unknown) =>
  suite.client.workflow.start(type, { taskQueue: suite.queue, workflowId: `${type}-${suite.queue}-${++seq}`, args: [input] });

async function outcome(handle: WorkflowHandle) {
  const done = await handle.result().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
  return { ...done, progress: await handle.query(progressQuery) };
}

const causeOf = (err: unknown): string => { const e = err as { message: string; cause?: unknown }; return e?.cause ? `${e.message}: ${causeOf(e.cause)}` : e?.message; };
const actions = (p: Progress) => p.steps.flatMap((s) => s.actions);
const pair = (lab: IrisLab) => ({ primary: irisNodeInput(lab.a), backup: irisNodeInput(lab.b), mirror: MIRROR, requestedBy: 'alice' });
const status = async (url: string) => { try { const r = await fetch(url, { signal: AbortSignal.timeout(5_000) }); return `${r.status} ${await r.text()}`; } catch { return 'no answer'; } };

/** A lab whose HSSYS is mirrored, by the runbook itself. */
async function mirroredLab(): Promise<IrisLab> {
  const lab = await suite.newLab();
  const r = await outcome(await start('mirrorHssys', mirrorHssysInputFor(lab)));
  if (r.error) throw new Error(`mirrorHssys failed: ${causeOf(r.error)}`);
  return lab;
}

test('a mirrored Foundation namespace: installed on the primary, its database active and caught up on the backup; a second run changes nothing', async () => {
  const lab = await mirroredLab();
  const first = await outcome(await start('createMirroredNamespace', { ...pair(lab), namespace: 'CLINICAL' }));
  expect(first.error).toBeUndefined();
  expect(first.result).toEqual({ namespace: 'CLINICAL', created: true });
  const [a, b] = [lab.a.state(), lab.b.state()];
  expect(a.namespaces.CLINICAL).toBeDefined();
  expect(a.databases.CLINICAL).toMatchObject({ mounted: true, mirror: { set: MIRROR } });
  expect(a.productions.CLINICAL).toMatchObject({ autoStart: 'CLINICALPKG.FoundationProduction', running: true });
  expect(b.namespaces.CLINICAL).toBeDefined();
  expect(b.databases.CLINICAL).toMatchObject({ mounted: true, readOnly: true, mirror: { activationRequired: false, catchup: false } });

  const second = await outcome(await start('createMirroredNamespace', { ...pair(lab), namespace: 'CLINICAL' }));
  expect(second.error).toBeUndefined();
  expect(second.result).toEqual({ namespace: 'CLINICAL', created: false });
  expect(actions(second.progress)).toEqual([]);
}, 180_000);

test('a namespace that exists with different settings is refused; so is one before HSSYS is mirrored; a dry-run changes nothing', async () => {
  const lab = await mirroredLab();
  // LOCAL exists on the primary, but its database is not mirrored.
  const made = lab.a.session('HSLIB', 'kill vars set vars("Mirror")=0 set sc=##class(HS.Util.Installer.Foundation).Install("LOCAL",.vars) write !,"SC=",sc,!');
  expect(made.stdout).toContain('SC=1');
  // The backup dejournals that install (HSSYS records the namespace) on its own, as IRIS does.
  lab.b.session('%SYS', 'write 1');
  const before = [JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state())];
  const refused = await outcome(await start('createMirroredNamespace', { ...pair(lab), namespace: 'LOCAL' }));
  expect(causeOf(refused.error)).toMatch(/Namespace LOCAL already exists on healthconnect-0 with different settings: its database is not mirrored.*Nothing was changed/);

  const dry = await outcome(await start('createMirroredNamespace', { ...pair(lab), namespace: 'LAB', dryRun: true }));
  expect(dry.error).toBeUndefined();
  expect(actions(dry.progress).join('\n')).toMatch(/would install Foundation namespace LAB on healthconnect-0, mirrored\nwould set LABPKG.FoundationProduction to start automatically/);
  expect([JSON.stringify(lab.a.state()), JSON.stringify(lab.b.state())]).toEqual(before);

  const fresh = await suite.newLab();
  const early = await outcome(await start('createMirroredNamespace', { ...pair(fresh), namespace: 'LAB' }));
  expect(causeOf(early.error)).toMatch(/HSSYS is not mirrored, active and caught up on healthconnect-1: run mirrorHssys first/);
}, 180_000);

test('a planned switchover: after approval the backup is the primary, the old primary the caught-up backup, health checks and the load balancer agree', async () => {
  const lab = await mirroredLab();
  const input = { ...pair(lab), applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw`, switchApproval: { approvers: ['bob'], fourEyes: true } };
  const dry = await outcome(await start('switchIrisMirror', { ...input, dryRun: true }));
  expect(dry.error).toBeUndefined();
  expect(actions(dry.progress).join('\n')).toMatch(/would stop IRIS on healthconnect-0 \(graceful: the backup takes over\)\nwould start IRIS on healthconnect-0/);
  expect(lab.a.state().mirror?.role).toBe('Primary');

  const handle = await start('switchIrisMirror', input);
  await waitForGate(handle, 'switchover');
  // This pair has no arbiter: not refused (a graceful stop hands over without one), but named as a risk.
  const gate = (await handle.query(progressQuery)).approvals.find((g) => g.gate === 'switchover');
  expect(gate?.summary).toMatch(/Arbiter: none\. Risk: no arbiter is configured for mirror HEALTHCONNECT: .*cannot fail over automatically/);
  // Nothing has stopped while the gate is open.
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
  await handle.signal(approveSignal, { gate: 'switchover', by: 'bob' });
  const done = await outcome(handle);
  expect(done.error).toBeUndefined();
  expect(done.result).toMatchObject({ primary: 'healthconnect-1', backup: 'healthconnect-0' });
  expect(lab.b.state().mirror?.role).toBe('Primary');
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Backup' } });
  expect(lab.a.state().databases.HSSYS.mirror).toMatchObject({ activationRequired: false, catchup: false });
  expect(await status(`http://${lab.b.address}:52773/csp/mirror_status.cxw`)).toBe('200 SUCCESS');
  expect(await status(`http://${lab.a.address}:52773/csp/mirror_status.cxw`)).toBe('503 FAILED');
  expect(await status(`${lab.lbUrl}/csp/mirror_status.cxw`)).toBe('200 SUCCESS');
}, 180_000);

test('a switchover with an unhealthy backup is refused, nothing stopped', async () => {
  const lab = await mirroredLab();
  // HSSYS dismounted on the backup: it could not serve as primary.
  const r = lab.b.session('%SYS', 'set sc=##class(SYS.Database).DismountDatabase("/usr/irissys/mgr/hssys/") write !,"SC=",sc,!');
  expect(r.stdout).toContain('SC=1');
  const refused = await outcome(await start('switchIrisMirror', { ...pair(lab), applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw` }));
  expect(causeOf(refused.error)).toMatch(/Switchover refused: the backup healthconnect-1 is not ready to take over: HSSYS is missing.*Nothing was changed/);
  expect(refused.progress.approvals).toEqual([]);
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
}, 180_000);

test('a switchover is refused when a mirrored namespace\'s database on the backup is behind, whichever form MirroredDatabaseList names it in', async () => {
  const lab = await mirroredLab();
  expect((await outcome(await start('createMirroredNamespace', { ...pair(lab), namespace: 'CLINICAL' }))).error).toBeUndefined();
  // The primary's list names its rows :mirror:HEALTHCONNECT:<DB> (as the shared reference reports);
  // the backup's CLINICAL is mounted but has a catch-up pending: it could not serve as primary.
  lab.a.faults({ prefixedMirroredDatabaseList: true });
  transact(lab.b.home, (t) => { t.s.databases.CLINICAL.mirror!.catchup = true; });
  for (const f of readdirSync(lab.b.home)) chownSync(path.join(lab.b.home, f), IRIS_OWNER.uid, IRIS_OWNER.gid);
  // Without the members' mirror_status.cxw URLs (no private web server to guess at) it is refused, naming the field.
  const noUrls = { ...pair(lab), primary: { ...irisNodeInput(lab.a), mirrorStatusUrl: undefined }, backup: { ...irisNodeInput(lab.b), mirrorStatusUrl: undefined } };
  const unnamed = await outcome(await start('switchIrisMirror', { ...noUrls, applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw`, dryRun: true }));
  expect(causeOf(unnamed.error)).toMatch(/Switchover refused: no mirrorStatusUrl for healthconnect-0 and healthconnect-1: .*Web Gateway.*Nothing was changed/);
  // A dry-run checks for real: it must refuse as a real run would, before any gate.
  const refused = await outcome(await start('switchIrisMirror', { ...pair(lab), applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw`, dryRun: true }));
  expect(causeOf(refused.error)).toMatch(/Switchover refused: the backup healthconnect-1 is not ready to take over: CLINICAL is not active and caught up.*Nothing was changed/);
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
}, 240_000);

/** The mirror's arbiter as both members' configuration names it, and who is connected to it (files the sim's owner keeps). */
function arbiter(lab: IrisLab, node: string, primaryConnected: boolean, backupConnected: boolean) {
  setArbiter(lab.a.home, node, primaryConnected, backupConnected);
  for (const home of [lab.a.home, lab.b.home]) for (const f of readdirSync(home)) chownSync(path.join(home, f), IRIS_OWNER.uid, IRIS_OWNER.gid);
}

test('with an arbiter configured, a switchover is refused while a failover member has lost contact with it: before the gate, and again after it', async () => {
  const lab = await mirroredLab();
  const input = { ...pair(lab), applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw` };
  // The backup lost its arbiter connection: the mirror is no longer in arbiter controlled mode.
  arbiter(lab, 'arbiter.lab|2188', true, false);
  const refused = await outcome(await start('switchIrisMirror', input));
  expect(causeOf(refused.error)).toMatch(/Switchover refused: mirror HEALTHCONNECT is not ready to fail over \(SYS\.Mirror\.IsFailoverReady\): healthconnect-0 says ".*HEALTHCONNECT_B not connected to the arbiter.*"; healthconnect-1 says .*with an arbiter configured \(arbiter\.lab\|2188\) both failover members must be connected to it.*Nothing was changed/);
  expect(refused.progress.approvals).toEqual([]);
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });

  // Both connected: the gate opens and names the arbiter, no risk. The primary loses it while the gate is open.
  arbiter(lab, 'arbiter.lab|2188', true, true);
  const handle = await start('switchIrisMirror', input);
  await waitForGate(handle, 'switchover');
  const gate = (await handle.query(progressQuery)).approvals.find((g) => g.gate === 'switchover');
  expect(gate?.summary).toMatch(/Arbiter: arbiter\.lab\|2188\. Check by hand first/);
  expect(gate?.summary).not.toMatch(/Risk:/);
  arbiter(lab, 'arbiter.lab|2188', false, true);
  await handle.signal(approveSignal, { gate: 'switchover', by: 'bob' });
  const late = await outcome(handle);
  expect(causeOf(late.error)).toMatch(/Switchover refused: mirror HEALTHCONNECT is not ready to fail over .*HEALTHCONNECT_A not connected to the arbiter/);
  expect(late.progress.steps.find((s) => s.name === 'stopPrimary')).toMatchObject({ state: 'failed' });
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
  expect(lab.b.state()).toMatchObject({ running: true, mirror: { role: 'Backup' } });
}, 240_000);

// HAProxy on the superserver port (finding 7): real Debian HAProxy health-checking each member's mirror_status.cxw.
const lbInput = (lab: IrisLab, extra: Record<string, unknown> = {}) => ({
  primary: irisNodeInput(lab.a), backup: irisNodeInput(lab.b), mirror: MIRROR, requestedBy: 'alice',
  applicationUrl: `${lab.lbUrl}/csp/mirror_status.cxw`, loadBalancer: lab.haproxy!.input, ...extra,
});
/** The backend's servers as HAProxy's admin socket lists them: name -> routed (ready and UP). */
const routing = (lab: IrisLab) => Object.fromEntries(parseServersState(lab.haproxy!.servers(), 'iris').map((s) => [s.name, s.admin === 'ready' && s.running]));
/** A runtime API command on the lab's HAProxy, as an operator at its socket would type it. */
const admin = (lab: IrisLab, command: string) => lab.haproxy!.command(command);

test('with the HAProxy backend named: the gate says it routes to the primary only and asks for the Web Gateways by hand; after the switch it routes to the new primary only', async () => {
  const lab = await mirroredLab();
  expect(routing(lab)).toEqual({ 'healthconnect-0': true, 'healthconnect-1': false });
  const handle = await start('switchIrisMirror', lbInput(lab));
  await waitForGate(handle, 'switchover');
  const gate = (await handle.query(progressQuery)).approvals.find((g) => g.gate === 'switchover');
  expect(gate?.summary).toMatch(/HAProxy backend iris on haproxy sends clients to healthconnect-0 only\. Check by hand first .*Mirror_Aware=1/);
  await handle.signal(approveSignal, { gate: 'switchover', by: 'bob' });
  const done = await outcome(handle);
  expect(done.error).toBeUndefined();
  expect(routing(lab)).toEqual({ 'healthconnect-0': false, 'healthconnect-1': true });
}, 240_000);

test('refused before the gate when the backend does not send clients to the primary only, or has no server of that name; nothing stopped', async () => {
  const lab = await mirroredLab();
  const misnamed = await outcome(await start('switchIrisMirror', lbInput(lab, { loadBalancer: { ...lab.haproxy!.input, backupServer: 'ap1b' } })));
  expect(causeOf(misnamed.error)).toMatch(/Switchover refused: the load balancer does not send clients to the primary healthconnect-0 only: HAProxy backend iris on haproxy has no server ap1b \(it has: healthconnect-0 .*healthconnect-1 .*\).*Nothing was changed/);
  admin(lab, 'set server iris/healthconnect-0 state maint');
  const refused = await outcome(await start('switchIrisMirror', lbInput(lab)));
  expect(causeOf(refused.error)).toMatch(/Switchover refused: the load balancer does not send clients to the primary healthconnect-0 only: HAProxy backend iris on haproxy does not route to healthconnect-0: it is maint.*Nothing was changed/);
  expect(refused.progress.approvals).toEqual([]);
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
}, 240_000);

test('after the take-over the run waits, bounded, for the backend to route to the new primary only, and says what it saw', async () => {
  const lab = await mirroredLab();
  const handle = await start('switchIrisMirror', lbInput(lab, { takeOverWithinSeconds: 5 }));
  await waitForGate(handle, 'switchover');
  // The new primary's server is held in maintenance: HAProxy will never route to it.
  admin(lab, 'set server iris/healthconnect-1 state maint');
  await handle.signal(approveSignal, { gate: 'switchover', by: 'bob' });
  const done = await outcome(handle);
  expect(causeOf(done.error)).toMatch(/Not as it should be \d+ s after the switch: .*HAProxy backend iris on haproxy does not route to healthconnect-1: it is maint/);
  // The bounded wait was the retry: one attempt, so the old primary is not kept down for more of them.
  const events = (await handle.fetchHistory()).events ?? [];
  const verifyId = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'verifyFromOutside')?.eventId;
  expect(events.find((e) => e.activityTaskStartedEventAttributes && String(e.activityTaskStartedEventAttributes.scheduledEventId) === String(verifyId))
    ?.activityTaskStartedEventAttributes?.attempt).toBe(1);
  // The old primary came back as the backup all the same.
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Backup' } });
  expect(lab.b.state().mirror?.role).toBe('Primary');
}, 240_000);

test('the input schema refuses a bad loadBalancer naming the field', async () => {
  const lab = await suite.newLab();
  const bad = (lb: Record<string, unknown>) => switchIrisMirrorInput.safeParse({ ...lbInput(lab), loadBalancer: { ...lab.haproxy!.input, ...lb } });
  const issue = (r: ReturnType<typeof bad>) => (r.success ? 'accepted' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  expect(issue(bad({ primaryServer: 'a b; show info' }))).toMatch(/^loadBalancer\.primaryServer: an HAProxy server name/);
  expect(issue(bad({ backupServer: lab.haproxy!.input.primaryServer }))).toMatch(/^loadBalancer\.backupServer: primaryServer and backupServer are the same server/);
  expect(issue(bad({ adminSocket: '/run/haproxy/admin.sock,fork' }))).toMatch(/^loadBalancer\.adminSocket: /);
  expect(issue(bad({ backend: '' }))).toMatch(/^loadBalancer\.backend: a backend name/);
  expect(bad({}).success).toBe(true);
}, 60_000);
