/**
 * Signed approval links: HMAC-SHA256 over the workflow id, gate, approver, expiry and link id.
 * Verified in constant time; a link expires and binds exactly one gate and one approver.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

export interface ApprovalClaim {
  workflowId: string;
  gate: string;
  approver: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Unique per link: the run counts a link once. */
  linkId: string;
}

export type Verification = { ok: true; claim: ApprovalClaim } | { ok: false; reason: string };

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const sign = (payload: string, secret: string) => createHmac('sha256', secret).update(payload).digest();

export function signApproval(claim: Omit<ApprovalClaim, 'linkId'> & { linkId?: string }, secret: string): string {
  const full: ApprovalClaim = { ...claim, linkId: claim.linkId ?? randomBytes(9).toString('base64url') };
  const payload = b64(JSON.stringify([full.workflowId, full.gate, full.approver, full.exp, full.linkId]));
  return `${payload}.${b64(sign(payload, secret))}`;
}

export function verifyApproval(token: string, secret: string, nowSeconds = Date.now() / 1000): Verification {
  const [payload, mac, extra] = String(token ?? '').split('.');
  if (!payload || !mac || extra !== undefined) return { ok: false, reason: 'the link is malformed' };
  const expected = sign(payload, secret);
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'the link signature is not valid' };
  let fields: unknown;
  try { fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')); } catch { return { ok: false, reason: 'the link is malformed' }; }
  if (!Array.isArray(fields) || fields.length !== 5) return { ok: false, reason: 'the link is malformed' };
  const [workflowId, gate, approver, exp, linkId] = fields as [string, string, string, number, string];
  if (!(typeof exp === 'number' && exp > nowSeconds)) return { ok: false, reason: 'the link has expired' };
  return { ok: true, claim: { workflowId, gate, approver, exp, linkId } };
}

/** The gateway's secret (APPROVAL_SECRET, or the file APPROVAL_SECRET_FILE), 32 characters at least. In development start.sh generates one under .temporal/. */
export function approvalSecret(): string | undefined {
  let secret = process.env.APPROVAL_SECRET;
  const file = process.env.APPROVAL_SECRET_FILE;
  if (!secret && file && existsSync(file)) secret = readFileSync(file, 'utf8').trim();
  return secret && secret.length >= 32 ? secret : undefined;
}

export function approvalBaseUrl(): string {
  return (process.env.APPROVAL_BASE_URL || 'http://127.0.0.1:8240').replace(/\/+$/, '');
}

export function approvalLink(claim: { workflowId: string; gate: string; approver: string; ttlSeconds: number }, secret: string): string {
  const token = signApproval({ workflowId: claim.workflowId, gate: claim.gate, approver: claim.approver, exp: Math.floor(Date.now() / 1000) + claim.ttlSeconds }, secret);
  return `${approvalBaseUrl()}/approve?t=${token}`;
}
