/**
 * Input validation shared by the workflows (first line of every run) and the CLI (before start).
 * Imports nothing from @temporalio/workflow so the CLI can use it outside a workflow.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';

/** Fields every runbook input accepts. */
export const runbookInputFields = {
  dryRun: z.boolean().default(false)
    .describe('Run the preflight checks for real, then report the planned actions instead of acting'),
  requestedBy: z.string().trim().min(1).max(200).optional()
    .describe('Who started the run; with four-eyes gates this person may not approve'),
  waitForLock: z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'a duration such as "30s", "15m", "24h" or "7d"').optional()
    .describe('When another run is working on the same target: wait this long for it (default: refuse at once, naming it)'),
};

/** A lower-case SQL identifier (a role, a slot, a publication): safe to quote, never folded by PostgreSQL. */
export const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier (letters, digits, _; at most 63)');

/** A reference to a secret the worker resolves from its environment or secret files; never the secret itself. */
export const secretRef = z.strictObject({
  secret: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'a secret name: letters, digits, _ . - (the worker resolves it)'),
}).describe('The name of a secret known to the worker, e.g. {"secret": "pg-replication"}');
export type SecretRef = z.infer<typeof secretRef>;

/** A path on a host: absolute, one line, never climbing out with "..". */
export const absolutePath = z.string().regex(/^\/[^\0\n]*$/, 'an absolute path').refine((p) => !p.split('/').includes('..'), 'must not contain ".."');

/** A duration in Temporal's notation: "30s", "15m", "24h", "7d". */
export const duration = z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'a duration such as "30s", "15m", "24h" or "7d"');

/** Where a gate sends an approval request for one approver: an e-mail address, a webhook named in the worker's configuration, or both. */
export const approvalRecipient = z.strictObject({
  approver: z.string().trim().min(1).max(200).describe('The approver the link is for (the name their decision is recorded under)'),
  email: z.email().max(254).optional().describe('Send the link to this address (the worker\'s SMTP relay)'),
  webhook: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'the name of a webhook in the worker\'s RUNBOOKS_APPROVAL_CHANNELS').optional()
    .describe('Post the link to this webhook of the worker\'s configuration (Slack, Teams, JSON)'),
}).refine((r) => r.email || r.webhook, { message: 'give "email", "webhook" or both', path: ['email'] });
export type ApprovalRecipient = z.infer<typeof approvalRecipient>;

/** No approval link lives longer than this, whatever a runbook or an operator asks. */
export const maxLinkTtlSeconds = 7 * 86_400;

/** A duration of at most 7 days (the longest an approval link lives). */
export const linkTtl = duration.refine((d) => durationSeconds(d) <= maxLinkTtlSeconds, 'at most 7d: approval links live 7 days at most');

/** Who decides a gate and how: the approval settings every runbook input offers for its gates. */
export const approvalPolicyFields = {
  approvers: z.array(z.string().trim().min(1).max(200)).optional().describe('Who may decide; anyone with access when absent'),
  quorum: z.number().int().min(1).max(20).default(1),
  fourEyes: z.boolean().default(false).describe('The run\'s requestedBy may not approve'),
  timeout: duration.default('24h'),
  notify: z.array(approvalRecipient).max(50).default([]).describe('Approval requests with a signed link, sent when the gate opens'),
  linkTtl: linkTtl.optional().describe('How long the links live (default: until the gate times out, at most 7d)'),
};

/** A link for someone not on the approvers list could never count: refuse it in the input. */
export function approversCoverNotify<T extends { approvers?: string[]; notify: ApprovalRecipient[] }>(schema: z.ZodType<T>) {
  return schema.refine((p) => !p.approvers || p.notify.every((r) => p.approvers!.some((a) => a.toLowerCase() === r.approver.toLowerCase())), {
    message: 'every notified approver must be on the approvers list', path: ['notify'],
  });
}

export const approvalPolicy = approversCoverNotify(z.strictObject(approvalPolicyFields));
export type ApprovalPolicy = z.infer<typeof approvalPolicy>;
export const defaultApprovalPolicy = (): ApprovalPolicy => ({ quorum: 1, fourEyes: false, timeout: '24h', notify: [] });

const durationUnits: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400 };
/** Seconds in a duration such as "30s" or "24h" (already validated by `duration`). */
export function durationSeconds(d: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(d.trim());
  return m ? Number(m[1]) * durationUnits[m[2]] : NaN;
}

/** One line per bad field: "field.path: what is wrong". */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.length ? issue.path.map(String).join('.') : '(input)';
    return `${where}: ${issue.message}`;
  });
}

export class InvalidInputError extends Error {
  constructor(readonly runbook: string, readonly problems: string[]) {
    super(`Invalid input for ${runbook}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'InvalidInputError';
  }
}

/** Parses an input, or throws InvalidInputError naming every bad field. */
export function validateInput<S extends z.ZodType>(runbook: string, schema: S, raw: unknown): z.output<S> {
  const parsed = schema.safeParse(raw ?? {});
  if (!parsed.success) throw new InvalidInputError(runbook, describeIssues(parsed.error));
  return parsed.data;
}

/** In a workflow: a bad input fails the run at once, non-retryable, with every bad field named. */
export function parseRunbookInput<S extends z.ZodType>(runbook: string, schema: S, raw: unknown): z.output<S> {
  try {
    return validateInput(runbook, schema, raw);
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    throw ApplicationFailure.create({
      message: `${err.message}\nFix the input and start the runbook again; nothing was changed.`,
      type: 'InvalidInput',
      nonRetryable: true,
      details: [err.problems],
    });
  }
}
