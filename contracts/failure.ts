import { ActivityFailure, TemporalFailure } from '@temporalio/common';

/**
 * What went wrong, in one line: a failure's message and its causes', in order, without the
 * SDK's "Activity task failed" wrapper (the activity's own message says what failed).
 * The one failure text of the runbooks' progress, the sync's records and the approval requests.
 */
export function failureText(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return failureText(err.cause);
  if (err instanceof TemporalFailure && err.cause) return `${err.message}: ${failureText(err.cause)}`;
  return err instanceof Error ? err.message : String(err);
}
