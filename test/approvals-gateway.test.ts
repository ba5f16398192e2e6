/**
 * The approval gateway over real HTTP against a real Temporal server: a GET shows, only a POST
 * decides; forged, expired, replayed and other runs' links send nothing; a run whose worker died
 * still receives the decision and completes under a new worker.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { signApproval, type ApprovalClaim } from '../activities/lib/approval-token';
import { startGateway, type Gateway } from '../workers/approvals';
import { readJournal } from './support/fake-target';
import { freePort } from './support/global-setup';
import { runCli, startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { progressOf, decisionCount, startGated, waitForGate, waitForProgress } from './support/runs';

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

/** A link as the run's own request would carry it: bound to this run and this opening of the gate. */
async function tokenFor(handle: WorkflowHandle, approver: string, over: Partial<ApprovalClaim> = {}): Promise<string> {
  const gate = (await progressOf(handle)).approvals.find((g) => g.gate === (over.gate ?? 'cutover'));
  const { runId } = await handle.describe();
  return signApproval({ workflowId: handle.workflowId, runId, gate: 'cutover', nonce: gate?.nonce ?? 'no-such-opening', approver, exp: hour(), ...over }, secret);
}
const get = (token: string) => fetch(`${gateway.url}/approve?t=${encodeURIComponent(token)}`);
const post = (token: string, decision: 'approve' | 'reject', reason = '') =>
  fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: token, decision, reason }) });

async function linkFromCli(workflowId: string, approver: string): Promise<string> {
  const r = await runCli(['link', workflowId, '--gate', 'cutover', '--for', approver, '--ttl', '1h'], { APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url, RUNBOOKS_TASK_QUEUE: queue });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const url = new URL(r.stdout.trim());
  expect(url.origin).toBe(gateway.url);
  return url.searchParams.get('t')!;
}

async function expectNoSignal(handle: WorkflowHandle, before: number) {
  expect(await decisionCount(handle)).toBe(before);
}

test('GET shows what is being approved and decides nothing; POST approves and the run resumes; the pages carry strict headers', async () => {
  const { handle, journal } = await startGated(client, queue, { requestedBy: 'alice' });
  await waitForGate(handle, 'cutover');
  const token = await linkFromCli(handle.workflowId, 'bob');

  const shown = await get(token);
  expect(shown.status).toBe(200);
  expect(shown.headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  expect(shown.headers.get('x-content-type-options')).toBe('nosniff');
  expect(shown.headers.get('referrer-policy')).toBe('no-referrer');
  expect(shown.headers.get('cache-control')).toBe('no-store');
  const html = await shown.text();
  expect(html).toContain('Switch the service over');
  expect(html).toContain('Test runbook with a gate');
  expect(html).toContain('<dt>You decide as</dt><dd><strong>bob</strong>');
  expect(html).toMatch(/<form method="post" action="\/approve">/);
  expect(html).toContain('value="approve"');
  expect(html).toContain('<dt>Asked for by</dt><dd>alice</dd>');
  expect(html).toMatch(/<dt>This link<\/dt><dd>works once, until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (59 min|1 h 0 min)\)/);
  await expectNoSignal(handle, 0);

  const decided = await post(token, 'approve', 'looks good');
  expect(decided.status).toBe(200);
  expect(decided.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  expect(await decided.text()).toContain('Approvals: 1 of 1; the gate is approved');
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  const p = await progressOf(handle);
  expect(p.decisions).toEqual([expect.objectContaining({ by: 'bob', via: 'link', outcome: 'accepted', reason: 'looks good', linkId: expect.any(String) })]);
  expect(readJournal(journal).map((l) => l.action)).toContain('switch over');
  // The run took the decision as a decideGate update and answered the gateway in that call: no signal, no polling.
  const events = (await handle.fetchHistory()).events ?? [];
  expect(events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'decideGate')).toHaveLength(1);
  expect(events.filter((e) => e.workflowExecutionSignaledEventAttributes)).toHaveLength(0);
  // Every activity has its one line in the UI's event view.
  const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes);
  expect(scheduled.length).toBeGreaterThan(0);
  for (const e of scheduled) {
    const summary = e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary as Payload) : '';
    expect([e.activityTaskScheduledEventAttributes!.activityType?.name, summary]).toEqual([e.activityTaskScheduledEventAttributes!.activityType?.name, expect.stringMatching(/^[^\n]{3,200}$/)]);
  }

  // The same link again, after the run ended: how it was used; nothing sent.
  const again = await post(token, 'approve');
  expect(again.status).toBe(409);
  expect(await again.text()).toContain('bob approved &quot;cutover&quot; with it');
  await expectNoSignal(handle, 1);
});

test('the CLI makes links only for an open gate, and never for longer than 7 days', async () => {
  const { handle } = await startGated(client, queue, { slowTakeDownMs: 60_000 });
  await waitForProgress(handle, 'takeDown running', (p) => p.currentStep === 'takeDown');
  const early = await runCli(['link', handle.workflowId, '--gate', 'cutover', '--for', 'bob'], { APPROVAL_SECRET: secret });
  expect(early.code).toBe(1);
  expect(early.stderr).toContain('Gate "cutover" of');
  expect(early.stderr).toContain('is not open');
  const long = await runCli(['link', handle.workflowId, '--gate', 'cutover', '--for', 'bob', '--ttl', '8d'], { APPROVAL_SECRET: secret });
  expect(long.code).toBe(2);
  expect(long.stderr).toContain('--ttl is at most 7d');
  await handle.terminate('test done');
});

test('the CLI checks its arguments before it contacts Temporal: a bad --ttl is exit 2 with no server running', async () => {
  const nowhere = { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, APPROVAL_SECRET: secret };
  const long = await runCli(['link', 'any-run', '--gate', 'cutover', '--for', 'bob', '--ttl', '30d'], nowhere);
  expect([long.code, long.stderr.trim()]).toEqual([2, '--ttl is at most 7d: approval links live 7 days at most']);
  const noGate = await runCli(['approve', 'any-run', '--by', 'bob'], nowhere);
  expect([noGate.code, noGate.stderr.trim()]).toEqual([2, 'approve needs --gate']);
  // Good arguments: only then is Temporal asked, and its absence is exit 4.
  const unreachable = await runCli(['link', 'any-run', '--gate', 'cutover', '--for', 'bob', '--ttl', '1h'], nowhere);
  expect(unreachable.code).toBe(4);
});

test('`runbook -- link` signs with the secret start.sh made under RUNBOOKS_STATE_DIR and points at APPROVAL_PORT: the gateway accepts it', async () => {
  const { handle } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'runbooks-state-'));
  writeFileSync(path.join(stateDir, 'approval-secret'), secret, { mode: 0o600 });
  const { port } = new URL(gateway.url);
  const r = await runCli(['link', handle.workflowId, '--gate', 'cutover', '--for', 'bob', '--ttl', '1h'], {
    APPROVAL_SECRET: '', APPROVAL_SECRET_FILE: '', APPROVAL_BASE_URL: '', RUNBOOKS_STATE_DIR: stateDir, APPROVAL_PORT: port, RUNBOOKS_TASK_QUEUE: queue,
  });
  expect([r.code, r.stderr]).toEqual([0, '']);
  const url = new URL(r.stdout.trim());
  expect(url.origin).toBe(gateway.url);
  const shown = await fetch(url);
  expect([shown.status, await shown.text()]).toEqual([200, expect.stringContaining('Approve &quot;cutover&quot;?')]);
  await handle.terminate('test done');
  rmSync(stateDir, { recursive: true, force: true });
});

test('a rejection through the link needs a reason, ends the run, and shows the reason', async () => {
  const { handle } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const token = await tokenFor(handle, 'carol');
  const noReason = await post(token, 'reject');
  expect(noReason.status).toBe(400);
  await expectNoSignal(handle, 0);
  const rejected = await post(token, 'reject', 'pharmacy is dispensing');
  expect(rejected.status).toBe(200);
  expect(await rejected.text()).toContain('Rejected by carol: pharmacy is dispensing');
  await expect(handle.result()).rejects.toThrow();
  expect((await progressOf(handle)).approvals[0]).toMatchObject({ state: 'rejected', rejectedBy: 'carol', reason: 'pharmacy is dispensing' });
});

test('forged, altered and wrongly signed links get a 403, expired ones a 410, and send nothing; an oversized form gets a 413', async () => {
  const { handle } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const good = await tokenFor(handle, 'bob');
  const [payload, mac] = good.split('.');
  const claim = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claim[5] = 'mallory';
  const otherPayload = Buffer.from(JSON.stringify(claim)).toString('base64url');
  const flipped = mac.slice(0, -2) + (mac.endsWith('AA') ? 'BB' : 'AA');
  const cases = {
    forged: `${otherPayload}.${mac}`,
    flippedSignature: `${payload}.${flipped}`,
    otherSecret: signApproval({ workflowId: handle.workflowId, runId: 'x', gate: 'cutover', nonce: 'n', approver: 'bob', exp: hour() }, 'another-secret-another-secret-another'),
    expired: await tokenFor(handle, 'bob', { exp: Math.floor(Date.now() / 1000) - 1 }),
    garbage: 'not-a-token',
    empty: '',
  };
  for (const [name, token] of Object.entries(cases)) {
    for (const res of [await get(token), await post(token, 'approve')]) {
      expect([name, res.status]).toEqual([name, name === 'expired' ? 410 : 403]);
      expect(await res.text()).toContain('Nothing was sent');
    }
  }
  // A genuine link that only expired says what it was for and what to do.
  const expired = await (await post(cases.expired, 'approve')).text();
  expect(expired).toContain('This link has expired');
  expect(expired).toContain(`It was for &quot;cutover&quot; of run ${handle.workflowId}, for bob`);

  const huge = await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: good, decision: 'approve', reason: 'x'.repeat(100_000) }) });
  expect(huge.status).toBe(413);
  await expectNoSignal(handle, 0);
  expect((await progressOf(handle)).approvals[0].state).toBe('open');
  await handle.terminate('test done');
});

test('a link is used once whatever its outcome: a replay, a double click, or a link whose decision was ignored sends nothing more', async () => {
  const { handle } = await startGated(client, queue, { gate: { quorum: 2, approvers: ['bob', 'carol', 'dave'] } });
  await waitForGate(handle, 'cutover');
  const bob = await tokenFor(handle, 'bob');
  expect((await post(bob, 'approve')).status).toBe(200);
  const replay = await post(bob, 'approve');
  expect(replay.status).toBe(409);
  expect(await replay.text()).toContain('This link was used');
  await expectNoSignal(handle, 1);

  // Not on the approvers list: the run refuses it before anything is written (the page says why), however often it is sent.
  const mallory = await tokenFor(handle, 'mallory');
  const ignored = await post(mallory, 'approve');
  expect(ignored.status).toBe(409);
  expect(await ignored.text()).toContain('mallory is not on the approvers list');
  for (let i = 0; i < 3; i++) expect((await post(mallory, 'approve')).status).toBe(409);
  await expectNoSignal(handle, 1);
  expect((await progressOf(handle)).decisions.map((d) => d.by)).toEqual(['bob']);

  // Two clicks at once: one decision.
  const carol = await tokenFor(handle, 'carol');
  const both = await Promise.all([post(carol, 'approve'), post(carol, 'approve')]);
  expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  expect(await decisionCount(handle)).toBe(2);
  expect((await progressOf(handle)).approvals[0].approvedBy).toEqual(['bob', 'carol']);
});

test('a link of an earlier run with the same workflow id is refused and sends nothing to the new run', async () => {
  const workflowId = `reused-${queue}`;
  const first = await startGated(client, queue, {}, workflowId);
  await waitForGate(first.handle, 'cutover');
  const oldLink = await tokenFor(first.handle, 'bob');
  await first.handle.terminate('operator restarted the procedure');

  const second = await startGated(client, queue, {}, workflowId);
  await waitForGate(second.handle, 'cutover');
  for (const res of [await get(oldLink), await post(oldLink, 'approve')]) {
    expect(res.status).toBe(410);
    expect(await res.text()).toContain('a later run with the same workflow id does not accept it');
  }
  await expectNoSignal(second.handle, 0);
  expect((await progressOf(second.handle)).approvals[0]).toMatchObject({ state: 'open', approvedBy: [] });

  // A link for the right run but another opening of the gate is refused too.
  const otherOpening = await tokenFor(second.handle, 'bob', { nonce: 'an-earlier-nonce' });
  const refused = await post(otherOpening, 'approve');
  expect(refused.status).toBe(409);
  expect(await refused.text()).toContain('another opening of the gate');
  await expectNoSignal(second.handle, 0);
  await second.handle.terminate('test done');
});

test('a gate that is not open, an unknown run, or a decided gate gets a clear page and no signal', async () => {
  const { handle } = await startGated(client, queue, { gate: { quorum: 1 } });
  await waitForGate(handle, 'cutover');
  const notOpen = await get(await tokenFor(handle, 'bob', { gate: 'some-later-gate', nonce: 'guessed' }));
  expect(notOpen.status).toBe(409);
  expect(await notOpen.text()).toContain('is not open');
  const missing = await get(await tokenFor(handle, 'bob', { workflowId: 'no-such-run' }));
  expect(missing.status).toBe(404);
  await expectNoSignal(handle, 0);
  await handle.signal('approve', { gate: 'cutover', by: 'dave' });
  await handle.result();
  const late = await get(await tokenFor(handle, 'bob'));
  expect(late.status).toBe(410);
});

test('the worker dies while the run waits at the gate; the approval is sent with no worker running; a new worker completes the run', async () => {
  const { handle, journal } = await startGated(client, queue, {});
  await waitForGate(handle, 'cutover');
  const token = await tokenFor(handle, 'bob');
  await worker.kill('SIGKILL');

  const page = await get(token);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('no worker is running');
  const sent = await post(token, 'approve', 'night shift');
  expect(sent.status).toBe(202);
  expect(await decisionCount(handle)).toBe(1);
  // Used once, even while no worker can say so.
  expect((await post(token, 'approve')).status).toBe(409);
  expect(await decisionCount(handle)).toBe(1);

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

test('in production the gateway refuses to sign people in without a cookie key of its own, or with APPROVAL_SECRET as that key, or by a claim that is not unique', async () => {
  const signIn = {
    RUNBOOKS_ENV: 'production', APPROVAL_SECRET: secret, APPROVAL_PORT: '0', APPROVAL_BASE_URL: 'https://approvals.example.org',
    // Never reached: each refusal comes before the provider is asked anything.
    APPROVAL_OIDC_ISSUER: `http://127.0.0.1:${await freePort()}`, APPROVAL_OIDC_CLIENT_ID: 'gw', APPROVAL_OIDC_CLIENT_SECRET: 'client-secret',
  };
  const refusedWith = async (env: Record<string, string>) => {
    const gw = startProcess('workers/approvals.ts', [], { ...signIn, APPROVAL_COOKIE_SECRET: '', APPROVAL_COOKIE_SECRET_FILE: '', ...env });
    expect(await gw.exited).toBe(1);
    return gw.output();
  };
  expect(await refusedWith({})).toContain('APPROVAL_COOKIE_SECRET (32+ characters, not APPROVAL_SECRET) is not set');
  expect(await refusedWith({ APPROVAL_COOKIE_SECRET: secret })).toContain('APPROVAL_COOKIE_SECRET must differ from APPROVAL_SECRET');
  const claim = await refusedWith({ APPROVAL_COOKIE_SECRET: 'a-cookie-key-of-the-gateway-alone-0123456789', APPROVAL_OIDC_CLAIM: 'preferred_username' });
  expect(claim).toContain('APPROVAL_OIDC_CLAIM=preferred_username: OpenID Connect says only the issuer and "sub" identify a person');
  expect(claim).toContain('set APPROVAL_OIDC_TRUST_CLAIM=preferred_username');
});
