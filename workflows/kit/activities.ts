import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';

/**
 * Activity stubs with the runbooks' defaults: retries with backoff for what a retry can fix,
 * a bounded number of attempts, and timeouts. Errors a retry cannot fix are thrown by the
 * activities as non-retryable ApplicationFailures that say what the operator must do.
 */
export function runbookActivities<A extends object>(options: ActivityOptions = {}): A {
  return proxyActivities<A>({
    startToCloseTimeout: '10 minutes',
    ...options,
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8, ...options.retry },
  }) as A;
}
