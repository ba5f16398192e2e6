/**
 * The approval gateway: turns signed approval links into `approve` / `reject` signals.
 * GET shows what is being approved (link scanners that follow GET links decide nothing);
 * only POST sends the signal. Forged, altered or expired links get a 403 and send nothing.
 *
 * Env: APPROVAL_SECRET (or APPROVAL_SECRET_FILE), APPROVAL_BASE_URL, APPROVAL_PORT (8240),
 * APPROVAL_HOST (127.0.0.1), RUNBOOKS_ENV=production to refuse a generated secret.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import path from 'node:path';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { approvalSecret, verifyApproval, type ApprovalClaim } from '../activities/lib/approval-token';
import { approveSignal, progressQuery, rejectSignal, type Progress } from '../workflows/kit/messages';
import { approvalForm, blindApprovalForm, message } from './approval-pages';
import { connectClient } from './connection';

export interface GatewayOptions {
  client: Client;
  secret: string;
  host?: string;
  port?: number;
  /** How long to wait for the run to record a decision before answering. */
  confirmTimeoutMs?: number;
}

export interface Gateway {
  url: string;
  server: Server;
  close(): Promise<void>;
}

type RunView = { state: 'running'; progress?: Progress } | { state: 'ended'; status: string } | { state: 'missing' };

async function viewRun(client: Client, workflowId: string): Promise<RunView> {
  const handle = client.workflow.getHandle(workflowId);
  try {
    const description = await handle.describe();
    if (description.status.name !== 'RUNNING') return { state: 'ended', status: description.status.name };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'missing' };
    throw err;
  }
  // Without a running worker the query cannot be answered; the signal still lands durably.
  const progress = await client.connection.withDeadline(Date.now() + 5_000, () => handle.query(progressQuery)).catch(() => undefined);
  return { state: 'running', progress };
}

/** Why a link cannot decide now, or undefined when it can. */
function refusal(view: RunView, claim: ApprovalClaim): { status: number; title: string; text: string } | undefined {
  if (view.state === 'missing') return { status: 404, title: 'No such run', text: `There is no run ${claim.workflowId}.` };
  if (view.state === 'ended') return { status: 410, title: 'The run has ended', text: `Run ${claim.workflowId} has ended (${view.status}); there is nothing left to approve.` };
  const p = view.progress;
  if (!p) return undefined;
  const gate = p.approvals.find((g) => g.gate === claim.gate);
  if (!gate) return { status: 409, title: 'Gate not open', text: `The gate "${claim.gate}" of ${p.title} is not open yet; nothing was sent. Open the link again when the run reaches it.` };
  if (gate.state !== 'open') {
    const who = gate.state === 'approved' ? ` by ${gate.approvedBy.join(', ')}` : gate.state === 'rejected' ? ` by ${gate.rejectedBy}: ${gate.reason}` : '';
    return { status: 409, title: 'Already decided', text: `The gate "${claim.gate}" is already decided: ${gate.state}${who}. Nothing was sent.` };
  }
  if (p.decisions.some((d) => d.linkId === claim.linkId && d.outcome !== 'ignored')) {
    return { status: 409, title: 'Already decided', text: 'This link was already used; nothing was sent.' };
  }
  return undefined;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16_384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

export function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { client, secret } = opts;
  const send = (res: ServerResponse, status: number, html: string) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' });
    res.end(html);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    if (url.pathname === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); return; }
    if (url.pathname !== '/approve') return send(res, 404, message('Not found', 'This address is not an approval link.', 'bad'));
    if (req.method !== 'GET' && req.method !== 'POST') { res.setHeader('allow', 'GET, POST'); return send(res, 405, message('Method not allowed', 'Use the link, then the buttons.', 'bad')); }

    const form = req.method === 'POST' ? await readForm(req) : undefined;
    const token = (form ? form.get('t') : url.searchParams.get('t')) ?? '';
    const verified = verifyApproval(token, secret);
    if (!verified.ok) return send(res, 403, message('Link refused', `This approval link cannot be used: ${verified.reason}. Nothing was sent. Ask for a new link.`, 'bad'));
    const { claim } = verified;

    const view = await viewRun(client, claim.workflowId);
    const refused = refusal(view, claim);
    if (refused) return send(res, refused.status, message(refused.title, refused.text, 'bad'));

    if (!form) {
      const progress = (view as { progress?: Progress }).progress;
      const gate = progress?.approvals.find((g) => g.gate === claim.gate);
      if (!progress || !gate) return send(res, 200, blindApprovalForm(token, claim.workflowId, claim.gate, claim.approver));
      return send(res, 200, approvalForm({ token, workflowId: claim.workflowId, approver: claim.approver, gate, progress }));
    }

    const decision = form.get('decision');
    const reason = (form.get('reason') ?? '').trim() || undefined;
    if (decision !== 'approve' && decision !== 'reject') return send(res, 400, message('Choose a decision', 'Press Approve or Reject.', 'bad'));
    if (decision === 'reject' && !reason) return send(res, 400, message('A reason is needed', 'Say why you reject, then press Reject again. Nothing was sent.', 'bad'));
    const handleWf = client.workflow.getHandle(claim.workflowId);
    await handleWf.signal(decision === 'approve' ? approveSignal : rejectSignal, { gate: claim.gate, by: claim.approver, reason, linkId: claim.linkId, via: 'link' });
    const recorded = await confirm(client, claim, opts.confirmTimeoutMs ?? 5_000);
    if (!recorded) return send(res, 202, message('Decision sent', `Your ${decision} of "${claim.gate}" was sent. The runbook will count it when it resumes.`));
    if (recorded.outcome === 'ignored') return send(res, 409, message('Not counted', `Your ${decision} was recorded but not counted: ${recorded.note}.`, 'bad'));
    const gate = recorded.gate;
    return send(res, 200, message(decision === 'approve' ? 'Approved' : 'Rejected',
      decision === 'approve'
        ? `Thank you, ${claim.approver}. Approvals: ${gate?.approvedBy.length ?? '?'} of ${gate?.quorum ?? '?'}; the gate is ${gate?.state ?? 'open'}.`
        : `Rejected by ${claim.approver}: ${reason}. The runbook stops this step.`));
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      process.stderr.write(`${JSON.stringify({ level: 'ERROR', message: 'approval request failed', error: String(err) })}\n`);
      if (!res.headersSent) send(res, 502, message('Could not reach the runbook', 'Temporal did not answer; nothing may have been sent. Try again in a minute.', 'bad'));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8240, opts.host ?? '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({ url: `http://${opts.host ?? '127.0.0.1'}:${port}`, server, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

async function confirm(client: Client, claim: ApprovalClaim, timeoutMs: number) {
  const handle = client.workflow.getHandle(claim.workflowId);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const p = await client.connection.withDeadline(Date.now() + 2_000, () => handle.query(progressQuery)).catch(() => undefined);
    const d = p?.decisions.find((x) => x.linkId === claim.linkId && x.outcome !== 'pending');
    if (d) return { outcome: d.outcome, note: d.note, gate: p?.approvals.find((g) => g.gate === claim.gate) };
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

/** A development secret kept under the state directory (0600), made once. Production must set APPROVAL_SECRET. */
export function devApprovalSecret(stateDir: string): string {
  const file = path.join(stateDir, 'approval-secret');
  if (!existsSync(file)) {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
  }
  return readFileSync(file, 'utf8').trim();
}

async function main(): Promise<void> {
  let secret = approvalSecret();
  if (!secret) {
    if (process.env.RUNBOOKS_ENV === 'production') {
      throw new Error('APPROVAL_SECRET (32+ characters) is not set: in production the approval gateway will not start without it');
    }
    secret = devApprovalSecret(process.env.RUNBOOKS_STATE_DIR || path.resolve(__dirname, '../.temporal'));
  }
  const gateway = await startGateway({ client: await connectClient(), secret, host: process.env.APPROVAL_HOST, port: Number(process.env.APPROVAL_PORT || 8240) });
  process.stdout.write(`${JSON.stringify({ level: 'INFO', message: 'Approval gateway ready', url: gateway.url, pid: process.pid })}\n`);
  const stop = () => { gateway.close().then(() => process.exit(0)); setTimeout(() => process.exit(0), 3_000).unref(); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`Approval gateway failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
