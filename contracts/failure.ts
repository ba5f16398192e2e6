import { ActivityFailure } from '@temporalio/common';

/**
 * What went wrong, in one line: a failure's message and its causes', in order, without the
 * SDK's "Activity task failed" wrapper (the activity's own message says what failed).
 * The one failure text of the runbooks' progress, the sync's records, the approval requests and
 * the CLI (whose errors, from the client or the connection, carry their cause as plain errors do).
 */
export function failureText(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return failureText(err.cause);
  if (err instanceof Error && err.cause) return `${err.message}: ${failureText(err.cause)}`;
  return err instanceof Error ? err.message : String(err);
}
