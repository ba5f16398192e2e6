import { Context } from '@temporalio/activity';

/**
 * Runs `fn` while the activity heartbeats every 2 seconds, so a worker that dies mid-call is
 * noticed within the heartbeat timeout, not the whole start-to-close timeout.
 */
export async function whileHeartbeating<T>(fn: () => Promise<T>): Promise<T> {
  const context = Context.current();
  const beat = setInterval(() => context.heartbeat(), 2_000);
  try {
    return await fn();
  } finally {
    clearInterval(beat);
  }
}

/** The running activity's cancellation signal, when there is one (HTTP calls abort with it). */
export function activitySignal(): AbortSignal | undefined {
  try { return Context.current().cancellationSignal; } catch { return undefined; }
}
