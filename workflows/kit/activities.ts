import { ActivityCancellationType, proxyActivities, type ActivityOptions } from '@temporalio/workflow';

/**
 * The activity presets every runbook uses, by the same names for every system:
 * - `check`: looks without changing anything (preflight, inspect, verify): short, few attempts;
 * - `act`: changes one thing and verifies it;
 * - `long`: waits for something that takes long (a catch-up, a copy, a job followed to its end);
 * - `undo`: brings back what a step took down: it must get through, so it is retried for a day.
 * A runbook adjusts a preset where its procedure needs it (e.g. a 45-minute namespace install).
 */
export const activityPresets = {
  check: { startToCloseTimeout: '2 minutes', heartbeatTimeout: '10s', retry: { maximumAttempts: 3 } },
  act: { startToCloseTimeout: '10 minutes', heartbeatTimeout: '10s', retry: { maximumAttempts: 5 } },
  long: { startToCloseTimeout: '12 hours', heartbeatTimeout: '10s', retry: { maximumAttempts: 5 } },
  undo: { startToCloseTimeout: '5 minutes', scheduleToCloseTimeout: '1 day', heartbeatTimeout: '10s', retry: { maximumAttempts: 10_000 } },
} satisfies Record<string, ActivityOptions>;
export type ActivityPreset = keyof typeof activityPresets;

/**
 * Activity stubs with the runbooks' defaults: retries with backoff for what a retry can fix,
 * a bounded number of attempts, and timeouts. Errors a retry cannot fix are thrown by the
 * activities as non-retryable ApplicationFailures that say what the operator must do.
 * A cancelled run waits until its activity has stopped what it started on the hosts (the activity
 * notices at its next heartbeat), so a compensation never races remote work.
 */
export function runbookActivities<A extends object>(preset: ActivityPreset, adjust: ActivityOptions = {}): A {
  const base: ActivityOptions = activityPresets[preset];
  return proxyActivities<A>({
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...base,
    ...adjust,
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', ...base.retry, ...adjust.retry },
  }) as A;
}
