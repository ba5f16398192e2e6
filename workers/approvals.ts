/**
 * The approval gateway: turns signed approval links into `approve` / `reject` signals to the ONE
 * run the link was made for. GET shows what is being approved (link scanners that follow GET
 * links decide nothing); only POST sends the signal. Forged or altered links get a 403, expired
 * ones a 410; a link of an ended run, of another opening of the gate, or already used gets a
 * clear page; none of them sends anything. `GET /` is the approvals inbox: every run waiting for
 * a person (an approver's signed inbox link, or APPROVAL_INBOX_TOKEN for operators). With
 * APPROVAL_OIDC_ISSUER set, a link decides only for the approver it names, signed in.
 *
 * Env: APPROVAL_SECRET (or APPROVAL_SECRET_FILE), APPROVAL_BASE_URL, APPROVAL_PORT (8240),
 * APPROVAL_HOST (127.0.0.1), APPROVAL_INBOX_TOKEN, APPROVAL_UI_URL (the Temporal UI, for the
 * operators' inbox and the "Approved" page), APPROVAL_OIDC_* (approval-oidc.ts), APPROVAL_COOKIE_SECRET
 * (or _FILE: the sign-in cookies' key, the gateway's alone), RUNBOOKS_ENV=production to refuse a
 * generated secret and a gateway without sign-in (APPROVAL_OIDC=off to run one knowingly).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import path from 'node:path';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { approvalBaseUrl, approvalSecret, approvalUrl, linkExpiry, verifyApproval, verifyInbox, type ApprovalClaim } from '../activities/lib/approval-token';
import { approveSignal, decideGateUpdate, progressQueryOf, rejectSignal, reviewGateUpdate, type DecisionAnswer, type GateDecision, type GateProgress } from '../contracts/messages';
import { RunbookStatus } from '../contracts/search-attributes';
import { AnswerTooLarge, readLimited, sizeOf } from '../activities/lib/http';
import { approvalForm, blindApprovalForm, decidedPage, expiredPage, inboxPage, message, usedLinkPage, type InboxRow, type RunProgress } from './approval-pages';
import { OidcSignIn, oidcSettingsFromEnv, sameApprover, SignInError } from './approval-oidc';
import { connectClient } from './connection';
import { processLog } from './log';
import { startGatewayMetrics, type GatewayMetrics } from './metrics-gateway';

export interface GatewayOptions {
  client: Client;
  secret: string;
  host?: string;
  port?: number;
  /** How long to wait for the run to record a decision before answering. */
  confirmTimeoutMs?: number;
  /** The operators' inbox token (APPROVAL_INBOX_TOKEN). */
  inboxToken?: string;
  /** The Temporal UI's base URL, for the operators' inbox. */
  uiUrl?: string;
  /** The gateway's public base URL, for the links the inbox makes (default APPROVAL_BASE_URL). */
  baseUrl?: string;
  /** Sign-in with the organisation's OpenID Connect provider: a link then decides only for the approver it names. */
  oidc?: OidcSignIn;
  /** Pages, decisions and sign-ins counted for Prometheus (metrics-gateway.ts). */
  metrics?: GatewayMetrics;
}

export interface Gateway {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const log = processLog();

/** Every workflow with gates answers `progress` with at least the approval ledger. */
const progressQuery = progressQueryOf<RunProgress>();

type RunView = { state: 'running'; progress?: RunProgress } | { state: 'ended'; status: string } | { state: 'missing' };
type Page = { status: number; title: string; text: string };

/** The run the link was made for (never a later run with the same workflow id). */
const runOf = (client: Client, claim: ApprovalClaim) => client.workflow.getHandle(claim.workflowId, claim.runId);
/** Where a decision came from, as the run records it. */
const originOf = (req: IncomingMessage, who: string | false) => `gateway, from ${req.socket.remoteAddress ?? 'unknown'}${who ? `, signed in as ${who}` : ''}`;

async function viewRun(client: Client, claim: ApprovalClaim, ask = true): Promise<RunView> {
  const handle = runOf(client, claim);
  try {
    const description = await handle.describe();
    if (description.status.name !== 'RUNNING') return { state: 'ended', status: description.status.name };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'missing' };
    throw err;
  }
  // Without a running worker the query cannot be answered; the signal still lands durably.
  if (!ask) return { state: 'running' };
  const progress = await client.connection.withDeadline(Date.now() + 5_000, () => handle.query(progressQuery)).catch(() => undefined);
  return { state: 'running', progress };
}

/**
 * The latest decision sent with this link, from the run's history, or undefined. A link is used once,
 * whatever its outcome — once per version of a gate's content (`fingerprint`): a decision for a
 * version that then changed decided nothing, and the same link decides on the new version.
 */
async function linkUse(client: Client, claim: ApprovalClaim): Promise<{ decision: 'approve' | 'reject'; at: string; origin?: string; fingerprint?: string } | undefined> {
  let history;
  try {
    history = await runOf(client, claim).fetchHistory();
  } catch (err) {
    // No such run: nothing was used; viewRun says what the link points at. (fetchHistory answers gRPC NOT_FOUND, code 5.)
    if (err instanceof WorkflowNotFoundError || (err as { code?: unknown }).code === 5) return undefined;
    throw err;
  }
  let latest: { decision: 'approve' | 'reject'; at: string; origin?: string; fingerprint?: string } | undefined;
  // An update counts as a use once the run answered it: one the run ended under (accepted, never completed) decided nothing.
  const answered = new Set((history.events ?? []).map((e) => e.workflowExecutionUpdateCompletedEventAttributes)
    .filter((c) => c?.outcome?.success).map((c) => c!.meta?.updateId));
  for (const e of history.events ?? []) {
    // A decision came as a signal, or as a decideGate update the run accepted and answered (a refused one left no event).
    const signaled = e.workflowExecutionSignaledEventAttributes;
    const accepted = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
    const updated = accepted && answered.has(accepted.meta?.updateId) ? accepted.input : undefined;
    let kind: 'approve' | 'reject' | undefined;
    let payload: Payload | undefined;
    if (signaled && (signaled.signalName === approveSignal.name || signaled.signalName === rejectSignal.name)) {
      kind = signaled.signalName === approveSignal.name ? 'approve' : 'reject';
      payload = signaled.input?.payloads?.[0] as Payload;
    } else if (updated?.name === decideGateUpdate.name) {
      payload = updated.args?.payloads?.[0] as Payload;
    } else continue;
    let decision: GateDecision | undefined;
    try { decision = defaultPayloadConverter.fromPayload<GateDecision>(payload); } catch { continue; }
    if (typeof decision !== 'object' || !decision || decision.linkId !== claim.linkId) continue;
    kind ??= decision.decision === 'reject' ? 'reject' : 'approve';
    const seconds = Number(e.eventTime?.seconds ?? 0);
    latest = {
      decision: kind,
      at: new Date(seconds * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6)).toISOString(),
      origin: typeof decision.origin === 'string' ? decision.origin : undefined,
      fingerprint: typeof decision.fingerprint === 'string' ? decision.fingerprint : undefined,
    };
  }
  return latest;
}

/**
 * A gate bound to content (a draft a reviewer may edit elsewhere): the run reads it again and
 * answers with the gate as it is now (a Workflow Update, so a refused look leaves no trace). Undefined
 * when the run cannot answer within a few seconds (no worker): the page then shows the gate as last read.
 */
async function lookAgain(client: Client, claim: ApprovalClaim, gate: GateProgress | undefined): Promise<GateProgress | undefined> {
  if (!gate?.fingerprint || gate.state !== 'open') return gate;
  return client.connection.withDeadline(Date.now() + 5_000, () => runOf(client, claim).executeUpdate(reviewGateUpdate, { args: [{ gate: claim.gate, nonce: claim.nonce }] }))
    .catch(() => undefined);
}

/** How the run took a decision sent as a decideGate update. */
type FastDecision =
  | { kind: 'answered'; answer: DecisionAnswer }
  /** The run refused it without a trace (it could not count): the page says why, nothing is sent. */
  | { kind: 'refused'; reason: string }
  /** No answer in time (no worker), no such run, or a run whose code predates the update: the signal path decides what to do. */
  | { kind: 'noAnswer'; silent: boolean };

/** The decision as a Workflow Update: the run judges it and answers in the same call (one round trip, no polling). */
async function decideNow(client: Client, claim: ApprovalClaim, decision: GateDecision, timeoutMs: number): Promise<FastDecision> {
  try {
    const answer = await client.connection.withDeadline(Date.now() + timeoutMs, () => runOf(client, claim).executeUpdate(decideGateUpdate, { args: [decision] }));
    return { kind: 'answered', answer };
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      const reason = err.cause?.message ?? err.message;
      // A run of a build from before decideGate: it takes the decision as a signal.
      if (/No registered handler for update/.test(reason)) return { kind: 'noAnswer', silent: false };
      // The run ended (or continued as new) before it answered: what the link points at now decides the page.
      if (/completed before the Update completed/i.test(reason)) return { kind: 'noAnswer', silent: false };
      return { kind: 'refused', reason };
    }
    if (err instanceof WorkflowNotFoundError || (err as { code?: unknown }).code === 5) return { kind: 'noAnswer', silent: false };
    return { kind: 'noAnswer', silent: true };
  }
}

export const staleDraft = 'The draft changed since you opened this page';
const staleNotice = (fingerprint: string | undefined) => `${staleDraft}${fingerprint ? '' : ' (the form carried no version)'}. Nothing was counted. ` +
  'Below is the version the run holds now: read it, then decide on it.';

/** Why a link cannot decide now, or undefined when it can. */
function refusal(view: RunView, claim: ApprovalClaim): Page | undefined {
  if (view.state === 'missing') return { status: 404, title: 'No such run', text: `There is no run ${claim.runId} of ${claim.workflowId}. Nothing was sent.` };
  if (view.state === 'ended') {
    return { status: 410, title: 'The run has ended', text: `Run ${claim.runId} of ${claim.workflowId} has ended (${view.status}). ` +
      'This link was made for that run only: a later run with the same workflow id does not accept it. Nothing was sent.' };
  }
  const gate = view.progress?.approvals.find((g) => g.gate === claim.gate);
  if (!view.progress) return undefined;
  if (!gate) return { status: 409, title: 'Gate not open', text: `The gate "${claim.gate}" of ${view.progress.title} is not open. Nothing was sent.` };
  if (gate.nonce !== claim.nonce) {
    return { status: 409, title: 'Link for another gate', text: `This link was made for another opening of the gate "${claim.gate}". Nothing was sent; ask for a new link.` };
  }
  if (gate.state !== 'open') {
    const who = gate.state === 'approved' ? ` by ${gate.approvedBy.join(', ')}` : gate.state === 'rejected' ? ` by ${gate.rejectedBy}: ${gate.reason}` : '';
    return { status: 409, title: 'Already decided', text: `The gate "${claim.gate}" is already decided: ${gate.state}${who}. Nothing was sent.` };
  }
  return undefined;
}

const maxFormBytes = 16_384;

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  if (Number(req.headers['content-length'] ?? 0) > maxFormBytes) throw new AnswerTooLarge(`form larger than ${sizeOf(maxFormBytes)}`);
  return new URLSearchParams(await readLimited(req, maxFormBytes));
}

export const securityHeaders = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // The token is in the URL: it must not leak to another site through Referer, or stay in a cache.
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

export function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { client, secret, oidc } = opts;
  /** Where the inbox's links point: the public base URL, else this gateway's own address. */
  let ownUrl = '';
  const baseUrl = () => opts.baseUrl || approvalBaseUrl(ownUrl);
  /** Links being decided right now: a double click does not send two signals. */
  const inFlight = new Set<string>();
  const send = (res: ServerResponse, status: number, html: string, extra: Record<string, string | string[]> = {}) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...securityHeaders, ...extra });
    res.end(html);
  };
  const sendPage = (res: ServerResponse, p: Page) => send(res, p.status, message(p.title, p.text, 'bad'));

  /** With sign-in on: the signed-in person's label, or the redirect / refusal already sent (undefined); false when sign-in is off. */
  async function signedIn(req: IncomingMessage, res: ServerResponse, approver: string, what: string): Promise<string | undefined | false> {
    if (!oidc) return false;
    const who = oidc.identity(req);
    if (!who) {
      if (req.method === 'GET') {
        const { location, cookie } = await oidc.begin(req.url ?? '/');
        res.writeHead(302, { ...securityHeaders, location, 'set-cookie': cookie });
        res.end();
      } else {
        sendPage(res, { status: 403, title: 'Sign in first', text: `Deciding needs you signed in as ${approver}. Open your link again to sign in. Nothing was sent.` });
      }
      return undefined;
    }
    if (!oidc.isApprover(who, approver)) {
      sendPage(res, { status: 403, title: 'Not your link', text: `This ${what} is for ${approver}, and you are signed in as ${who.label}. A link decides only for the person it names: ask for your own. Nothing was sent.` });
      return undefined;
    }
    return who.label;
  }

  /** The run's page in the Temporal UI, when APPROVAL_UI_URL is set. */
  const runUrl = (workflowId: string, runId: string) => opts.uiUrl
    ? `${opts.uiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(client.options.namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}`
    : undefined;

  /** A link opened again: how it was used, by whom, when, with what outcome, and the run now (a GET is 200: it only shows; a POST is 409: nothing sent). */
  async function showUsed(req: IncomingMessage, res: ServerResponse, claim: ApprovalClaim, used: NonNullable<Awaited<ReturnType<typeof linkUse>>>): Promise<void> {
    const handle = runOf(client, claim);
    const runState = (await handle.describe()).status.name;
    // A closed run still answers its query while a worker runs; without one the outcome is left out.
    const p = await client.connection.withDeadline(Date.now() + 3_000, () => handle.query(progressQuery)).catch(() => undefined);
    const d = p?.decisions.find((x) => x.linkId === claim.linkId);
    const signedInAs = /signed in as .*/.exec(used.origin ?? '')?.[0];
    send(res, req.method === 'POST' ? 409 : 200, usedLinkPage({
      claim, decision: used.decision, at: used.at, signedInAs, runState, runUrl: runUrl(claim.workflowId, claim.runId),
      outcome: d ? { counted: d.outcome === 'accepted', note: d.note, gate: p?.approvals.find((g) => g.gate === claim.gate) } : undefined,
    }));
  }

  async function decide(req: IncomingMessage, res: ServerResponse, token: string, claim: ApprovalClaim, form?: URLSearchParams): Promise<void> {
    const who = await signedIn(req, res, claim.approver, 'link');
    if (who === undefined) return;
    const decision = form?.get('decision');
    const reason = (form?.get('reason') ?? '').trim().slice(0, 2000) || undefined;
    const fingerprint = form?.get('fp')?.slice(0, 100) || undefined;
    let refusedWhy: string | undefined;
    let workerSilent = false;
    if (form) {
      if (decision !== 'approve' && decision !== 'reject') return send(res, 400, message('Choose a decision', 'Press Approve or Reject. Nothing was sent.', 'bad'));
      if (decision === 'reject' && !reason) return send(res, 400, message('A reason is needed', 'Say why you reject, then press Reject again. Nothing was sent.', 'bad'));
      // The run judges the decision and answers at once; only when it cannot (no worker, an older
      // build, an ended run) does the gateway look at the run itself and fall back to the signal.
      opts.metrics?.decisionSent(res, decision);
      const fast = await decideNow(client, claim, {
        decision, gate: claim.gate, by: claim.approver, reason, via: 'link', linkId: claim.linkId, nonce: claim.nonce, origin: originOf(req, who), ...(fingerprint ? { fingerprint } : {}),
      }, opts.confirmTimeoutMs ?? 5_000);
      if (fast.kind === 'answered') return answered(res, token, claim, { decision, reason, fingerprint, who }, fast.answer);
      if (fast.kind === 'refused') {
        refusedWhy = fast.reason;
        // Refused decisions leave no trace in the run: the gateway's log keeps them.
        log('warn', 'decision refused by the run', { workflowId: claim.workflowId, gate: claim.gate, approver: claim.approver, decision, reason: refusedWhy });
      }
      else workerSilent = fast.silent;
    }
    // A used link says how it was used, even after the run ended; one used on a version of a draft
    // that has changed since may decide again, on the new version.
    const used = await linkUse(client, claim);
    if (used && !used.fingerprint) return showUsed(req, res, claim, used);
    const view = await viewRun(client, claim, !workerSilent);
    if (used && view.state !== 'running') return showUsed(req, res, claim, used);
    const refused = refusal(view, claim);
    if (refused) return sendPage(res, refused);

    const progress = (view as { progress?: RunProgress }).progress;
    // A page or an approval of content: the run reads the content again first (a reviewer may have edited it).
    const shown = progress?.approvals.find((g) => g.gate === claim.gate);
    const gate = (!form || (decision === 'approve' && !workerSilent)) ? await lookAgain(client, claim, shown) ?? shown : shown;
    if (used && (gate?.state !== 'open' || gate.fingerprint === used.fingerprint)) return showUsed(req, res, claim, used);
    if (gate && gate.state !== 'open') return sendPage(res, refusal({ state: 'running', progress: { ...progress!, approvals: [gate] } }, claim)!);
    const formPage = (g: GateProgress, notice?: string) => approvalForm({
      token, workflowId: claim.workflowId, approver: claim.approver, expiresAt: claim.exp, gate: g, progress: progress!, signedInAs: who || undefined, notice,
    });

    if (!form) {
      if (!progress || !gate) return send(res, 200, blindApprovalForm(token, claim));
      return send(res, 200, formPage(gate));
    }

    if (decision !== 'approve' && decision !== 'reject') return;
    if (decision === 'approve' && gate?.fingerprint && fingerprint !== gate.fingerprint) return send(res, 409, formPage(gate, staleNotice(fingerprint)));
    if (refusedWhy) return send(res, 409, message('Not counted', `The run did not take your ${decision}: ${refusedWhy}. Nothing was recorded.`, 'bad'));
    await runOf(client, claim).signal(decision === 'approve' ? approveSignal : rejectSignal, {
      gate: claim.gate, by: claim.approver, reason, via: 'link', linkId: claim.linkId, nonce: claim.nonce, origin: originOf(req, who), ...(fingerprint ? { fingerprint } : {}),
    });
    // No worker answered the update just now: the run counts the signal when it resumes.
    const recorded = workerSilent ? undefined : await confirm(client, claim, fingerprint, opts.confirmTimeoutMs ?? 5_000);
    if (!recorded) return send(res, 202, message('Decision sent', `Your ${decision} of "${claim.gate}" was sent. The runbook counts it when it resumes, if the gate is still open then.`, 'info'));
    if (recorded.outcome === 'ignored' && recorded.note?.startsWith(staleDraft.toLowerCase()) && recorded.gate?.state === 'open') {
      return send(res, 409, formPage(recorded.gate, staleNotice(fingerprint)));
    }
    if (recorded.outcome === 'ignored') return send(res, 409, message('Not counted', `Your ${decision} was recorded but not counted: ${recorded.note}.`, 'bad'));
    return send(res, 200, decidedPage({ decision, approver: claim.approver, gateName: claim.gate, gate: recorded.gate, reason, runUrl: runUrl(claim.workflowId, claim.runId), version: fingerprint }));
  }

  /** The run's own answer to a decision: counted (the decided page), or why not. */
  async function answered(res: ServerResponse, token: string, claim: ApprovalClaim, sent: { decision: 'approve' | 'reject'; reason?: string; fingerprint?: string; who: string | false },
    answer: DecisionAnswer): Promise<void> {
    const { decision, reason, fingerprint, who } = sent;
    if (answer.outcome === 'accepted') {
      return send(res, 200, decidedPage({ decision, approver: claim.approver, gateName: claim.gate, gate: answer.gate, reason, runUrl: runUrl(claim.workflowId, claim.runId), version: fingerprint }));
    }
    if (answer.note?.startsWith(staleDraft.toLowerCase()) && answer.gate?.state === 'open') {
      // The draft changed under the page: show the version the run holds now, to decide on it.
      const progress = await client.connection.withDeadline(Date.now() + 3_000, () => runOf(client, claim).query(progressQuery)).catch(() => undefined);
      if (progress) {
        return send(res, 409, approvalForm({
          token, workflowId: claim.workflowId, approver: claim.approver, expiresAt: claim.exp, gate: answer.gate, progress, signedInAs: who || undefined, notice: staleNotice(fingerprint),
        }));
      }
    }
    return send(res, 409, message('Not counted', `Your ${decision} was recorded but not counted: ${answer.note}.`, 'bad'));
  }

  /** GET /: every run waiting for a person, for an approver (their inbox link) or an operator (the inbox token). */
  async function inbox(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const given = url.searchParams.get('t') ?? (/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]) ?? '';
    const operator = Boolean(opts.inboxToken && given && safeEqual(given, opts.inboxToken));
    let approver: string | undefined;
    if (!operator) {
      const verified = verifyInbox(given, secret);
      if (!verified.ok) {
        return send(res, given ? 403 : 401, message('Approvals inbox', given
          ? `This inbox link cannot be used: ${verified.reason}. Ask for a new one (npm run runbook -- inbox-link --for <you>).`
          : 'Open the inbox with your personal inbox link (npm run runbook -- inbox-link --for <you>), or as an operator with the inbox token.', 'bad'));
      }
      approver = verified.claim.approver;
      if ((await signedIn(req, res, approver, 'inbox')) === undefined) return;
    }
    const { rows, unreadable } = await waitingGates(client, approver);
    const now = Date.now() / 1000;
    for (const r of rows) {
      if (approver) {
        r.link = approvalUrl({ workflowId: r.workflowId, runId: r.runId, gate: r.gate.gate, nonce: r.gate.nonce, approver, exp: linkExpiry(3600, Date.parse(r.gate.deadline) / 1000, now) }, secret, baseUrl());
      } else {
        r.uiUrl = runUrl(r.workflowId, r.runId);
      }
    }
    send(res, 200, inboxPage({ approver, operator }, rows, unreadable));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    if (url.pathname === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain', ...securityHeaders }); res.end('ok'); return; }
    if (url.pathname === '/' && req.method === 'GET') return inbox(req, res, url);
    if (url.pathname === '/oidc/callback' && oidc && req.method === 'GET') {
      try {
        const done = await oidc.finish(req);
        res.writeHead(303, { ...securityHeaders, location: done.next, 'set-cookie': done.cookies });
        res.end();
      } catch (err) {
        if (!(err instanceof SignInError)) throw err;
        sendPage(res, { status: 403, title: 'Sign-in failed', text: `${err.message} Nothing was sent.` });
      }
      return;
    }
    if (url.pathname !== '/approve') return send(res, 404, message('Not found', 'This address is not an approval link.', 'bad'));
    if (req.method !== 'GET' && req.method !== 'POST') return send(res, 405, message('Method not allowed', 'Use the link, then the buttons.', 'bad'), { allow: 'GET, POST' });

    let form: URLSearchParams | undefined;
    try {
      form = req.method === 'POST' ? await readForm(req) : undefined;
    } catch (err) {
      if (!(err instanceof AnswerTooLarge)) throw err;
      return send(res, 413, message('Too large', 'The form is larger than an approval can be. Nothing was sent.', 'bad'), { connection: 'close' });
    }
    const token = (form ? form.get('t') : url.searchParams.get('t')) ?? '';
    const verified = verifyApproval(token, secret);
    if (!verified.ok && verified.expired) return send(res, 410, expiredPage(verified.expired));
    if (!verified.ok) return send(res, 403, message('Link refused', `This approval link cannot be used: ${verified.reason}. Nothing was sent. Ask for a new link.`, 'bad'));
    const { claim } = verified;
    if (form) {
      if (inFlight.has(claim.linkId)) return sendPage(res, { status: 409, title: 'Already being decided', text: 'This link is being used right now; a link decides once. Nothing more was sent.' });
      inFlight.add(claim.linkId);
    }
    try {
      await decide(req, res, token, claim, form);
    } finally {
      if (form) inFlight.delete(claim.linkId);
    }
  }

  const server = createServer((req, res) => {
    opts.metrics?.observe(req, res);
    handle(req, res).catch((err) => {
      log('error', 'Approval request failed', { error: String(err) });
      if (!res.headersSent) send(res, 502, message('Could not reach the runbook', 'Temporal did not answer; nothing may have been sent. Try again in a minute.', 'bad'));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8240, opts.host ?? '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      ownUrl = `http://${opts.host ?? '127.0.0.1'}:${port}`;
      resolve({ url: `http://${opts.host ?? '127.0.0.1'}:${port}`, server, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

const safeEqual = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** Runs read for the inbox at most; the page says when there are more. */
const inboxLimit = 200;

/** The open gates of every run waiting for a person (a visibility query, then each run's progress); for an approver, those they may decide. */
export async function waitingGates(client: Client, approver?: string): Promise<{ rows: Array<InboxRow & { runId: string }>; unreadable: string[] }> {
  const runs: Array<{ workflowId: string; runId: string }> = [];
  for await (const w of client.workflow.list({ query: `${RunbookStatus.name} = "waiting_for_approval" AND ExecutionStatus = "Running"` })) {
    runs.push({ workflowId: w.workflowId, runId: w.runId });
    if (runs.length >= inboxLimit) break;
  }
  const rows: Array<InboxRow & { runId: string }> = [];
  const unreadable: string[] = [];
  const mayDecide = (g: GateProgress, requestedBy?: string) => !approver || (
    (!g.approvers || g.approvers.some((a) => sameApprover(a, approver))) && !g.approvedBy.some((a) => sameApprover(a, approver))
    && !(g.fourEyes && (g.requestedBy ?? requestedBy) && sameApprover((g.requestedBy ?? requestedBy)!, approver)));
  for (let i = 0; i < runs.length; i += 8) {
    await Promise.all(runs.slice(i, i + 8).map(async (r) => {
      const handle = client.workflow.getHandle(r.workflowId, r.runId);
      const p = await client.connection.withDeadline(Date.now() + 3_000, () => handle.query(progressQuery)).catch(() => undefined);
      if (!p?.approvals) { unreadable.push(r.workflowId); return; }
      for (const g of p.approvals) {
        if (g.state === 'open' && mayDecide(g, p.requestedBy)) rows.push({ ...r, runbook: p.runbook, title: p.title, gate: g });
      }
    }));
  }
  rows.sort((a, b) => Date.parse(a.gate.openedAt) - Date.parse(b.gate.openedAt));
  return { rows, unreadable };
}

async function confirm(client: Client, claim: ApprovalClaim, fingerprint: string | undefined, timeoutMs: number) {
  const handle = runOf(client, claim);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const p = await client.connection.withDeadline(Date.now() + 2_000, () => handle.query(progressQuery)).catch(() => undefined);
    const d = p?.decisions.find((x) => x.linkId === claim.linkId && x.fingerprint === fingerprint);
    if (d) return { outcome: d.outcome, note: d.note, gate: p?.approvals.find((g) => g.gate === claim.gate) };
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

/** A development secret kept under the state directory (0600), made once. Production must set APPROVAL_SECRET. */
export function devApprovalSecret(stateDir: string, name = 'approval-secret'): string {
  const file = path.join(stateDir, name);
  if (!existsSync(file)) {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
  }
  return readFileSync(file, 'utf8').trim();
}

/**
 * The key of the sign-in cookies: the gateway's own. Workers and the CLI hold APPROVAL_SECRET to sign
 * links; whoever holds the cookie key can write "signed in as anyone", so it must be another secret that
 * only the gateway reads: APPROVAL_COOKIE_SECRET (or _FILE), else in development one generated into the
 * gateway's state directory. In production it must be set, and differ from APPROVAL_SECRET.
 */
export function gatewayCookieSecret(linkSecret: string, env = process.env): string {
  const file = env.APPROVAL_COOKIE_SECRET_FILE;
  const given = env.APPROVAL_COOKIE_SECRET || (file && existsSync(file) ? readFileSync(file, 'utf8').trim() : '');
  if (given) {
    if (given.length < 32) throw new Error('APPROVAL_COOKIE_SECRET must be 32 characters or more');
    if (given === linkSecret) throw new Error('APPROVAL_COOKIE_SECRET must differ from APPROVAL_SECRET: workers and the CLI hold APPROVAL_SECRET, and with it they could sign anyone in');
    return given;
  }
  if (env.RUNBOOKS_ENV === 'production') {
    throw new Error('APPROVAL_COOKIE_SECRET (32+ characters, not APPROVAL_SECRET) is not set: in production the gateway signs approvers in with a key only it holds');
  }
  return devApprovalSecret(env.RUNBOOKS_STATE_DIR || path.resolve(__dirname, '../.temporal'), 'approval-cookie-secret');
}

async function main(): Promise<void> {
  let secret = approvalSecret();
  if (!secret) {
    if (process.env.RUNBOOKS_ENV === 'production') {
      throw new Error('APPROVAL_SECRET (32+ characters) is not set: in production the approval gateway will not start without it');
    }
    secret = devApprovalSecret(process.env.RUNBOOKS_STATE_DIR || path.resolve(__dirname, '../.temporal'));
  }
  const settings = oidcSettingsFromEnv(process.env, (text) => log('warn', text));
  if (!settings && process.env.RUNBOOKS_ENV === 'production' && process.env.APPROVAL_OIDC !== 'off') {
    throw new Error('In production approvers sign in before a link decides: set APPROVAL_OIDC_ISSUER, APPROVAL_OIDC_CLIENT_ID and APPROVAL_OIDC_CLIENT_SECRET ' +
      '(or APPROVAL_OIDC=off to run without sign-in, knowing that whoever holds a link decides)');
  }
  const cookieSecret = settings && gatewayCookieSecret(secret);
  const inboxToken = process.env.APPROVAL_INBOX_TOKEN;
  if (inboxToken !== undefined && inboxToken.length < 32) throw new Error('APPROVAL_INBOX_TOKEN must be 32 characters or more');
  const client = await connectClient();
  const monitoring = await startGatewayMetrics(client);
  const gateway = await startGateway({
    client, secret, host: process.env.APPROVAL_HOST, port: Number(process.env.APPROVAL_PORT || 8240),
    inboxToken, uiUrl: process.env.APPROVAL_UI_URL, oidc: settings && cookieSecret ? await OidcSignIn.create(settings, cookieSecret) : undefined, metrics: monitoring?.metrics,
  });
  log('info', 'Approval gateway ready', {
    url: gateway.url, signIn: settings ? settings.issuer : 'off', identity: settings ? (settings.identity.kind === 'claim' ? settings.identity.claim : 'iss+sub') : undefined,
    metricsUrl: monitoring && `${monitoring.url}/metrics`, pid: process.pid,
  });
  const stop = () => { void monitoring?.close(); gateway.close().then(() => process.exit(0)); setTimeout(() => process.exit(0), 3_000).unref(); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`Approval gateway failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
