/**
 * The platform against a real Temporal dev server: the worker, the real `temporal` CLI as a
 * client, the runbook CLI's input validation, and a worker killed mid-activity.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { readJournal } from './support/fake-target';
import { eventually, runCli, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';

const queue = uniqueQueue('platform');
const dir = mkdtempSync(path.join(os.tmpdir(), 'platform-'));
let client: Client;
let worker: Proc | undefined;

beforeAll(async () => {
  client = await testClient();
});
afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client.connection.close();
});

test('the worker starts, polls the runbooks queue, and runs a workflow to completion', async () => {
  worker = await startWorker(queue);
  expect(worker.output()).toContain(`"taskQueue":"${queue}"`);
  const pollers = await eventually(async () => {
    const r = await client.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: queue }, taskQueueType: 1 });
    return r.pollers?.length ? r.pollers : undefined;
  }, 'a poller on the task queue');
  expect(pollers.length).toBeGreaterThan(0);
  const result = await client.workflow.execute('echoWorkflow', { taskQueue: queue, workflowId: `echo-${queue}`, args: [{ message: 'hello' }] });
  expect(result).toBe('echo: hello');
});

test('a workflow started with the plain temporal CLI runs on our worker', async () => {
  const inputFile = path.join(dir, 'echo.json');
  writeFileSync(inputFile, JSON.stringify({ message: 'from the temporal CLI' }));
  const id = `cli-echo-${queue}`;
  const started = spawnSync(process.env.TEMPORAL_CLI_PATH!, [
    'workflow', 'start', '--address', process.env.TEMPORAL_ADDRESS!, '--namespace', 'default',
    '--type', 'echoWorkflow', '--task-queue', queue, '--workflow-id', id, '--input-file', inputFile,
  ], { encoding: 'utf8' });
  expect(started.stderr).toBe('');
  expect(started.status).toBe(0);
  await expect(client.workflow.getHandle(id).result()).resolves.toBe('echo: from the temporal CLI');
});

test('the runbook CLI refuses a bad input, names every bad field, exits 2 and starts nothing', async () => {
  const inputFile = path.join(dir, 'bad.json');
  writeFileSync(inputFile, JSON.stringify({ journal: '', gate: { quorum: 0, timeout: 'soon' }, surprise: true }));
  const id = `bad-${queue}`;
  const r = await runCli(['start', 'gatedRunbook', '--input', inputFile, '--id', id], { RUNBOOKS_TASK_QUEUE: queue });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/journal: /);
  expect(r.stderr).toMatch(/gate\.quorum: /);
  expect(r.stderr).toMatch(/gate\.timeout: .*duration/);
  expect(r.stderr).toMatch(/surprise/);
  expect(r.stderr).toContain('Nothing was started');
  await expect(client.workflow.getHandle(id).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
});

test('the runbook CLI: unknown runbook, unreadable input and unknown flags are usage errors (exit 2)', async () => {
  expect((await runCli(['start', 'noSuchRunbook', '--input', 'x.json'])).code).toBe(2);
  expect((await runCli(['start', 'gatedRunbook', '--input', path.join(dir, 'missing.json')])).code).toBe(2);
  expect((await runCli(['start', 'gatedRunbook', '--frobnicate'])).code).toBe(2);
  const listed = await runCli(['list']);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toMatch(/gatedRunbook .*required: journal/);
});

test('a worker killed with SIGKILL mid-activity: a new worker finishes the run and no completed activity runs again', async () => {
  await worker?.kill('SIGKILL');
  worker = await startWorker(queue);
  const journal = path.join(dir, 'journal.log');
  const handle = await client.workflow.start('journaledWorkflow', { taskQueue: queue, workflowId: `kill-${queue}`, args: [{ journal, slowMs: 4000 }] });
  // Wait until the first activity is done and the slow one is RUNNING on this worker (it has
  // heartbeated: scheduled is not enough, a kill then would only delay its first attempt).
  await eventually(async () => {
    const d = await handle.describe();
    return readJournal(journal).length === 1 && d.raw.pendingActivities?.some((a) => a.activityType?.name === 'change' && a.lastHeartbeatTime);
  }, 'the slow activity to be running');
  const killedPid = worker.child.pid;
  await worker.kill('SIGKILL');
  worker = await startWorker(queue);
  await expect(handle.result()).resolves.toBe('done');

  const lines = readJournal(journal);
  expect(lines.map((l) => l.action)).toEqual(['first', 'second', 'third']);
  expect(lines[0].pid).toBe(killedPid);
  expect(lines[1].pid).toBe(worker.child.pid);
  expect(lines[1].attempt).toBeGreaterThan(1); // the interrupted attempt was retried, the completed one was not
});
