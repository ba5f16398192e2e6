import type { Sinks } from '@temporalio/workflow';

/** How a run ended, as the runbook-level metrics count it: the kit's final status, else the workflow's own end. */
export type RunOutcome = 'completed' | 'failed' | 'cancelled' | 'rolled_back' | 'planned';

/**
 * What the observing workflow interceptor (workflows/kit/observe.ts) tells the worker about a run,
 * read from the commands the run issued (its search attributes and its end): never a command of
 * its own, so it changes no history. Each is called with the run's WorkflowInfo by the SDK; all
 * but `inStep` are dropped during replay, so a replayed run is not counted twice.
 */
export type RunbookEvents = {
  /** A new run started (not a continue-as-new of an earlier one). */
  started(): void;
  /** The run left a step (to the next, to a compensation, or its end) after this long. */
  stepEnded(step: string, seconds: number): void;
  /** The run stopped waiting for approval after this long. */
  gateWaited(seconds: number): void;
  finished(outcome: RunOutcome): void;
  /** The step the run is in now (undefined: none): for the step in activity log lines. Also during replay. */
  inStep(step: string | undefined): void;
};

export interface RunbookEventSinks extends Sinks {
  runbookEvents: RunbookEvents;
}
