/**
 * Signed approval links. A token binds ONE gate opening of ONE run: the workflow id, the run id,
 * the gate, the nonce the gate drew when it opened, the approver, an expiry and a link id (so a
 * link counts once). HMAC-SHA256, verified in constant time. The token is a credential: only the
 * approval-request channels and the operator's `runbook -- link` ever see it, never a run's history.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { maxLinkTtlSeconds } from '../../contracts/input';

export { maxLinkTtlSeconds };

export interface ApprovalClaim {
  workflowId: string;
  /** The run the gate belongs to: a later run with the same workflow id does not accept the link. */
  runId: string;
  gate: string;
  /** Drawn by the gate when it opened: the link is good for that opening only. */
  nonce: string;
  approver: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Unique per link: the gateway and the run count a link once, whatever its outcome. */
  linkId: string;
}

/** A refused link; `expired` carries the claim of a genuine link that only expired, so the page can say what it was for. */
export type Verification = { ok: true; claim: ApprovalClaim } | { ok: false; reason: string; expired?: ApprovalClaim };

const version = 2;

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const sign = (payload: string, secret: string) => createHmac('sha256', secret).update(payload).digest();

export function signApproval(claim: Omit<ApprovalClaim, 'linkId'> & { linkId?: string }, secret: string): string {
  const c: ApprovalClaim = { ...claim, linkId: claim.linkId ?? randomBytes(9).toString('base64url') };
  const payload = b64(JSON.stringify([version, c.workflowId, c.runId, c.gate, c.nonce, c.approver, c.exp, c.linkId]));
  return `${payload}.${b64(sign(payload, secret))}`;
}

/** The signed fields of a token, or why it is refused (bad shape, bad signature). */
function opened(token: string, secret: string): { fields: unknown[] } | { reason: string } {
  const malformed = { reason: 'the link is malformed' };
  const [payload, mac, extra] = String(token ?? '').split('.');
  if (!payload || !mac || extra !== undefined) return malformed;
  const expected = sign(payload, secret);
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { reason: 'the link signature is not valid' };
  let fields: unknown;
  try { fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')); } catch { return malformed; }
  return Array.isArray(fields) ? { fields } : malformed;
}

export function verifyApproval(token: string, secret: string, nowSeconds = Date.now() / 1000): Verification {
  const open = opened(token, secret);
  if ('reason' in open) return { ok: false, reason: open.reason };
  const { fields } = open;
  const malformed: Verification = { ok: false, reason: 'the link is malformed' };
  if (fields.length !== 8 || fields[0] !== version) return malformed;
  const [, workflowId, runId, gate, nonce, approver, exp, linkId] = fields as [number, ...string[]];
  if (![workflowId, runId, gate, nonce, approver, linkId].every((f) => typeof f === 'string' && f)) return malformed;
  if (typeof exp !== 'number') return malformed;
  const claim = { workflowId, runId, gate, nonce, approver, exp, linkId };
  if (!(exp > nowSeconds)) return { ok: false, reason: 'the link has expired', expired: claim };
  return { ok: true, claim };
}

/** An approver's inbox link: every gate waiting for them, for a while. Signed like approval links, but never accepted as one. */
export interface InboxClaim { approver: string; exp: number }

const inboxTag = 'inbox-1';

export function signInbox(claim: InboxClaim, secret: string): string {
  const payload = b64(JSON.stringify([inboxTag, claim.approver, Math.floor(claim.exp)]));
  return `${payload}.${b64(sign(payload, secret))}`;
}

export function verifyInbox(token: string, secret: string, nowSeconds = Date.now() / 1000): { ok: true; claim: InboxClaim } | { ok: false; reason: string } {
  const open = opened(token, secret);
  if ('reason' in open) return { ok: false, reason: open.reason };
  const [tag, approver, exp] = open.fields;
  if (open.fields.length !== 3 || tag !== inboxTag || typeof approver !== 'string' || !approver || typeof exp !== 'number') return { ok: false, reason: 'the link is not an inbox link' };
  if (!(exp > nowSeconds)) return { ok: false, reason: 'the link has expired' };
  return { ok: true, claim: { approver, exp } };
}

export function inboxUrl(claim: InboxClaim, secret: string, base = approvalBaseUrl()): string {
  return `${trimmed(base)}/?t=${signInbox(claim, secret)}`;
}

/** The gateway's secret (APPROVAL_SECRET, or the file APPROVAL_SECRET_FILE), 32 characters at least. In development start.sh generates one under .temporal/. */
export function approvalSecret(): string | undefined {
  let secret = process.env.APPROVAL_SECRET;
  const file = process.env.APPROVAL_SECRET_FILE;
  if (!secret && file && existsSync(file)) secret = readFileSync(file, 'utf8').trim();
  return secret && secret.length >= 32 ? secret : undefined;
}

/** The gateway's public address (APPROVAL_BASE_URL), else `fallback`: where links point. */
export function approvalBaseUrl(fallback = 'http://127.0.0.1:8240'): string {
  return trimmed(process.env.APPROVAL_BASE_URL || fallback);
}

const trimmed = (base: string) => base.replace(/\/+$/, '');

/** The expiry of a new link: `ttlSeconds` from now (at most 7 days), and never after `notAfter` (the gate's deadline). */
export function linkExpiry(ttlSeconds: number, notAfterSeconds?: number, nowSeconds = Date.now() / 1000): number {
  const ttl = Math.min(Math.max(1, Math.floor(ttlSeconds)), maxLinkTtlSeconds);
  return Math.floor(Math.min(nowSeconds + ttl, notAfterSeconds ?? Infinity));
}

/** The one way an approval link is made: signed, at the gateway's address (`base`, default approvalBaseUrl()). */
export function approvalUrl(claim: Omit<ApprovalClaim, 'linkId'> & { linkId?: string }, secret: string, base = approvalBaseUrl()): string {
  return `${trimmed(base)}/approve?t=${signApproval(claim, secret)}`;
}
