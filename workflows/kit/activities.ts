import { ActivityCancellationType, proxyActivities, type ActivityOptions } from '@temporalio/workflow';

/**
 * Activity stubs with the runbooks' defaults: retries with backoff for what a retry can fix,
 * a bounded number of attempts, and timeouts. Errors a retry cannot fix are thrown by the
 * activities as non-retryable ApplicationFailures that say what the operator must do.
 * A cancelled run waits until its activity has stopped what it started on the hosts (the activity
 * notices at its next heartbeat), so a compensation never races remote work.
 */
export function runbookActivities<A extends object>(options: ActivityOptions = {}): A {
  return proxyActivities<A>({
    startToCloseTimeout: '10 minutes',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...options,
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8, ...options.retry },
  }) as A;
}
