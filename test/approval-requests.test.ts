/**
 * Approval requests as approvers receive them: a real SMTP server (STARTTLS, login) and a real
 * HTTP webhook receiver get the signed links; a link from the received e-mail approves the gate
 * through the real gateway; and the run's whole history and the worker's log hold no link.
 */
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { verifyApproval } from '../activities/lib/approval-token';
import { startGateway, type Gateway } from '../workers/approvals';
import { startMailServer, startWebhookReceiver, type MailServer, type WebhookReceiver } from './support/inboxes';
import { runCli, startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { currentDetails, progressOf, readableHistory, startGated, tempDir, waitForProgress } from './support/runs';

const secret = 'request-test-secret-that-is-long-enough-42';
const queue = uniqueQueue('requests');
const smtpLogin = { user: 'runbooks', password: 'smtp-pass-0f9e8d' };
const slackPath = '/services/T0001/B0001/hook-credential-7a7a';
let client: Client;
let worker: Proc;
let gateway: Gateway;
let mail: MailServer;
let hooks: WebhookReceiver;

beforeAll(async () => {
  client = await testClient();
  gateway = await startGateway({ client, secret, port: 0 });
  mail = await startMailServer(smtpLogin);
  hooks = await startWebhookReceiver();
  const channels = path.join(tempDir('channels-'), 'channels.json');
  writeFileSync(channels, JSON.stringify({
    email: {
      host: '127.0.0.1', port: mail.port, requireTLS: true, caFile: mail.caFile, from: 'Runbooks <runbooks@hospital.example>',
      user: smtpLogin.user, password: { secret: 'smtp-password' }, allowedDomains: ['hospital.example'],
    },
    webhooks: {
      'ops-chat': { url: { secret: 'ops-chat-webhook' }, format: 'slack' },
      'change-board': { url: `${hooks.url}/change-board`, format: 'json' },
    },
  }));
  worker = await startWorker(queue, {
    APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url, RUNBOOKS_APPROVAL_CHANNELS: channels,
    RUNBOOKS_SECRET_SMTP_PASSWORD: smtpLogin.password, RUNBOOKS_SECRET_OPS_CHAT_WEBHOOK: `${hooks.url}${slackPath}`,
  });
});
afterAll(async () => {
  await worker.kill('SIGKILL');
  await Promise.all([gateway.close(), mail.close(), hooks.close()]);
  await client.connection.close();
});

const linksIn = (text: string) => [...text.matchAll(/(http:\/\/\S+\/approve\?t=[A-Za-z0-9_.-]+)/g)].map((m) => new URL(m[1]));
const tokenOf = (url: URL) => url.searchParams.get('t')!;
const post = (token: string, decision: 'approve' | 'reject', reason = '') =>
  fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: token, decision, reason }) });

const allSent = (handle: WorkflowHandle, count: number) =>
  waitForProgress(handle, `${count} approval requests sent`, (p) => p.approvals[0]?.requests.filter((r) => r.state === 'sent').length === count);

test('the gate e-mails and posts each approver a link; the e-mailed link approves in a real round trip; no link is in the history or the log', async () => {
  const mailsBefore = mail.messages.length;
  const { handle } = await startGated(client, queue, {
    requestedBy: 'alice',
    gate: {
      approvers: ['bob', 'carol'], fourEyes: true,
      notify: [{ approver: 'bob', email: 'bob@hospital.example' }, { approver: 'carol', webhook: 'ops-chat' }],
    },
  });
  const progress = await allSent(handle, 2);
  const requests = progress.approvals[0].requests;
  expect(requests).toEqual([
    expect.objectContaining({ approver: 'bob', channel: 'email', to: 'bob@hospital.example', state: 'sent', linkId: expect.any(String) }),
    expect.objectContaining({ approver: 'carol', channel: 'webhook', to: 'ops-chat', state: 'sent', linkId: expect.any(String) }),
  ]);

  // The e-mail, as bob's mail client reads it.
  expect(mail.messages.length).toBe(mailsBefore + 1);
  const message = mail.messages[mail.messages.length - 1];
  expect(mail.recipients[mail.recipients.length - 1]).toEqual(['bob@hospital.example']);
  expect(message.subject).toBe('Approval needed: Test runbook with a gate — cutover');
  expect(message.from?.text).toContain('runbooks@hospital.example');
  expect(message.text).toContain('Switch the service over');
  expect(message.text).toContain('requested by alice');
  const [bobLink] = linksIn(message.text ?? '');
  expect(bobLink.origin).toBe(gateway.url);
  const bobClaim = verifyApproval(tokenOf(bobLink), secret);
  expect(bobClaim).toMatchObject({ ok: true, claim: { workflowId: handle.workflowId, gate: 'cutover', approver: 'bob', linkId: requests[0].linkId } });

  // The chat message, as the Slack-style webhook received it (at the URL from the secret).
  const post0 = hooks.posts.find((p) => p.path === slackPath && String(p.body.text).includes(handle.workflowId));
  expect(post0?.contentType).toBe('application/json');
  const [carolLink] = linksIn(String(post0?.body.text));
  expect(verifyApproval(tokenOf(carolLink), secret)).toMatchObject({ ok: true, claim: { approver: 'carol', linkId: requests[1].linkId } });

  // The UI's event view gives each request a one-line summary (the activity's user metadata).
  const scheduled = (await handle.fetchHistory()).events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'sendApprovalRequest');
  expect(scheduled.map((e) => defaultPayloadConverter.fromPayload(e.userMetadata!.summary as Payload)).sort())
    .toEqual(['Ask bob by email to decide gate cutover', 'Ask carol by webhook to decide gate cutover']);

  // Anyone who can read the history sees where requests went, never a link.
  const history = await readableHistory(handle);
  expect(history).toContain(requests[0].linkId); // the decoding works: the link ids are there
  expect(history).toContain('bob@hospital.example');
  for (const link of [bobLink, carolLink]) {
    const [, mac] = tokenOf(link).split('.');
    expect(history).not.toContain(tokenOf(link));
    expect(history).not.toContain(mac);
  }
  expect(history).not.toContain('/approve?t=');
  expect(history).not.toContain('hook-credential-7a7a');
  expect(JSON.stringify(await progressOf(handle))).not.toContain('/approve?t=');
  expect(await currentDetails(handle)).not.toContain('/approve?t=');

  // bob opens the e-mailed link, then approves: a real HTTP round trip through the gateway.
  const page = await fetch(bobLink);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('<dt>You decide as</dt><dd><strong>bob</strong>');
  const decided = await post(tokenOf(bobLink), 'approve', 'checked the lag');
  expect(decided.status).toBe(200);
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
  expect((await progressOf(handle)).decisions).toEqual([expect.objectContaining({ by: 'bob', via: 'link', outcome: 'accepted', linkId: requests[0].linkId })]);

  // carol's link is now of no use, and the whole history still holds no token.
  expect((await post(tokenOf(carolLink), 'approve')).status).toBe(410);
  const after = await readableHistory(handle);
  for (const link of [bobLink, carolLink]) expect(after).not.toContain(tokenOf(link).split('.')[1]);
  for (const link of [bobLink, carolLink]) expect(worker.output()).not.toContain(tokenOf(link).split('.')[1]);
});

test('a webhook that fails for a while is retried; a request that cannot be delivered is recorded and the gate still waits', async () => {
  hooks.failNext(2, 503);
  const before = hooks.posts.length;
  const { handle } = await startGated(client, queue, {
    gate: { notify: [{ approver: 'dave', webhook: 'change-board' }, { approver: 'eve', email: 'eve@elsewhere.example' }] },
  });
  const p = await waitForProgress(handle, 'both requests settled', (x) => x.approvals[0]?.requests.every((r) => r.state === 'sent' || r.state === 'failed')
    && x.approvals[0].requests.length === 2);
  const [dave, eve] = p.approvals[0].requests;
  expect(dave).toMatchObject({ approver: 'dave', state: 'sent' });
  expect(hooks.posts.length).toBe(before + 1);
  const board = hooks.posts[hooks.posts.length - 1];
  expect(board.path).toBe('/change-board');
  expect(board.body).toMatchObject({ runbook: 'gatedRunbook', workflowId: handle.workflowId, gate: 'cutover', summary: 'Switch the service over' });
  expect(eve).toMatchObject({ approver: 'eve', state: 'failed', error: expect.stringContaining('only to hospital.example') });
  expect(p.approvals[0].state).toBe('open');
  expect(await currentDetails(handle)).toContain('request for eve by email to eve@elsewhere.example: failed');

  const cli = await runCli(['approve', handle.workflowId, '--gate', 'cutover', '--by', 'eve'], { RUNBOOKS_TASK_QUEUE: queue });
  expect(cli.code).toBe(0);
  await expect(handle.result()).resolves.toEqual({ outcome: 'done' });
});

test('a dry-run says where requests would go and sends nothing', async () => {
  const mails = mail.messages.length;
  const posts = hooks.posts.length;
  const { handle } = await startGated(client, queue, { dryRun: true, gate: { notify: [{ approver: 'bob', email: 'bob@hospital.example', webhook: 'ops-chat' }] } });
  const plan = await handle.result() as { steps: Array<{ name: string; actions: string[] }> };
  expect(plan.steps.find((s) => s.name === 'cutover')?.actions).toContain('would send an approval request for bob to bob@hospital.example and webhook ops-chat');
  expect(mail.messages.length).toBe(mails);
  expect(hooks.posts.length).toBe(posts);
});

test('a bad recipient or a link lifetime over 7 days is refused before the run starts', async () => {
  const dir = tempDir('bad-notify-');
  const input = path.join(dir, 'input.json');
  writeFileSync(input, JSON.stringify({
    journal: path.join(dir, 'j.log'),
    gate: { approvers: ['bob'], linkTtl: '8d', notify: [{ approver: 'mallory', email: 'not an address' }, { approver: 'bob' }] },
  }));
  const r = await runCli(['start', 'gatedRunbook', '--input', input], { RUNBOOKS_TASK_QUEUE: queue });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/gate\.notify\.0\.email: /);
  expect(r.stderr).toMatch(/gate\.notify\.1\.email: give "email", "webhook" or both/);
  expect(r.stderr).toMatch(/gate\.linkTtl: at most 7d/);
  expect(r.stderr).toContain('Nothing was started');
});

test('a worker with a bad channel configuration refuses to start and names every bad field', async () => {
  const file = path.join(tempDir('bad-channels-'), 'channels.json');
  writeFileSync(file, JSON.stringify({ email: { host: '', port: 99999, from: 'x' }, webhooks: { 'ops chat': { url: 'ftp://x' } } }));
  const w = startProcess('test/support/worker-entry.ts', [], { RUNBOOKS_APPROVAL_CHANNELS: file, RUNBOOKS_TASK_QUEUE: uniqueQueue('bad') });
  expect(await w.exited).toBe(1);
  expect(w.output()).toContain(`RUNBOOKS_APPROVAL_CHANNELS=${file} is not a valid channel configuration`);
  for (const field of ['email.host', 'email.port', 'email.from', 'webhooks.ops chat']) expect(w.output()).toContain(`${field}:`);
});
