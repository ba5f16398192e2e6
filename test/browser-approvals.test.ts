/**
 * The approval pages and the approvals inbox as people use them: in chromium (headless, Debian's),
 * against the real gateway over HTTP and a real Temporal. Phone-sized, keyboard only, with
 * JavaScript off; every state says itself; a GET never decides. And "who clicked": with sign-in
 * on (a real OpenID Connect provider), only the approver the link names can decide with it.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { signApproval, signInbox } from '../activities/lib/approval-token';
import { securityHeaders, startGateway, type Gateway } from '../workers/approvals';
import { freePort } from './support/global-setup';
import { launchBrowser, screenshot } from './support/browser';
import { startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { progressOf, decisionCount, startGated, waitForGate } from './support/runs';

const secret = 'browser-approvals-secret-0123456789abcdefgh';
const inboxToken = 'operator-inbox-token-0123456789abcdefghij';
/** Where the Temporal UI would be (APPROVAL_UI_URL): the pages link the run there. */
const uiUrl = 'http://127.0.0.1:8233';
const queue = uniqueQueue('browser');
let client: Client;
let worker: Proc;
let gateway: Gateway;
let browser: Browser;

beforeAll(async () => {
  client = await testClient();
  gateway = await startGateway({ client, secret, port: 0, inboxToken, baseUrl: '', uiUrl });
  worker = await startWorker(queue, { APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url });
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
  await worker?.kill('SIGKILL');
  await client?.connection.close();
});

const hour = () => Math.floor(Date.now() / 1000) + 3600;
async function linkFor(handle: WorkflowHandle, approver: string, base = gateway.url, gate = 'cutover'): Promise<string> {
  const open = (await progressOf(handle)).approvals.find((g) => g.gate === gate && g.state === 'open')!;
  const { runId } = await handle.describe();
  return `${base}/approve?t=${signApproval({ workflowId: handle.workflowId, runId, gate, nonce: open.nonce, approver, exp: hour() }, secret)}`;
}

/** A browser context as an approver's phone or laptop has it: here without JavaScript, as the pages need none. */
const context = (phone = false): Promise<BrowserContext> => browser.newContext({
  javaScriptEnabled: false,
  ...(phone ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true } : { viewport: { width: 1100, height: 900 } }),
});

/** The text of the first element matching `selector` on the page as it is now. */
const textOf = async (page: Page, selector: string) => (await page.locator(selector).first().innerText()).trim();
/** What has the keyboard focus: its id, else its class. */
const focused = (page: Page) => page.evaluate<string>("document.activeElement?.id || document.activeElement?.className || ''");

async function expectStrictHeaders(page: Page, url: string): Promise<void> {
  const res = await page.request.get(url, { maxRedirects: 0 });
  for (const [name, value] of Object.entries(securityHeaders)) expect([name, res.headers()[name]]).toEqual([name, value]);
}

test('the approval page on a phone: says what, who, until when; readable without sideways scrolling; approved with the keyboard alone', async () => {
  const { handle } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['bob', 'carol'], quorum: 1, timeout: '2h' } });
  await waitForGate(handle, 'cutover');
  const link = await linkFor(handle, 'bob');
  const ctx = await context(true);
  const page = await ctx.newPage();
  const res = await page.goto(link);
  expect(res!.status()).toBe(200);
  expect(await textOf(page, 'h1')).toBe('Approve "cutover"?');
  const facts = await page.locator('dl').innerText();
  expect(facts).toMatch(/Runbook\s+Test runbook with a gate/);
  expect(facts).toMatch(/Asked for by\s+alice/);
  expect(facts).toMatch(/Who is asked\s+bob, carol; 1 approval\(s\) needed/);
  expect(facts).toMatch(/Waits until\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (1 h 5\d min|2 h 0 min)\)/);
  expect(facts).toMatch(/You decide as\s+bob/);
  expect(facts).toMatch(/This link\s+works once, until .* \(in (5\d min|1 h 0 min)\)/);
  // The run so far, as an approver reads it: no step ids, no undo bookkeeping, times one way.
  const runSoFar = await page.locator('pre').last().innerText();
  expect(runSoFar).toContain('[x] Take the service down');
  expect(runSoFar).toMatch(/gate cutover: open — .* until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (1 h 5\d min|2 h 0 min)\)/);
  expect(runSoFar).not.toContain('(takeDown)');
  expect(runSoFar).not.toContain('undo "');
  expect(runSoFar).not.toMatch(/\d\dT\d\d:\d\d/);
  // Nothing wider than the phone's screen.
  expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
  await screenshot(page, 'approval-page-phone');
  expect(await decisionCount(handle)).toBe(0);

  // Keyboard only: Tab to the reason, type, Tab to Approve, Enter.
  await page.keyboard.press('Tab');
  expect(await focused(page)).toBe('reason');
  await page.keyboard.type('checked the maintenance window');
  await page.keyboard.press('Tab');
  expect(await focused(page)).toBe('approve');
  await Promise.all([page.waitForURL(/\/approve$/), page.keyboard.press('Enter')]);
  expect(await textOf(page, 'h1')).toBe('Approved');
  expect(await textOf(page, '.state')).toContain('Approvals: 1 of 1; the gate is approved');
  // Not a dead end: what happens now, and where to follow the run.
  expect(await page.locator('main').innerText()).toContain('What happens next: the run goes on now with what this gate guarded.');
  const { runId } = await handle.describe();
  expect(await page.getByRole('link', { name: 'Follow the run in the Temporal UI' }).getAttribute('href'))
    .toBe(`${uiUrl}/namespaces/default/workflows/${encodeURIComponent(handle.workflowId)}/${runId}`);
  await screenshot(page, 'approval-approved-phone');
  await handle.result();
  const decision = (await progressOf(handle)).decisions[0];
  expect(decision).toMatchObject({ by: 'bob', via: 'link', outcome: 'accepted', reason: 'checked the maintenance window' });

  // The same link again, after the run ended: how it was used, by whom, when, with what outcome.
  expect((await page.goto(link))!.status()).toBe(200);
  expect(await textOf(page, 'h1')).toBe('This link was used');
  const used = await textOf(page, '.state');
  expect(used).toMatch(/^This link was used: bob approved "cutover" with it on \d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+ s ago\)\. /);
  expect(used).toContain('It counted: approvals 1 of 1, the gate is approved. The run has since ended (completed).');
  expect(await page.locator('.state.bad').count()).toBe(0);
  await screenshot(page, 'approval-link-used-phone');
  await ctx.close();
}, 120_000);

test('a second click says the link was used; reject needs a reason; an ended run, expired and forged links say so; a GET never decides', async () => {
  const { handle } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['dave', 'erin'], quorum: 2, timeout: '1h' } });
  await waitForGate(handle, 'cutover');
  const ctx = await context();
  const page = await ctx.newPage();
  const erins = await linkFor(handle, 'erin');
  await page.goto(erins);
  await screenshot(page, 'approval-page');
  await expectStrictHeaders(page, erins);
  await page.locator('button.approve').click();
  expect(await textOf(page, 'h1')).toBe('Approved');
  expect(await textOf(page, '.state')).toContain('Approvals: 1 of 2; the gate is open');
  expect(await page.locator('main').innerText()).toContain('What happens next: nothing yet. The gate waits for 1 more approval(s) (asked: dave) until');
  // The same link again: it was used.
  expect((await page.goto(erins))!.status()).toBe(200);
  expect(await textOf(page, 'h1')).toBe('This link was used');
  expect(await textOf(page, '.state')).toContain('It counted: approvals 1 of 2, the gate is open. The run is still going.');
  await screenshot(page, 'approval-already-used');

  const daves = await linkFor(handle, 'dave');
  await page.goto(daves);
  await page.locator('button.reject').click();
  expect(await textOf(page, 'h1')).toBe('A reason is needed');
  expect(await decisionCount(handle)).toBe(1);
  await page.goBack();
  await page.locator('#reason').fill('the window was moved to Sunday');
  await page.locator('button.reject').click();
  expect(await textOf(page, 'h1')).toBe('Rejected');
  expect(await textOf(page, '.state')).toContain('Rejected by dave: the window was moved to Sunday');
  await screenshot(page, 'approval-rejected');
  await expect(handle.result()).rejects.toMatchObject({ cause: { message: 'Gate "cutover" was rejected by dave: the window was moved to Sunday' } });
  expect((await page.goto(daves))!.status()).toBe(200);
  expect(await textOf(page, 'h1')).toBe('This link was used');
  expect(await textOf(page, '.state')).toContain('dave rejected "cutover" with it');
  expect(await textOf(page, '.state')).toContain('The run has since ended (failed)');
  expect(await decisionCount(handle)).toBe(2);

  // Expired and forged links.
  const { handle: other } = await startGated(client, queue, {});
  await waitForGate(other, 'cutover');
  const { runId } = await other.describe();
  const nonce = (await progressOf(other)).approvals[0].nonce;
  const expired = `${gateway.url}/approve?t=${signApproval({ workflowId: other.workflowId, runId, gate: 'cutover', nonce, approver: 'erin', exp: Math.floor(Date.now() / 1000) - 60 }, secret)}`;
  const shown = await page.goto(expired);
  expect(shown!.status()).toBe(410);
  expect(await textOf(page, 'h1')).toBe('This link has expired');
  expect(await textOf(page, '.state')).toContain(`It was for "cutover" of run ${other.workflowId}, for erin, and expired`);
  await screenshot(page, 'approval-expired');
  const forged = await page.goto(`${gateway.url}/approve?t=${signApproval({ workflowId: other.workflowId, runId, gate: 'cutover', nonce, approver: 'erin', exp: hour() }, 'not-the-gateway-secret-0123456789abcdef')}`);
  expect(forged!.status()).toBe(403);
  expect(await textOf(page, 'h1')).toBe('Link refused');
  // A GET of every kind of approval URL changed nothing.
  expect(await decisionCount(other)).toBe(0);
  await other.terminate('test done');
  await ctx.close();
}, 120_000);

test('the approvals inbox: an approver sees the gates waiting for them and decides from there; an operator sees every waiting run', async () => {
  const { handle: forBob } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['bob'], timeout: '3h' } });
  const { handle: forCarol } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['carol'], timeout: '3h' } });
  await waitForGate(forBob, 'cutover');
  await waitForGate(forCarol, 'cutover');
  const ctx = await context();
  const page = await ctx.newPage();

  // Without a link the inbox shows nothing but how to open it.
  expect((await page.goto(`${gateway.url}/`))!.status()).toBe(401);
  expect((await page.goto(`${gateway.url}/?t=${signApproval({ workflowId: 'w', runId: 'r', gate: 'g', nonce: 'n', approver: 'bob', exp: hour() }, secret)}`))!.status()).toBe(403);

  const inbox = `${gateway.url}/?t=${signInbox({ approver: 'bob', exp: hour() }, secret)}`;
  // The visibility query sees the two runs once Temporal has indexed their status.
  for (const deadline = Date.now() + 30_000; ; ) {
    await page.goto(inbox);
    if (await page.locator('tbody tr').filter({ hasText: forBob.workflowId }).count()) break;
    if (Date.now() > deadline) throw new Error(`the inbox never listed ${forBob.workflowId}:\n${await page.content()}`);
  }
  expect(await textOf(page, 'h1')).toBe('Waiting for you, bob');
  const rows = page.locator('tbody tr');
  expect(await rows.filter({ hasText: forBob.workflowId }).count()).toBe(1);
  expect(await rows.filter({ hasText: forCarol.workflowId }).count()).toBe(0);
  expect(await rows.filter({ hasText: forBob.workflowId }).innerText()).toContain('cutover: Switch the service over');
  await screenshot(page, 'inbox');
  await expectStrictHeaders(page, inbox);

  await rows.filter({ hasText: forBob.workflowId }).getByRole('link', { name: 'Decide' }).click();
  expect(await textOf(page, 'h1')).toBe('Approve "cutover"?');
  await page.locator('button.approve').click();
  expect(await textOf(page, 'h1')).toBe('Approved');
  await forBob.result();

  // The operator's view: every waiting run, carol's too, with no decide link of its own.
  await page.setExtraHTTPHeaders({ authorization: `Bearer ${inboxToken}` });
  await page.goto(`${gateway.url}/`);
  expect(await textOf(page, 'h1')).toBe('Runs waiting for a person');
  expect(await page.locator('tbody tr').filter({ hasText: forCarol.workflowId }).count()).toBe(1);
  expect(await page.locator('tbody tr').filter({ hasText: forBob.workflowId }).count()).toBe(0);
  expect(await page.getByRole('link', { name: 'Decide' }).count()).toBe(0);
  await forCarol.terminate('test done');
  await ctx.close();
}, 120_000);

describe('with sign-in (OpenID Connect)', () => {
  let provider: Proc;
  let signedGateway: Proc;
  let base: string;
  let issuerUrl: string;
  /** The gateway's own cookie key: the worker and the CLI hold `secret`, never this. */
  const cookieSecret = 'the-gateway-cookie-key-only-it-holds-0123456789';

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    provider = startProcess('test/support/oidc-provider.ts', [], {
      OIDC_CLIENT_ID: 'runbooks-gateway', OIDC_CLIENT_SECRET: 'oidc-client-secret-for-tests', OIDC_REDIRECT_URI: `${base}/oidc/callback`,
    });
    await provider.waitFor(/OIDC provider ready/);
    const issuer = /OIDC provider ready (\S+)/.exec(provider.output())![1];
    issuerUrl = issuer;
    signedGateway = startProcess('workers/approvals.ts', [], {
      APPROVAL_SECRET: secret, APPROVAL_PORT: String(port), APPROVAL_BASE_URL: base, RUNBOOKS_ENV: 'production', APPROVAL_COOKIE_SECRET: cookieSecret,
      APPROVAL_OIDC_ISSUER: issuer, APPROVAL_OIDC_CLIENT_ID: 'runbooks-gateway', APPROVAL_OIDC_CLIENT_SECRET: 'oidc-client-secret-for-tests',
    });
    await signedGateway.waitFor(/Approval gateway ready/);
  }, 60_000);

  afterAll(async () => {
    await signedGateway?.kill('SIGKILL');
    await provider?.kill('SIGKILL');
  });

  /** Signs in at the provider's own pages as `who`, coming back to the gateway. */
  async function signIn(page: Page, who: string): Promise<void> {
    await page.locator('input[name=login]').fill(who);
    await page.locator('input[name=password]').fill('any password');
    await page.locator('button[type=submit]').click();
    // The provider asks for consent once per client and person.
    await page.waitForURL((u) => u.href.startsWith(base) || /\/interaction\//.test(u.pathname));
    if (!page.url().startsWith(base)) await page.locator('button[type=submit]').click();
    await page.waitForURL((u) => u.href.startsWith(`${base}/approve`));
  }

  test('the approver named by the link signs in and decides; someone else signed in with the same link is refused', async () => {
    const { handle } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['bob', 'carol'], quorum: 2, timeout: '1h' } });
    await waitForGate(handle, 'cutover');
    const bobsLink = await linkFor(handle, 'bob', base);

    // Mallory has bob's link (forwarded) and signs in as herself: nothing can be decided.
    const mallory = await browser.newContext();
    const mPage = await mallory.newPage();
    await mPage.goto(bobsLink);
    expect(new URL(mPage.url()).origin).not.toBe(base);
    await signIn(mPage, 'mallory');
    expect(await textOf(mPage, 'h1')).toBe('Not your link');
    expect(await textOf(mPage, '.state')).toContain('This link is for bob, and you are signed in as mallory');
    await screenshot(mPage, 'approval-not-your-link');
    const refused = await mPage.request.post(`${base}/approve`, { form: { t: new URL(bobsLink).searchParams.get('t')!, decision: 'approve' } });
    expect(refused.status()).toBe(403);
    expect(await decisionCount(handle)).toBe(0);
    await mallory.close();

    // Bob signs in and approves.
    const bob = await browser.newContext();
    const bPage = await bob.newPage();
    await bPage.goto(bobsLink);
    await signIn(bPage, 'bob');
    expect(await textOf(bPage, 'h1')).toBe('Approve "cutover"?');
    expect(await textOf(bPage, 'dl')).toContain('bob (signed in as bob)');
    await bPage.locator('button.approve').click();
    expect(await textOf(bPage, 'h1')).toBe('Approved');
    const decision = (await progressOf(handle)).decisions.find((d) => d.by === 'bob');
    expect(decision).toMatchObject({ outcome: 'accepted', via: 'link' });
    expect(decision?.origin).toContain('signed in as bob');
    // A POST without a session is refused, even with a good link.
    const carolsLink = await linkFor(handle, 'carol', base);
    const anonymous = await fetch(`${base}/approve`, { method: 'POST', body: new URLSearchParams({ t: new URL(carolsLink).searchParams.get('t')!, decision: 'approve' }) });
    expect(anonymous.status).toBe(403);
    expect((await progressOf(handle)).approvals[0].approvedBy).toEqual(['bob']);
    await handle.terminate('test done');
    await bob.close();
  }, 120_000);

  /** A session cookie as anyone holding APPROVAL_SECRET could write it, by the gateway's rule before issue 22 and by today's shape. */
  function forgedSessions(who: string): string[] {
    const exp = Date.now() / 1000 + 3600;
    const cookie = (key: Buffer, value: object) => {
      const payload = Buffer.from(JSON.stringify(value)).toString('base64url');
      return `rb_session=${payload}.${createHmac('sha256', key).update(`rb_session.${payload}`).digest('base64url')}`;
    };
    return [
      cookie(createHmac('sha256', secret).update('approval-gateway-cookies-v1').digest(), { id: who, exp }),
      cookie(createHmac('sha256', secret).update('approval-gateway-session-v2').digest(), { iss: issuerUrl, sub: who, label: who, exp }),
    ];
  }

  test('a sign-in cookie forged with APPROVAL_SECRET (which workers and the CLI hold) is not a sign-in: nothing is shown or sent', async () => {
    const { handle } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['bob'], timeout: '1h' } });
    await waitForGate(handle, 'cutover');
    const bobsLink = await linkFor(handle, 'bob', base);
    for (const cookie of forgedSessions('bob')) {
      const shown = await fetch(bobsLink, { headers: { cookie }, redirect: 'manual' });
      // Sent to the provider to sign in, as if there were no cookie.
      expect([shown.status, new URL(shown.headers.get('location') ?? '/', base).origin]).toEqual([302, issuerUrl]);
      const posted = await fetch(`${base}/approve`, { method: 'POST', headers: { cookie }, body: new URLSearchParams({ t: new URL(bobsLink).searchParams.get('t')!, decision: 'approve' }) });
      expect([posted.status, await posted.text()]).toEqual([403, expect.stringContaining('Sign in first')]);
    }
    expect(await decisionCount(handle)).toBe(0);
    await handle.terminate('test done');
  }, 60_000);

  test('identity is issuer + sub: someone whose provider lets them pick the user name "bob" is not bob', async () => {
    const { handle } = await startGated(client, queue, { requestedBy: 'alice', gate: { approvers: ['bob', 'carol'], quorum: 2, timeout: '1h' } });
    await waitForGate(handle, 'cutover');
    const bobsLink = await linkFor(handle, 'bob', base);
    const mallory = await browser.newContext();
    const page = await mallory.newPage();
    await page.goto(bobsLink);
    await signIn(page, 'mallory:bob');
    expect(await textOf(page, 'h1')).toBe('Not your link');
    expect(await textOf(page, '.state')).toContain('This link is for bob, and you are signed in as bob (sub mallory:bob)');
    const refused = await page.request.post(`${base}/approve`, { form: { t: new URL(bobsLink).searchParams.get('t')!, decision: 'approve' } });
    expect(refused.status()).toBe(403);
    expect(await decisionCount(handle)).toBe(0);
    await mallory.close();
    await handle.terminate('test done');
  }, 60_000);

  test('a claim that is not unique is used only when the operator opts in, and the gateway warns; in development the cookie key is generated for the gateway alone', async () => {
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'gateway-state-'));
    const port = await freePort();
    const gw = startProcess('workers/approvals.ts', [], {
      APPROVAL_SECRET: secret, APPROVAL_PORT: String(port), APPROVAL_BASE_URL: `http://127.0.0.1:${port}`, RUNBOOKS_ENV: '', RUNBOOKS_STATE_DIR: stateDir,
      APPROVAL_COOKIE_SECRET: '', APPROVAL_COOKIE_SECRET_FILE: '', APPROVAL_OIDC_ISSUER: issuerUrl, APPROVAL_OIDC_CLIENT_ID: 'runbooks-gateway',
      APPROVAL_OIDC_CLIENT_SECRET: 'oidc-client-secret-for-tests', APPROVAL_OIDC_CLAIM: 'preferred_username', APPROVAL_OIDC_TRUST_CLAIM: 'preferred_username',
    });
    await gw.waitFor(/Approval gateway ready/);
    expect(gw.output()).toContain('"level":"WARN","message":"Sign-in matches approvers by the \\"preferred_username\\" claim, which OpenID Connect does not guarantee unique');
    expect(gw.output()).toContain('"identity":"preferred_username"');
    const key = path.join(stateDir, 'approval-cookie-secret');
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(readFileSync(key, 'utf8').trim()).not.toBe(secret);
    expect(readFileSync(key, 'utf8').trim().length).toBeGreaterThanOrEqual(32);
    await gw.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  }, 60_000);
});
