/**
 * Watches a run for the runbook-level metrics and log lines, without touching it: after each
 * activation it reads the commands the run issued (RunbookStatus and RunbookStep upserts, the
 * run's end) and tells the worker through a sink. It issues no command and changes no state the
 * run sees, so histories replay exactly as before; the sinks it calls are dropped during replay
 * (except `inStep`, which only names the current step in log lines).
 *
 * It also gives every activity that has none a one-line summary for the UI's event view ("step
 * promote: promote standby"): user metadata, which a replay does not compare.
 *
 * A step's time runs from the upsert that names it to the next step, a status other than running
 * or waiting for approval (compensating, an end), or the run's end: a gate inside a step counts.
 */
import { decodeSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { proxySinks, workflowInfo, type ConcludeActivationInput, type WorkflowInterceptorsFactory } from '@temporalio/workflow';
import type { RunbookEventSinks, RunOutcome } from '../../contracts/runbook-events';
import { RunbookName, RunbookStatus, RunbookStep } from '../../contracts/search-attributes';

const { runbookEvents } = proxySinks<RunbookEventSinks>();

const kitEnds = new Set<string>(['completed', 'failed', 'cancelled', 'rolled_back', 'planned']);
const inAStep = new Set<string>(['running', 'waiting_for_approval']);

class RunWatch {
  private status?: string;
  private step?: string;
  private stepSince = 0;
  private waitingSince?: number;
  private started = false;
  private ended = false;

  see(commands: ConcludeActivationInput['commands']): void {
    const now = Date.now();
    if (!this.started) {
      this.started = true;
      if (!workflowInfo().continuedFromExecutionRunId) runbookEvents.started();
    }
    for (const c of commands) {
      const fields = c.upsertWorkflowSearchAttributes?.searchAttributes?.indexedFields;
      if (fields) {
        const values = decodeSearchAttributes(fields);
        const first = (name: string) => { const v = values[name]?.[0]; return typeof v === 'string' && v ? v : undefined; };
        if (RunbookStatus.name in fields) this.toStatus(first(RunbookStatus.name), now);
        if (RunbookStep.name in fields) this.toStep(first(RunbookStep.name), now);
      }
      if (c.completeWorkflowExecution) this.end('completed', now);
      else if (c.failWorkflowExecution) this.end('failed', now);
      else if (c.cancelWorkflowExecution) this.end('cancelled', now);
      else if (c.continueAsNewWorkflowExecution) this.end(undefined, now);
    }
  }

  private toStep(step: string | undefined, now: number): void {
    if (step === this.step) return;
    this.endStep(now);
    this.step = step || undefined;
    this.stepSince = now;
    runbookEvents.inStep(this.step);
  }

  private endStep(now: number): void {
    if (this.step && this.stepSince) runbookEvents.stepEnded(this.step, (now - this.stepSince) / 1000);
    this.stepSince = 0;
  }

  private toStatus(status: string | undefined, now: number): void {
    if (status === this.status) return;
    if (this.waitingSince !== undefined) runbookEvents.gateWaited((now - this.waitingSince) / 1000);
    this.waitingSince = status === 'waiting_for_approval' ? now : undefined;
    if (status && !inAStep.has(status)) this.endStep(now);
    this.status = status;
  }

  /** The run's end (undefined: continued as new, which is no end of the work). */
  private end(outcome: RunOutcome | undefined, now: number): void {
    if (this.ended) return;
    this.ended = true;
    this.endStep(now);
    if (this.waitingSince !== undefined) runbookEvents.gateWaited((now - this.waitingSince) / 1000);
    this.waitingSince = undefined;
    if (outcome) runbookEvents.finished(this.status && kitEnds.has(this.status) ? this.status as RunOutcome : outcome);
  }
}

/** An activity's one line in the UI's event view when its call gave none: the step it runs in, and what it does. */
export function activitySummary(activityType: string, step: string | undefined): string {
  const words = activityType.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2').toLowerCase();
  return (step ? `step ${step}: ${words}` : words).slice(0, 200);
}

const summarised = <T extends { activityType: string; options: { summary?: string } }>(input: T): T => input.options.summary ? input
  : { ...input, options: { ...input.options, summary: activitySummary(input.activityType, workflowInfo().typedSearchAttributes.get(RunbookStep)) } };

export const interceptors: WorkflowInterceptorsFactory = () => {
  const watch = new RunWatch();
  return {
    internals: [{
      concludeActivation(input, next) {
        const output = next(input);
        // Watching must never fail a run: a surprise here only costs a sample.
        try { watch.see(output.commands); } catch { /* ignored */ }
        return output;
      },
    }],
    outbound: [{
      scheduleActivity: (input, next) => next(summarised(input)),
      scheduleLocalActivity: (input, next) => next(summarised(input)),
      getLogAttributes(input, next) {
        const attributes = workflowInfo().typedSearchAttributes;
        return next({ ...input, runbook: attributes.get(RunbookName) ?? workflowInfo().workflowType, step: attributes.get(RunbookStep) });
      },
    }],
  };
};
