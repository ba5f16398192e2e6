/**
 * The production shape of Temporal (scripts/temporal-postgres.sh): the real multi-service server
 * on PostgreSQL with mutual TLS, under faults. Runbooks go through it from the CLI; the server is
 * SIGKILLed and its PostgreSQL shut down mid-run; a worker dies mid-activity beside another; a run
 * outlives its worker's sticky cache. Every run must complete, and no activity that had completed
 * may run again.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { decodeTimeoutType } from '@temporalio/common';
import { approveSignal, type Progress } from '../contracts/messages';
import { readJournal } from './support/fake-target';
import type { JournalEntry } from './support/crash-injection';
import { freePort } from './support/global-setup';
import { eventually, repoRoot, runCli, startProcess, startWorker, uniqueQueue, type Proc } from './support/processes';
import { progressOf, startGated, tempDir, waitForGate } from './support/runs';
import { startProductionTemporal, type ProductionTemporal } from './lab/temporal-production';
import { showingSecrets } from './support/process-watch';

let temporal: ProductionTemporal;
let client: Client;
const workers: Proc[] = [];
const scratchDirs: string[] = [];
const scratch = (prefix: string) => { const dir = tempDir(prefix); scratchDirs.push(dir); return dir; };

beforeAll(async () => {
  temporal = await startProductionTemporal();
  client = await temporal.client();
}, 20 * 60_000); // the first run builds the server (scripts/test.sh builds it before the suite)

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await temporal?.stop();
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
}, 120_000);

async function worker(queue: string, env: Record<string, string> = {}): Promise<Proc> {
  const w = await startWorker(queue, { ...temporal.env, ...env });
  workers.push(w);
  return w;
}

/** Every activity execution that finished its work, per activity id (the crash-injection journal). */
function executions(journal: string): Map<string, JournalEntry[]> {
  const byId = new Map<string, JournalEntry[]>();
  if (!existsSync(journal)) return byId;
  for (const line of readFileSync(journal, 'utf8').split('\n').filter(Boolean)) {
    const e = JSON.parse(line) as JournalEntry;
    byId.set(e.activityId, [...(byId.get(e.activityId) ?? []), e]);
  }
  return byId;
}

/** The ids of the activities whose completion the server has recorded in the run's history. */
async function completedActivities(handle: WorkflowHandle): Promise<string[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = new Map(events.filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => [String(e.eventId), e.activityTaskScheduledEventAttributes!.activityId!]));
  return events.filter((e) => e.activityTaskCompletedEventAttributes)
    .map((e) => scheduled.get(String(e.activityTaskCompletedEventAttributes!.scheduledEventId))!);
}

/** The run's `activityId`-th activity once its first attempt runs on a worker. */
async function activityRunning(handle: WorkflowHandle, activityId: string, what: string) {
  return eventually(async () => {
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    return pending.find((a) => a.activityId === activityId && a.attempt === 1 && a.lastStartedTime && a.lastWorkerIdentity);
  }, what);
}

const identityOf = (w: Proc) => `${w.child.pid}@${os.hostname()}`;

const actions = (journal: string) => readJournal(journal).map((l) => l.action);
const checklist = (p: Progress) => ({ status: p.status, currentStep: p.currentStep, steps: p.steps, approvals: p.approvals, compensations: p.compensations });

test('the script is idempotent: run again, it keeps the server, its address, namespace and certificates', async () => {
  const pid = temporal.serverPid();
  expect(await temporal.start()).toEqual(temporal.env);
  expect(temporal.serverPid()).toBe(pid);
  const ns = await client.workflowService.describeNamespace({ namespace: 'runbooks' });
  expect(Number(ns.config?.workflowExecutionRetentionTtl?.seconds)).toBe(30 * 24 * 3600);
  const attrs = await client.connection.operatorService.listSearchAttributes({ namespace: 'runbooks' });
  expect(Object.keys(attrs.customAttributes ?? {})).toEqual(expect.arrayContaining(['RunbookName', 'RunbookStep', 'RunbookStatus', 'RunbookTarget', 'RunbookResource']));
  // Keys and the database password stay private to the user who runs it.
  for (const file of ['tls/ca.key', 'tls/server.key', 'tls/client.key', 'secrets/temporal-db-password', 'config/production.yaml']) {
    expect(execFileSync('stat', ['-c', '%a', path.join(temporal.stateDir, file)], { encoding: 'utf8' }).trim()).toBe('600');
  }
}, 120_000);

test('no secret on any command line while the script starts PostgreSQL, sets the password, the schema and the server (every exec traced)', () => {
  const password = readFileSync(path.join(temporal.stateDir, 'secrets/temporal-db-password'), 'utf8').trim();
  expect(temporal.startExecs.filter((l) => /"[^"]*\/psql"/.test(l)).length).toBeGreaterThan(0); // the trace saw psql itself
  expect(showingSecrets(temporal.startExecs, [password])).toEqual([]);
});

test('the script refuses settings it would have to write unquoted into its configuration, and creates nothing', () => {
  const root = scratch('prod-hostile-');
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ RUNBOOKS_STATE_DIR: `${root}/a"b` }, /RUNBOOKS_STATE_DIR must not contain a newline, a quote or a backslash/],
    [{ RUNBOOKS_STATE_DIR: `${root}/a'b` }, /RUNBOOKS_STATE_DIR must not contain/],
    [{ RUNBOOKS_STATE_DIR: `${root}/a\nb` }, /RUNBOOKS_STATE_DIR must not contain/],
    [{ RUNBOOKS_STATE_DIR: root, RUNBOOKS_TEMPORAL_NAMESPACE: 'runbooks; rm -rf /' }, /RUNBOOKS_TEMPORAL_NAMESPACE must be 2-255 letters, digits/],
    [{ RUNBOOKS_STATE_DIR: root, RUNBOOKS_TEMPORAL_RETENTION: '$(id)d' }, /RUNBOOKS_TEMPORAL_RETENTION must be hours or days/],
    [{ RUNBOOKS_STATE_DIR: root, RUNBOOKS_TEMPORAL_RETENTION: '2h' }, /at least 1d/],
    [{ RUNBOOKS_STATE_DIR: root, RUNBOOKS_TEMPORAL_PORT: 'a[$(touch pwned)]' }, /RUNBOOKS_TEMPORAL_PORT must be a port number/],
  ];
  for (const [env, message] of cases) {
    const r = spawnSync(path.join(repoRoot, 'scripts/temporal-postgres.sh'), ['start'], { env: { ...process.env, ...env }, encoding: 'utf8' });
    expect({ env, status: r.status, stderr: r.stderr }).toEqual({ env, status: 1, stderr: expect.stringMatching(message) });
  }
  expect(readdirSync(root)).toEqual([]);
  expect(existsSync(path.join(repoRoot, 'pwned'))).toBe(false);
});

test('a runbook started through the CLI over mutual TLS completes', async () => {
  const queue = uniqueQueue('prod-cli');
  await worker(queue);
  const dir = scratch('prod-cli-');
  const input = path.join(dir, 'input.json');
  const journal = path.join(dir, 'journal.log');
  writeFileSync(input, JSON.stringify({ journal, gate: { timeout: '1h' } }));
  const env = { ...temporal.env, RUNBOOKS_TASK_QUEUE: queue };
  const id = `prod-cli-${queue}`;
  const waiting = runCli(['start', 'gatedRunbook', '--input', input, '--id', id, '--by', 'alice', '--wait', '--timeout', '2m'], env);
  await waitForGate(client.workflow.getHandle(id), 'cutover');
  const approved = await runCli(['approve', id, '--gate', 'cutover', '--by', 'bob', '--reason', 'checked'], env);
  expect(approved.stdout).toContain('approve of gate "cutover" by bob: accepted');
  expect(approved.code).toBe(0);
  const result = await waiting;
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('"outcome": "done"');
  expect(actions(journal)).toEqual(['take down', 'switch over', 'bring up']);
}, 120_000);

test('start.sh with the printed environment runs the worker and the approval gateway against it; SIGINT stops them', async () => {
  const queue = uniqueQueue('prod-start');
  const approvalPort = await freePort();
  const child = spawn(path.join(repoRoot, 'scripts/start.sh'), [], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...temporal.env, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_STATE_DIR: scratch('prod-start-'), APPROVAL_PORT: String(approvalPort) },
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let workerPid = 0;
  try {
    await eventually(async () => out.includes('[start] ready'), 'start.sh to be ready', 120_000);
    expect(out).toContain(`Temporal       ${temporal.env.TEMPORAL_ADDRESS}\n`);
    expect(out).not.toContain('dev server');
    const ready = JSON.parse(/\[worker\] (\{.*"Worker ready".*\})/.exec(out)![1]);
    expect(ready).toMatchObject({ namespace: 'runbooks', address: temporal.env.TEMPORAL_ADDRESS, taskQueue: queue });
    workerPid = ready.pid;
    const pollers = await eventually(async () => (await client.workflowService.describeTaskQueue({ namespace: 'runbooks', taskQueue: { name: queue }, taskQueueType: 1 })).pollers?.length, 'the worker to poll');
    expect(pollers).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${approvalPort}/healthz`)).status).toBe(200);
  } finally {
    child.kill('SIGINT');
  }
  expect(await exited).toBe(0);
  await expect(fetch(`http://127.0.0.1:${approvalPort}/healthz`)).rejects.toThrow();
  expect(existsSync(`/proc/${workerPid}`)).toBe(false);
}, 180_000);

test('without a client certificate the CLI and the worker refuse to connect, say why, and exit 4', async () => {
  const noCert = { ...temporal.env, TEMPORAL_TLS_CLIENT_CERT_PATH: undefined, TEMPORAL_TLS_CLIENT_KEY_PATH: undefined };
  // A certificate from another CA is no better than none.
  const dir = scratch('prod-intruder-');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=runbooks-worker', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`], { stdio: 'ignore' });
  const foreign = { ...temporal.env, TEMPORAL_TLS_CLIENT_CERT_PATH: `${dir}/cert.pem`, TEMPORAL_TLS_CLIENT_KEY_PATH: `${dir}/key.pem` };
  const plain = { TEMPORAL_ADDRESS: temporal.env.TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE: 'runbooks' };
  const queue = uniqueQueue('prod-refused');
  const refusedWorker = startProcess('workers/worker.ts', [], { ...noCert, RUNBOOKS_TASK_QUEUE: queue });
  workers.push(refusedWorker);
  const [cli, cliForeign, cliPlain, workerCode] = await Promise.all([
    runCli(['status', 'anything'], noCert), runCli(['status', 'anything'], foreign), runCli(['status', 'anything'], plain), refusedWorker.exited,
  ]);
  expect(cli.stderr).toContain(`Cannot connect to Temporal at ${temporal.env.TEMPORAL_ADDRESS} (namespace runbooks, TLS without a client certificate): `
    + 'the server requires a client certificate (mutual TLS) and none was given. Set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH');
  expect(cli.code).toBe(4);
  expect(cliForeign.stderr).toMatch(/the server refused the client certificate \(\w+\): TEMPORAL_TLS_CLIENT_CERT_PATH must name a certificate signed by a CA the server trusts/);
  expect(cliForeign.code).toBe(4);
  expect(cliPlain.stderr).toContain('no TLS): the server closed a connection without TLS: it expects TLS');
  expect(cliPlain.code).toBe(4);
  expect(refusedWorker.output()).toMatch(/Worker failed: Cannot connect to Temporal at .* the server requires a client certificate \(mutual TLS\)/);
  expect(workerCode).toBe(4);
  // Nothing reached the queue.
  const pollers = await client.workflowService.describeTaskQueue({ namespace: 'runbooks', taskQueue: { name: queue }, taskQueueType: 1 });
  expect(pollers.pollers ?? []).toEqual([]);
}, 120_000);

test('the server SIGKILLed mid-activity and again at a gate: restarted, the run completes and no completed activity runs again', async () => {
  const queue = uniqueQueue('prod-kill');
  const dir = scratch('prod-kill-');
  const activityJournal = path.join(dir, 'activities.log');
  await worker(queue, { RUNBOOKS_ACTIVITY_JOURNAL: activityJournal });
  const { handle, journal } = await startGated(client, queue, { journal: path.join(dir, 'journal.log'), slowTakeDownMs: 3000 });

  await activityRunning(handle, '2', 'the take-down activity to run');
  const doneBeforeFirstKill = await completedActivities(handle);
  expect(doneBeforeFirstKill).toHaveLength(1); // the preflight check
  expect(actions(journal)).toEqual([]); // the take-down is still at work
  await temporal.killServer();
  await temporal.start();
  await waitForGate(handle, 'cutover');

  const doneBeforeSecondKill = await completedActivities(handle);
  await temporal.killServer();
  await temporal.start();
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  expect(await handle.result()).toEqual({ outcome: 'done' });

  const runs = executions(activityJournal);
  for (const id of new Set([...doneBeforeFirstKill, ...doneBeforeSecondKill])) expect({ id, times: runs.get(id)?.length }).toEqual({ id, times: 1 });
  // Each activity completed once in the run's history; the target saw each change after the gate once.
  const completed = await completedActivities(handle);
  expect(new Set(completed).size).toBe(completed.length);
  expect(actions(journal).filter((a) => a !== 'take down')).toEqual(['switch over', 'bring up']);
}, 240_000);

test("Temporal's PostgreSQL shut down (fast) mid-run: the activity finishes meanwhile, the run completes once it is back", async () => {
  const queue = uniqueQueue('prod-pg');
  await worker(queue);
  const { handle, journal } = await startGated(client, queue, { journal: path.join(scratch('prod-pg-'), 'journal.log'), slowTakeDownMs: 2000 });
  await activityRunning(handle, '2', 'the take-down activity to run');
  expect(actions(journal)).toEqual([]);
  await temporal.stopPostgres();
  // The worker finishes the step's work while the server cannot write anything.
  await eventually(async () => actions(journal).includes('take down'), 'the take-down to finish its work');
  await temporal.startPostgres();
  await waitForGate(handle, 'cutover');
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  expect(await handle.result()).toEqual({ outcome: 'done' });
  expect(actions(journal).filter((a) => a !== 'take down')).toEqual(['switch over', 'bring up']);
}, 180_000);

test('two workers on the queue, one SIGKILLed mid-activity: the other takes the activity over at its heartbeat timeout and completes the run', async () => {
  const queue = uniqueQueue('prod-two');
  const dir = scratch('prod-two-');
  const activityJournal = path.join(dir, 'activities.log');
  const [a, b] = await Promise.all([worker(queue, { RUNBOOKS_ACTIVITY_JOURNAL: activityJournal }), worker(queue, { RUNBOOKS_ACTIVITY_JOURNAL: activityJournal })]);
  const journal = path.join(dir, 'journal.log');
  const handle = await client.workflow.start('journaledWorkflow', { taskQueue: queue, workflowId: `two-${queue}`, args: [{ journal, slowMs: 4000 }] });
  const running = await activityRunning(handle, '2', 'the slow activity to run');
  const victim = [a, b].find((w) => running.lastWorkerIdentity === identityOf(w));
  if (!victim) throw new Error(`no worker of ours runs the activity (identity ${running.lastWorkerIdentity})`);
  const survivor = victim === a ? b : a;
  await victim.kill('SIGKILL');

  expect(await handle.result()).toBe('done');
  const events = (await handle.fetchHistory()).events ?? [];
  const slow = events.find((e) => e.activityTaskStartedEventAttributes?.attempt === 2)!.activityTaskStartedEventAttributes!;
  // The second attempt began because the heartbeats stopped, not after the 2-minute start-to-close timeout.
  expect(decodeTimeoutType(slow.lastFailure?.timeoutFailureInfo?.timeoutType)).toBe('HEARTBEAT');
  expect(slow.identity).toBe(identityOf(survivor));
  expect(actions(journal)).toEqual(['first', 'second', 'third']);
}, 180_000);

test("a run waiting at a gate past its worker's sticky cache, the worker restarted: replay gives the same checklist", async () => {
  const queue = uniqueQueue('prod-sticky');
  const first = await worker(queue);
  const { handle } = await startGated(client, queue, { journal: path.join(scratch('prod-sticky-'), 'journal.log') });
  await waitForGate(handle, 'cutover');
  const before = await progressOf(handle);

  await first.kill('SIGKILL');
  // An event for the run while its worker is gone: its workflow task goes to the dead worker's sticky
  // queue, and only when that expires (10 s, the worker's stickyQueueScheduleToStartTimeout) to the queue.
  await handle.signal(approveSignal, { gate: 'no-such-gate', by: 'bob' });
  const second = await worker(queue);
  const events = await eventually(async () => {
    const e = (await handle.fetchHistory()).events ?? [];
    const taken = e.findIndex((x) => x.workflowTaskStartedEventAttributes?.identity === identityOf(second));
    return taken >= 0 && e.slice(taken).some((x) => x.workflowTaskCompletedEventAttributes) ? e : undefined;
  }, 'the new worker to take the run over', 60_000);
  const timedOut = events.find((e) => e.workflowTaskTimedOutEventAttributes)?.workflowTaskTimedOutEventAttributes;
  expect(decodeTimeoutType(timedOut?.timeoutType)).toBe('SCHEDULE_TO_START');

  const after = await progressOf(handle);
  expect(checklist(after)).toEqual(checklist(before));
  expect(after.decisions.map((d) => [d.gate, d.outcome])).toEqual([['no-such-gate', 'ignored']]);
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  expect(await handle.result()).toEqual({ outcome: 'done' });
}, 180_000);
