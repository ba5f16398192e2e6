/**
 * A worker told to stop is gone within its shutdown grace whatever its SSH sessions are doing
 * (issue 24, finding 8). The lab's hosts vanish (their links go down: no answer, no reset, as a
 * torn-down or unplugged machine) while an activity waits on its pooled session; SIGTERM; the
 * process must have exited within the grace + 5 s. Before, it lingered until the kernel gave up
 * on the half-closed connections, about 15 minutes.
 */
import { execFileSync } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { startLab, type Lab } from './lab/hosts';
import { setupInput } from './lab/inputs';
import { eventually, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';

const graceMs = 3_000;
let lab: Lab;
let client: Client;
let worker: Proc | undefined;

beforeAll(async () => {
  lab = await startLab();
  client = await testClient();
}, 120_000);
afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
});

/** Resolves true when the process has exited, false if it still runs after `ms` (a bound on the wait, not a speed test). */
const exitsWithin = (p: Proc, ms: number) => new Promise<boolean>((resolve) => {
  const timer = setTimeout(() => resolve(false), ms);
  void p.exited.then(() => { clearTimeout(timer); resolve(true); });
});

test('SIGTERM while an activity waits on a host that vanished: the worker is gone within the grace', async () => {
  const queue = uniqueQueue('shutdown');
  worker = await startWorker(queue, { ...lab.workerEnv, RUNBOOKS_SHUTDOWN_GRACE: `${graceMs}ms` });
  const dryRun = (n: number) => client.workflow.start('setupPostgresStandby', {
    taskQueue: queue, workflowId: `${queue}-${n}`, args: [setupInput(lab, 'openelis-docker', lab.a, lab.b, { dryRun: true })],
  });
  await (await dryRun(1)).result(); // the worker now holds a pooled session to each host

  for (const h of [lab.a, lab.b]) execFileSync('ip', ['netns', 'exec', h.ns, 'ip', 'link', 'set', 'eth0', 'down']);
  const stuck = await dryRun(2);
  await eventually(async () => (await stuck.describe()).raw.pendingActivities?.some((a) => a.activityType?.name === 'preflightStandbySetup' && a.lastHeartbeatTime),
    'the preflight waiting on a pooled session to a vanished host', 60_000);

  worker.child.kill('SIGTERM');
  const gone = await exitsWithin(worker, graceMs + 5_000);
  expect(gone ? 'exited' : `still running ${graceMs + 5_000} ms after SIGTERM:\n${worker.output().slice(-3000)}`).toBe('exited');
  // It stopped by itself (the sessions were destroyed at the grace), not by the last-resort exit.
  expect(worker.output()).toMatch(/Worker stopped/);
}, 180_000);
