/**
 * The approval gateway over real HTTP against a real Temporal server: a GET shows, only a POST
 * decides; forged, expired and replayed links send nothing; a run whose worker died still
 * receives the decision and completes under a new worker.
 */
import { readFileSync } from 'node:fs';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { signApproval } from '../activities/lib/approval-token';
import { startGateway, type Gateway } from '../workers/approvals';
import { readJournal } from './support/fake-target';
import { runCli, startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { progressOf, signalCount, startGated, waitForGate } from './support/runs';

const secret = 'test-secret-that-is-long-enough-0123456789';
const queue = uniqueQueue('gateway');
let client: Client;
let worker: Proc;
let gateway: Gateway;

beforeAll(async () => {
  client = await testClient();
  gateway = await startGateway({ client, secret, port: 0 });
  worker = await startWorker(queue, workerEnv());
});

// The worker signs links with the gateway's secret and points them at it.
const workerEnv = () => ({ APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url });
afterAll(async () => {
  await gateway.close();
  await worker.kill('SIGKILL');
  await client.connection.close();
});

const hour = () => Math.floor(Date.now() / 1000) + 3600;
const tokenFor = (workflowId: string, approver: string, gate = 'cutover', exp = hour()) => signApproval({ workflowId, gate, approver, exp }, secret);
const get = (token: string) => fetch(`${gateway.url}/approve?t=${encodeURIComponent(token)}`);
const post = (token: string, decision: 'approve' | 'reject', reason = '') =>
  fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: token, decision, reason }) });

async function linkFromCli(workflowId: string, approver: string): Promise<string> {
  const r = await runCli(['link', workflowId, '--gate', 'cutover', '--for', approver, '--ttl', '1h'], { APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url });
  expect(r.code).toBe(0);
  const url = new URL(r.stdout.trim());
  expect(url.origin).toBe(gateway.url);
  return url.searchParams.get('t')!;
}

async function expectNoSignal(handle: WorkflowHandle, before: number) {
  expect(await signalCount(handle)).toBe(before);
}

test('GET shows what is being approved and decides nothing; POST approves and the run resumes', async () => {
  const { handle, journal } = await startGated(client, queue, { requestedBy: 'alice' });
  await waitForGate(handle, 'cutover');
  const token = await linkFromCli(handle.workflowId, 'bob');

  const shown = await get(token);
  expect(shown.status).toBe(200);
  const html = await shown.text();
  expect(html).toContain('Switch the service over');
  expect(html).toContain('Test runbook with a gate');
  expect(html).toContain('You are deciding as <strong>bob</strong>');
  expect(html).toMatch(/<form method="post" action="\/approve">/);
  expect(html).toContain('value="approve"');
  expect(html).toContain('Requested by alice');
  await expectNoSignal(handle, 0);

  const decided = await post(token, 'approve', 'looks good');
  expect(decided.status).toBe(200);
  expect(await decided.text()).toContain('Approvals: 1 of 1; the gate is approved');
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  const p = await progressOf(handle);
  expect(p.decisions).toEqual([expect.objectContaining({ by: 'bob', via: 'link', outcome: 'accepted', reason: 'looks good' })]);
  expect(readJournal(journal).map((l) => l.action)).toContain('switch over');

  // The same link again, after the run ended: a clear page, nothing sent.
  const again = await post(token, 'approve');
  expect(again.status).toBe(410);
  expect(await again.text()).toContain('has ended');
  await expectNoSignal(handle, 1);
});

test('a runbook builds the link with an activity and sends it on; the approver clicks it and the run resumes', async () => {
  const { handle, journal } = await startGated(client, queue, { sendLinkTo: 'erin' });
  await waitForGate(handle, 'cutover');
  const [mail] = readFileSync(`${journal}.outbox`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  expect(mail.to).toBe('erin');
  const link = new URL(/(http\S+)/.exec(mail.text)![1]);
  expect(link.origin).toBe(gateway.url);
  const page = await fetch(link);
  expect(await page.text()).toContain('You are deciding as <strong>erin</strong>');
  expect((await post(link.searchParams.get('t')!, 'approve')).status).toBe(200);
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
});

test('a rejection through the link needs a reason, ends the run, and shows the reason', async () => {
  const { handle } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const token = tokenFor(handle.workflowId, 'carol');
  const noReason = await post(token, 'reject');
  expect(noReason.status).toBe(400);
  await expectNoSignal(handle, 0);
  const rejected = await post(token, 'reject', 'pharmacy is dispensing');
  expect(rejected.status).toBe(200);
  expect(await rejected.text()).toContain('Rejected by carol: pharmacy is dispensing');
  await expect(handle.result()).rejects.toThrow();
  expect((await progressOf(handle)).approvals[0]).toMatchObject({ state: 'rejected', rejectedBy: 'carol', reason: 'pharmacy is dispensing' });
});

test('forged, altered, wrongly signed and expired links get a 403 and send nothing', async () => {
  const { handle } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const good = tokenFor(handle.workflowId, 'bob');
  const [payload, mac] = good.split('.');
  const otherPayload = Buffer.from(JSON.stringify([handle.workflowId, 'cutover', 'mallory', hour(), 'x'])).toString('base64url');
  const flipped = mac.slice(0, -2) + (mac.endsWith('AA') ? 'BB' : 'AA');
  const cases = {
    forged: `${otherPayload}.${mac}`,
    flippedSignature: `${payload}.${flipped}`,
    otherSecret: signApproval({ workflowId: handle.workflowId, gate: 'cutover', approver: 'bob', exp: hour() }, 'another-secret-another-secret-another'),
    expired: tokenFor(handle.workflowId, 'bob', 'cutover', Math.floor(Date.now() / 1000) - 1),
    garbage: 'not-a-token',
    empty: '',
  };
  for (const [name, token] of Object.entries(cases)) {
    for (const res of [await get(token), await post(token, 'approve')]) {
      expect([name, res.status]).toEqual([name, 403]);
      expect(await res.text()).toContain('Nothing was sent');
    }
  }
  expect(await (await post(cases.expired, 'approve')).text()).toContain('expired');
  await expectNoSignal(handle, 0);
  expect((await progressOf(handle)).approvals[0].state).toBe('open');
  await handle.terminate('test done');
});

test('a link counts once: replayed while the gate is open, or after it is decided, it sends nothing', async () => {
  const { handle } = await startGated(client, queue, { gate: { quorum: 2 } });
  await waitForGate(handle, 'cutover');
  const bob = tokenFor(handle.workflowId, 'bob');
  expect((await post(bob, 'approve')).status).toBe(200);
  const replay = await post(bob, 'approve');
  expect(replay.status).toBe(409);
  expect(await replay.text()).toContain('already used');
  await expectNoSignal(handle, 1);

  expect((await post(tokenFor(handle.workflowId, 'carol'), 'approve')).status).toBe(200);
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  expect((await progressOf(handle)).approvals[0].approvedBy).toEqual(['bob', 'carol']);
});

test('a gate that is not open yet, or already decided, gets a clear page and no signal', async () => {
  const { handle } = await startGated(client, queue, { gate: { quorum: 1 } });
  await waitForGate(handle, 'cutover');
  const notOpen = await get(tokenFor(handle.workflowId, 'bob', 'some-later-gate'));
  expect(notOpen.status).toBe(409);
  expect(await notOpen.text()).toContain('is not open yet');
  const missing = await get(tokenFor('no-such-run', 'bob'));
  expect(missing.status).toBe(404);
  await expectNoSignal(handle, 0);
  await handle.signal('approve', { gate: 'cutover', by: 'dave' });
  await handle.result();
  const late = await get(tokenFor(handle.workflowId, 'bob'));
  expect([409, 410]).toContain(late.status);
});

test('the worker dies while the run waits at the gate; the approval is sent with no worker running; a new worker completes the run', async () => {
  const { handle, journal } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  await worker.kill('SIGKILL');

  const token = tokenFor(handle.workflowId, 'bob');
  const page = await get(token);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('no worker is running');
  const sent = await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: token, decision: 'approve', reason: 'night shift' }) });
  expect(sent.status).toBe(202);
  expect(await signalCount(handle)).toBe(1);

  worker = await startWorker(queue, workerEnv());
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  expect((await progressOf(handle)).decisions[0]).toMatchObject({ by: 'bob', outcome: 'accepted', via: 'link' });
  expect(readJournal(journal).map((l) => l.action)).toEqual(['take down', 'switch over', 'bring up']);
}, 120_000);

test('in production mode the gateway refuses to start without APPROVAL_SECRET', async () => {
  const gw = startProcess('workers/approvals.ts', [], { RUNBOOKS_ENV: 'production', APPROVAL_SECRET: '', APPROVAL_SECRET_FILE: '', APPROVAL_PORT: '0' });
  expect(await gw.exited).toBe(1);
  expect(gw.output()).toContain('APPROVAL_SECRET (32+ characters) is not set');
  const short = startProcess('workers/approvals.ts', [], { RUNBOOKS_ENV: 'production', APPROVAL_SECRET: 'short', APPROVAL_PORT: '0' });
  expect(await short.exited).toBe(1);
});
