/**
 * The runbook kit against a real Temporal server: steps and progress, approval gates with
 * quorum, four-eyes and allowed approvers, timeouts, compensation, cancellation and dry-run.
 */
import { writeFileSync } from 'node:fs';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { approveSignal, rejectSignal } from '../contracts/messages';
import { RunbookStatus, RunbookStep } from '../contracts/search-attributes';
import { readJournal } from './support/fake-target';
import { eventually, runCli, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { currentDetails, progressOf, startGated, tempDir, waitForGate, waitForProgress } from './support/runs';

const queue = uniqueQueue('kit');
let client: Client;
let worker: Proc;

beforeAll(async () => {
  client = await testClient();
  worker = await startWorker(queue);
});
afterAll(async () => {
  await worker.kill('SIGKILL');
  await client.connection.close();
});

const actions = (journal: string) => readJournal(journal).map((l) => l.action);

test('progress, search attributes and the UI current details follow each step as the run goes', async () => {
  const { handle, journal } = await startGated(client, queue, { requestedBy: 'alice', slowTakeDownMs: 3000 });
  const during = await waitForProgress(handle, 'takeDown running', (p) => p.currentStep === 'takeDown');
  expect(during.status).toBe('running');
  expect(during.steps.map((s) => [s.name, s.state])).toEqual([['preflight', 'done'], ['takeDown', 'running'], ['cutover', 'pending'], ['finish', 'pending']]);
  expect(during.steps[0].startedAt).toBeDefined();
  expect(during.compensations).toEqual([expect.objectContaining({ title: 'Bring the service back up', step: 'takeDown', state: 'registered' })]);
  // The UI's Signal dialog offers approve and reject, with how to use them.
  const metadata = await handle.query<{ definition: { signalDefinitions: Array<{ name: string; description: string }> } }>('__temporal_workflow_metadata');
  expect(metadata.definition.signalDefinitions.map((d) => d.name).sort()).toEqual(['approve', 'reject']);
  expect(metadata.definition.signalDefinitions.every((d) => d.description.includes('"gate"'))).toBe(true);
  const details = await currentDetails(handle);
  expect(details).toContain('- [x] Check the target');
  expect(details).toContain('**Take the service down** (running)');
  expect(details).toContain('- [ ] Switch over');

  const atGate = await waitForGate(handle, 'cutover');
  expect(atGate.status).toBe('waiting_for_approval');
  expect(atGate.approvals[0]).toMatchObject({ gate: 'cutover', step: 'cutover', quorum: 1, state: 'open', approvedBy: [] });
  await eventually(async () => {
    const sa = (await handle.describe()).typedSearchAttributes;
    return sa.get(RunbookStatus) === 'waiting_for_approval' && sa.get(RunbookStep) === 'cutover';
  }, 'search attributes to show the gate');
  // Operators find every run waiting for approval with a plain visibility query.
  await eventually(async () => {
    for await (const wf of client.workflow.list({ query: `RunbookStatus = 'waiting_for_approval' AND WorkflowId = '${handle.workflowId}'` })) return wf.workflowId === handle.workflowId;
    return false;
  }, 'the run to be listed as waiting for approval');
  expect(await currentDetails(handle)).toMatch(/Waiting for approval `cutover` \(0\/1, until [^)]+\): Switch the service over/);

  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob', reason: 'window open' });
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  const done = await progressOf(handle);
  expect(done.status).toBe('completed');
  expect(done.steps.every((s) => s.state === 'done')).toBe(true);
  expect(done.steps[1].actions).toEqual(['take down']);
  expect(done.decisions).toEqual([expect.objectContaining({ gate: 'cutover', by: 'bob', decision: 'approve', outcome: 'accepted', reason: 'window open' })]);
  expect(actions(journal)).toEqual(['take down', 'switch over', 'bring up']);
  expect((await handle.describe()).typedSearchAttributes.get(RunbookStatus)).toBe('completed');
});

test('a rejection ends the gate at once: the reason is in progress and in the failure, and the take-down is undone', async () => {
  const { handle, journal } = await startGated(client, queue, { gate: { quorum: 2 } });
  await waitForGate(handle, 'cutover');
  await handle.signal(approveSignal, { gate: 'cutover', by: 'carol' });
  await handle.signal(rejectSignal, { gate: 'cutover', by: 'dave', reason: 'the lab is mid-run' });
  const err = await handle.result().catch((e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(String(err.cause?.message)).toContain('rejected by dave: the lab is mid-run');
  const p = await progressOf(handle);
  expect(p.status).toBe('failed');
  expect(p.approvals[0]).toMatchObject({ state: 'rejected', rejectedBy: 'dave', reason: 'the lab is mid-run', approvedBy: ['carol'] });
  expect(p.compensations[0]).toMatchObject({ state: 'done' });
  expect(p.steps.find((s) => s.name === 'takeDown')?.state).toBe('compensated');
  expect(actions(journal)).toEqual(['take down', 'bring up (compensation)']);
});

test('quorum needs distinct approvers; the same approver twice counts once; four-eyes refuses the starter; strangers are ignored and recorded', async () => {
  const { handle } = await startGated(client, queue, {
    requestedBy: 'alice',
    gate: { quorum: 2, fourEyes: true, approvers: ['alice', 'bob', 'carol'] },
  });
  await waitForGate(handle, 'cutover');
  await handle.signal(approveSignal, { gate: 'cutover', by: 'alice' });
  await handle.signal(approveSignal, { gate: 'cutover', by: 'mallory' });
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  await handle.signal(approveSignal, { gate: 'cutover', by: 'BOB ' });
  const halfway = await waitForProgress(handle, 'four decisions recorded', (p) => p.decisions.length === 4);
  expect(halfway.approvals[0]).toMatchObject({ state: 'open', approvedBy: ['bob'] });
  expect(halfway.decisions.map((d) => [d.by, d.outcome, d.note])).toEqual([
    ['alice', 'ignored', 'four-eyes: the person who started the run may not approve it'],
    ['mallory', 'ignored', 'mallory is not on the approvers list'],
    ['bob', 'accepted', undefined],
    ['BOB', 'ignored', 'BOB already approved; approvals must come from distinct people'],
  ]);
  await handle.signal(approveSignal, { gate: 'cutover', by: 'carol' });
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  expect((await progressOf(handle)).approvals[0]).toMatchObject({ state: 'approved', approvedBy: ['bob', 'carol'] });
});

test('a decision sent before its gate opens is ignored with the reason; the gate then waits for a decision of its own', async () => {
  const { handle } = await startGated(client, queue, { slowTakeDownMs: 60_000 });
  await waitForProgress(handle, 'takeDown running', (p) => p.currentStep === 'takeDown');
  await handle.signal(approveSignal, { gate: 'cutover', by: 'erin', reason: 'pre-approved in CAB' });
  const early = await waitForProgress(handle, 'the early decision recorded', (p) => p.decisions.length === 1);
  expect(early.decisions[0]).toMatchObject({ by: 'erin', via: 'ui', outcome: 'ignored', note: expect.stringContaining('gate "cutover" is not open') });
  // The CLI says so too, and exits non-zero.
  const cli = await runCli(['approve', handle.workflowId, '--gate', 'cutover', '--by', 'frank'], { RUNBOOKS_TASK_QUEUE: queue });
  expect(cli.code).toBe(1);
  expect(cli.stdout).toContain('approve of gate "cutover" by frank: ignored (gate "cutover" is not open');
  const recorded = await waitForProgress(handle, 'two decisions recorded', (p) => p.decisions.length === 2);
  expect(recorded.decisions[1]).toMatchObject({ via: 'cli', origin: expect.stringMatching(/^.+@.+$/) });
  await handle.terminate('test done');
});

test('a flood of ignored decisions is capped: progress stays small and a real approval still counts', async () => {
  const { handle } = await startGated(client, queue, { gate: { approvers: ['bob'] } });
  await waitForGate(handle, 'cutover');
  for (let i = 0; i < 30; i++) await handle.signal(approveSignal, { gate: 'cutover', by: `stranger-${i}` });
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  const p = await progressOf(handle);
  expect(p.decisions.filter((d) => d.outcome === 'ignored')).toHaveLength(20);
  expect(p.droppedDecisions).toBe(10);
  expect(p.decisions.filter((d) => d.outcome === 'accepted').map((d) => d.by)).toEqual(['bob']);
});

test('on timeout the gate takes the declared path: roll back (safe path) or fail', async () => {
  const safe = await startGated(client, queue, { gate: { timeout: '2s', onTimeout: 'return' } });
  await expect(safe.handle.result()).resolves.toEqual({ outcome: 'rolledBack' });
  const p = await progressOf(safe.handle);
  expect(p.status).toBe('rolled_back');
  expect(p.approvals[0].state).toBe('timedOut');
  expect(p.compensations[0].state).toBe('done');
  expect(actions(safe.journal)).toEqual(['take down', 'bring up (compensation)']);

  const strict = await startGated(client, queue, { gate: { timeout: '2s', onTimeout: 'fail' } });
  const err = await strict.handle.result().catch((e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(String(err.cause?.message)).toMatch(/Gate "cutover" timed out after 2s/);
  expect((await progressOf(strict.handle)).status).toBe('failed');
  expect(actions(strict.journal)).toEqual(['take down', 'bring up (compensation)']);
});

test('a step that fails after a take-down step: the compensation runs and is recorded', async () => {
  const { handle, journal } = await startGated(client, queue, { failAfterGate: true });
  await waitForGate(handle, 'cutover');
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  const err = await handle.result().catch((e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const p = await progressOf(handle);
  expect(p.steps.find((s) => s.name === 'finish')).toMatchObject({ state: 'failed', error: expect.stringContaining('bringing the service back failed') });
  expect(p.compensations).toEqual([expect.objectContaining({ title: 'Bring the service back up', state: 'done', endedAt: expect.any(String) })]);
  expect(actions(journal)).toEqual(['take down', 'switch over', 'bring up (compensation)']);
});

test('cancelling the run from the client runs the compensation, which the cancellation cannot interrupt', async () => {
  const { handle, journal } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  await handle.cancel();
  await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
  const p = await progressOf(handle);
  expect(p.status).toBe('cancelled');
  expect(p.compensations[0].state).toBe('done');
  expect(actions(journal)).toEqual(['take down', 'bring up (compensation)']);
});

test('dry-run checks for real, walks every step, returns the plan, and changes nothing', async () => {
  const { handle, journal } = await startGated(client, queue, { dryRun: true });
  const plan = await handle.result();
  expect(plan).toEqual({
    runbook: 'gatedRunbook', dryRun: true,
    steps: [
      { name: 'preflight', title: 'Check the target', state: 'done', actions: [] },
      { name: 'takeDown', title: 'Take the service down', state: 'done', actions: ['would take down'] },
      { name: 'cutover', title: 'Switch over', state: 'done', actions: ['would wait for approval "cutover": Switch the service over (1 approval(s), up to 1h)', 'would switch over'] },
      { name: 'finish', title: 'Bring the service back', state: 'done', actions: ['would bring up'] },
    ],
    approvals: [{ gate: 'cutover', summary: 'Switch the service over', quorum: 1 }],
  });
  expect(readJournal(journal)).toEqual([]);
  expect((await progressOf(handle)).status).toBe('planned');
});

test('a bad input fails the run at once, non-retryable, naming every bad field', async () => {
  const handle = await client.workflow.start('gatedRunbook', { taskQueue: queue, workflowId: `bad-${queue}`, args: [{ journal: 3, gate: { quorum: -1 } }] });
  const err = await handle.result().catch((e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(err.cause).toMatchObject({ type: 'InvalidInput', nonRetryable: true });
  expect(err.cause.message).toMatch(/journal: .*string/);
  expect(err.cause.message).toMatch(/gate\.quorum: /);
  const history = await handle.fetchHistory();
  expect(history.events?.filter((e) => e.activityTaskScheduledEventAttributes)).toEqual([]);
});

test('the CLI starts, waits, approves and reports with exit codes a CI job can branch on', async () => {
  const dir = tempDir('cli-');
  const input = `${dir}/input.json`;
  writeFileSync(input, JSON.stringify({ journal: `${dir}/journal.log`, gate: { timeout: '1h' } }));
  const env = { RUNBOOKS_TASK_QUEUE: queue };
  const id = `cli-${queue}`;
  const waiting = runCli(['start', 'gatedRunbook', '--input', input, '--id', id, '--by', 'alice', '--wait', '--timeout', '2m'], env);
  const handle = client.workflow.getHandle(id);
  await eventually(async () => (await progressOf(handle)).status === 'waiting_for_approval', 'the CLI run to reach its gate');
  const status = await runCli(['status', id], env);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(/gate cutover: open/);
  expect(status.stdout).toMatch(/requested by alice/);
  const approved = await runCli(['approve', id, '--gate', 'cutover', '--by', 'bob', '--reason', 'ok'], env);
  expect(approved.stdout).toContain('approve of gate "cutover" by bob: accepted');
  expect(approved.code).toBe(0);
  const result = await waiting;
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('"outcome": "done"');

  const timedOut = await runCli(['start', 'gatedRunbook', '--input', input, '--id', `${id}-t`, '--wait', '--timeout', '2s'], env);
  expect(timedOut.code).toBe(3);
  expect(timedOut.stderr).toContain(`Still running after 2000 ms: ${id}-t`);
  await client.workflow.getHandle(`${id}-t`).terminate('test cleanup');

  const failing = runCli(['start', 'gatedRunbook', '--input', input, '--id', `${id}-f`, '--wait', '--timeout', '1m'], env);
  await eventually(async () => (await progressOf(client.workflow.getHandle(`${id}-f`))).status === 'waiting_for_approval', 'the second CLI run to reach its gate');
  const rejected = await runCli(['reject', `${id}-f`, '--gate', 'cutover', '--by', 'bob', '--reason', 'not today'], env);
  expect(rejected.code).toBe(0);
  const failed = await failing;
  expect(failed.code).toBe(1);
  expect(failed.stderr).toContain('rejected by bob: not today');
}, 180_000);
