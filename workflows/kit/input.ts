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
};

/** A reference to a secret the worker resolves from its environment or secret files; never the secret itself. */
export const secretRef = z.strictObject({
  secret: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'a secret name: letters, digits, _ . - (the worker resolves it)'),
}).describe('The name of a secret known to the worker, e.g. {"secret": "pg-replication"}');
export type SecretRef = z.infer<typeof secretRef>;

/** A duration in Temporal's notation: "30s", "15m", "24h", "7d". */
export const duration = z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'a duration such as "30s", "15m", "24h" or "7d"');

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
