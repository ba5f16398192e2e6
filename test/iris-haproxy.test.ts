/**
 * switchIrisMirror with the HAProxy in front of the members' superserver port (1972), as the
 * simplemirror seed has it: real Debian HAProxy on a lab host, health-checking each member's
 * mirror_status.cxw, its runtime API read over SSH. The switchover checks that the backend sends
 * clients to the primary only before the gate, and to the new primary only after the take-over.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery } from '../contracts/messages';
import { parseServersState } from '../activities/lib/haproxy';
import { useLabs } from './lab/suite';
import { irisNodeInput, mirrorHssysInputFor, MIRROR, startIrisLab, type IrisLab } from './lab/iris';
import { waitForGate } from './support/runs';

const suite = useLabs<IrisLab>('iris-haproxy', (secretsDir) => startIrisLab({ secretsDir, containers: ['a'], haproxy: true }));
let seq = 0;

const start = (type: string, input: unknown) =>
  suite.client.workflow.start(type, { taskQueue: suite.queue, workflowId: `${type}-${suite.queue}-${++seq}`, args: [input] });
async function outcome(handle: WorkflowHandle) {
  const done = await handle.result().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
  return { ...done, progress: await handle.query(progressQuery) };
}
const causeOf = (err: unknown): string => { const e = err as { message: string; cause?: unknown }; return e?.cause ? `${e.message}: ${causeOf(e.cause)}` : e?.message; };

async function mirroredLab(): Promise<IrisLab> {
  const lab = await suite.newLab();
  const r = await outcome(await start('mirrorHssys', mirrorHssysInputFor(lab)));
  if (r.error) throw new Error(`mirrorHssys failed: ${causeOf(r.error)}`);
  return lab;
}
const input = (lab: IrisLab, extra: Record<string, unknown> = {}) => ({
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
  const handle = await start('switchIrisMirror', input(lab));
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
  const misnamed = await outcome(await start('switchIrisMirror', input(lab, { loadBalancer: { ...lab.haproxy!.input, backupServer: 'ap1b' } })));
  expect(causeOf(misnamed.error)).toMatch(/Switchover refused: the load balancer does not send clients to the primary healthconnect-0 only: HAProxy backend iris on haproxy has no server ap1b \(it has: healthconnect-0 .*healthconnect-1 .*\).*Nothing was changed/);
  admin(lab, 'set server iris/healthconnect-0 state maint');
  const refused = await outcome(await start('switchIrisMirror', input(lab)));
  expect(causeOf(refused.error)).toMatch(/Switchover refused: the load balancer does not send clients to the primary healthconnect-0 only: HAProxy backend iris on haproxy does not route to healthconnect-0: it is maint.*Nothing was changed/);
  expect(refused.progress.approvals).toEqual([]);
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Primary' } });
}, 240_000);

test('after the take-over the run waits, bounded, for the backend to route to the new primary only, and says what it saw', async () => {
  const lab = await mirroredLab();
  const handle = await start('switchIrisMirror', input(lab, { takeOverWithinSeconds: 5 }));
  await waitForGate(handle, 'switchover');
  // The new primary's server is held in maintenance: HAProxy will never route to it.
  admin(lab, 'set server iris/healthconnect-1 state maint');
  await handle.signal(approveSignal, { gate: 'switchover', by: 'bob' });
  const done = await outcome(handle);
  expect(causeOf(done.error)).toMatch(/Not as it should be after the switch: .*HAProxy backend iris on haproxy does not route to healthconnect-1: it is maint/);
  // The old primary came back as the backup all the same.
  expect(lab.a.state()).toMatchObject({ running: true, mirror: { role: 'Backup' } });
  expect(lab.b.state().mirror?.role).toBe('Primary');
}, 240_000);
