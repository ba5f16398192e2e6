import { ApplicationFailure } from '@temporalio/common';

/**
 * A preflight check (an activity's, or a runbook's own) that refuses to act on a wrong picture of
 * the world: non-retryable (a retry would see the same world), saying what is wrong and that
 * nothing was changed. In contracts/ so that workflows and activities throw the same one.
 */
export const refuse = (message: string): ApplicationFailure =>
  ApplicationFailure.nonRetryable(`${message} Nothing was changed.`, 'PreflightRefused');
