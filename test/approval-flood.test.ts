/**
 * No flood grows a run (issue 22, finding 4): anyone who may signal picks the gate name, so a cap
 * per gate name caps nothing. 10,000 decisions for made-up gates against a real Temporal server:
 * the run's progress stays small, the progress query (what the gateway, the inbox and
 * `runbook status` read) keeps answering, and a real approval still counts.
 */
import type { Client } from '@temporalio/client';
import { approveSignal } from '../contracts/messages';
import { startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { progressOf, startGated, waitForGate, waitForProgress } from './support/runs';

const queue = uniqueQueue('flood');
let client: Client;
let worker: Proc;

beforeAll(async () => {
  client = await testClient();
  worker = await startWorker(queue);
});
afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
});

/**
 * 10,000 signals in all: Temporal refuses a run's signals past 10,000 (the server's
 * limit.maxSignalsPerExecution default), so the real approval is the 10,000th.
 */
const flood = 9_999;
const batch = 250;

test('10,000 signals, 9,999 of them decisions for gates that do not exist: counted, not recorded; progress stays small and the real approval counts', async () => {
  const { handle } = await startGated(client, queue, { gate: { approvers: ['bob'] } });
  await waitForGate(handle, 'cutover');
  const reason = 'x'.repeat(100);
  let p = await progressOf(handle);
  // In batches, each seen by the run before the next: the run's progress is read all along, as the gateway and the inbox would.
  for (let sent = 0; sent < flood; sent += batch) {
    const size = Math.min(batch, flood - sent);
    await Promise.all(Array.from({ length: size }, (_, i) =>
      handle.signal(approveSignal, { gate: `made-up-gate-${sent + i}-${'y'.repeat(60)}`, by: `stranger-${sent + i}`, reason })));
    p = await waitForProgress(handle, `the first ${sent + size} decisions seen`, (x) => x.decisions.length + x.droppedDecisions >= sent + size, 120_000);
  }
  expect(p.decisions.length).toBeLessThanOrEqual(20);
  expect(p.droppedDecisions).toBe(flood - p.decisions.length);
  // Recorded ones keep only their outline: no reason, the name clipped.
  expect(p.decisions.every((d) => d.reason === undefined && d.gate.length <= 40)).toBe(true);
  expect(JSON.stringify(p).length).toBeLessThan(64 * 1024);
  expect(p.approvals[0]).toMatchObject({ gate: 'cutover', state: 'open' });

  await handle.signal(approveSignal, { gate: 'cutover', by: 'bob' });
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  const done = await progressOf(handle);
  expect(done.decisions.filter((d) => d.outcome === 'accepted').map((d) => d.by)).toEqual(['bob']);
}, 900_000);
