import { ApplicationFailure } from '@temporalio/common';

/**
 * A preflight check that refuses to act on a wrong picture of the world: non-retryable (a retry
 * would see the same world), saying what is wrong and that nothing was changed.
 */
export const refuse = (message: string): ApplicationFailure =>
  ApplicationFailure.nonRetryable(`${message} Nothing was changed.`, 'PreflightRefused');
