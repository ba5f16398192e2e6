/**
 * defineRunbook: a runbook is a list of named steps, written top to bottom like the procedure.
 *
 *   export const restartService = defineRunbook({ name, title, schema, steps: { check: 'Check', stop: 'Stop' } },
 *     async (rb, input) => {
 *       await rb.step('check', () => acts.check(input));
 *       await rb.step('stop', async (step) => {
 *         step.undo('Start it again', () => acts.start({ ...input, dryRun: rb.dryRun }));
 *         return acts.stop({ ...input, dryRun: rb.dryRun });
 *       });
 *     });
 */
import {
  CancellationScope, TemporalFailure, isCancellation, setHandler,
} from '@temporalio/workflow';
import type { z } from 'zod';
import { ApprovalDesk, approvalFailure, toMs, type ApprovalOptions, type ApprovalResult } from './approval';
import { Locks } from './lock';
import { parseRunbookInput } from '../../contracts/input';
import { progressQuery, signalDescriptions, type ChangeReport, type CompensationProgress, type RunbookPlan } from '../../contracts/messages';
import { failureText } from '../../contracts/failure';
import { RunState, now } from './run-state';

export interface RunbookDefinition<S extends z.ZodType> {
  /** The workflow type: the name the UI, the CLI and `temporal workflow start --type` use. */
  name: string;
  title: string;
  schema: S;
  /** Every step, by stable name, with the text operators see. Order is the procedure's order. */
  steps: Record<string, string>;
  /** The targets a run changes (e.g. "postgres:10.0.0.5:5432"): one run at a time per target. Not taken in a dry-run. */
  lockKeys?: (input: z.output<S>) => string[];
}

interface Compensation extends CompensationProgress {
  run: () => Promise<unknown>;
}

export class StepContext {
  constructor(private readonly rb: Runbook, readonly name: string) {}

  /** Registers, before acting, how to bring back what this step takes down. */
  undo(title: string, run: () => Promise<unknown>): Undo {
    return this.rb.registerUndo(this.name, title, run);
  }

  /** Records an action this step took (or would take, in a dry-run). */
  record(action: string): void {
    this.rb.state.step(this.name).actions.push(action);
  }

  /** Shows how far a long step is (e.g. "400/1000 org units"), beside the step in the UI and the CLI. */
  progress(note: string): void {
    this.rb.state.step(this.name).note = note;
    this.rb.state.publish();
  }

  /** Records what an activity reported; a step's own return value is recorded the same way. */
  report<T extends ChangeReport>(change: T): T {
    this.rb.state.step(this.name).actions.push(...change.actions);
    return change;
  }
}

export interface Undo {
  /** The thing is back up by other means: do not run this compensation any more. */
  release(): void;
}

export class Runbook {
  readonly state: RunState;
  private readonly desk: ApprovalDesk;
  private readonly compensations: Compensation[] = [];
  /** Why the run took its safe path, when it did. */
  rolledBack?: string;

  constructor(readonly definition: RunbookDefinition<z.ZodType>, readonly dryRun: boolean, readonly requestedBy?: string) {
    this.state = new RunState(definition.name, definition.title, definition.steps, dryRun, requestedBy);
    setHandler(progressQuery, () => this.state.progress, { description: signalDescriptions.progress });
    this.desk = new ApprovalDesk(this.state);
  }

  /** Runs one declared step, recording its state, times, and what it did. */
  async step<T>(name: string, body: (step: StepContext) => Promise<T>): Promise<T> {
    const step = this.state.step(name);
    Object.assign(step, { state: 'running', startedAt: now(), endedAt: undefined, error: undefined });
    this.state.progress.currentStep = name;
    this.state.publish();
    try {
      const result = await body(new StepContext(this, name));
      for (const report of changeReports(result)) step.actions.push(...report.actions);
      Object.assign(step, { state: 'done', endedAt: now() });
      return result;
    } catch (err) {
      Object.assign(step, { state: 'failed', endedAt: now(), error: failureText(err) });
      throw err;
    } finally {
      this.state.publish();
    }
  }

  /** Marks a declared step as not needed, with the reason. */
  skip(name: string, reason: string): void {
    Object.assign(this.state.step(name), { state: 'skipped', note: reason, endedAt: now() });
    this.state.publish();
  }

  /** Waits for a human decision. The result must be handled: approved, rejected (with reason) or timed out. */
  approval(gate: string, opts: ApprovalOptions): Promise<ApprovalResult> {
    return this.desk.wait(gate, this.state.progress.currentStep, opts);
  }

  /** Waits for approval and fails the run (running the compensations) unless it is given. */
  async requireApproval(gate: string, opts: ApprovalOptions): Promise<void> {
    const result = await this.approval(gate, opts);
    if (result.outcome !== 'approved') throw approvalFailure(result);
  }

  registerUndo(step: string, title: string, run: () => Promise<unknown>): Undo {
    const entry: Compensation = { title, step, state: 'registered', registeredAt: now(), run };
    this.compensations.push(entry);
    this.state.progress.compensations.push(publicView(entry));
    return {
      release: () => {
        if (entry.state === 'registered') this.update(entry, { state: 'released', endedAt: now() });
      },
    };
  }

  /** Past a point of no return (e.g. a promotion), undoing earlier steps would do harm: drop every pending compensation. */
  releaseUndos(): void {
    for (const c of this.compensations) if (c.state === 'registered') this.update(c, { state: 'released', endedAt: now() });
  }

  /** Runs the registered compensations newest first; cancellation of the run cannot interrupt them. */
  async compensate(): Promise<void> {
    const pending = this.compensations.filter((c) => c.state === 'registered').reverse();
    if (!pending.length || this.dryRun) return;
    this.state.setStatus('compensating');
    await CancellationScope.nonCancellable(async () => {
      for (const c of pending) {
        this.update(c, { state: 'running' });
        try {
          await c.run();
          this.update(c, { state: 'done', endedAt: now() });
          const step = this.state.step(c.step);
          if (step.state === 'done' || step.state === 'failed') step.state = 'compensated';
        } catch (err) {
          this.update(c, { state: 'failed', endedAt: now(), error: failureText(err) });
        }
        this.state.publish();
      }
    });
  }

  /** The safe path: undo what was done (newest first) and end the run as rolled back, not failed. */
  async rollBack(reason: string): Promise<void> {
    this.rolledBack = reason;
    await this.compensate();
  }

  plan(): RunbookPlan {
    const p = this.state.progress;
    return {
      runbook: p.runbook, dryRun: true,
      steps: p.steps.map(({ name, title, state, actions }) => ({ name, title, state, actions })),
      approvals: p.approvals.map(({ gate, summary, quorum }) => ({ gate, summary, quorum })),
    };
  }

  private update(entry: Compensation, change: Partial<CompensationProgress>): void {
    Object.assign(entry, change);
    const index = this.compensations.indexOf(entry);
    this.state.progress.compensations[index] = publicView(entry);
  }
}

/**
 * Makes a workflow function out of a runbook: validates the input first (a bad input fails at
 * once, non-retryable), runs the body, and on failure or cancellation runs the compensations.
 */
export function defineRunbook<S extends z.ZodType<{ dryRun: boolean; requestedBy?: string; waitForLock?: string }>, R>(
  definition: RunbookDefinition<S>,
  body: (rb: Runbook, input: z.output<S>) => Promise<R>,
): (input: z.input<S>) => Promise<R | RunbookPlan> {
  const workflow = async (raw: z.input<S>): Promise<R | RunbookPlan> => {
    const input = parseRunbookInput(definition.name, definition.schema, raw);
    const rb = new Runbook(definition as RunbookDefinition<z.ZodType>, input.dryRun, input.requestedBy);
    const locks = new Locks(rb.state);
    try {
      if (definition.lockKeys && !input.dryRun) await locks.take(definition.lockKeys(input), input.waitForLock ? toMs(input.waitForLock) : 0);
      const result = await CancellationScope.cancellable(() => body(rb, input));
      for (const s of rb.state.progress.steps) if (s.state === 'pending') Object.assign(s, { state: 'skipped', note: 'not needed in this run' });
      rb.state.progress.currentStep = undefined;
      if (rb.rolledBack) rb.state.progress.error = `rolled back: ${rb.rolledBack}`;
      rb.state.setStatus(rb.dryRun ? 'planned' : rb.rolledBack ? 'rolled_back' : 'completed');
      return rb.dryRun ? rb.plan() : result;
    } catch (err) {
      // A bug in workflow code (not a Temporal failure) retries the workflow task until the code is fixed.
      if (!(err instanceof TemporalFailure)) throw err;
      rb.state.progress.error = failureText(err);
      await rb.compensate();
      rb.state.setStatus(isCancellation(err) ? 'cancelled' : 'failed');
      throw err;
    } finally {
      await locks.releaseAll();
    }
  };
  Object.defineProperty(workflow, 'name', { value: definition.name });
  return workflow;
}

function changeReports(value: unknown): ChangeReport[] {
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is ChangeReport => typeof v === 'object' && v !== null && Array.isArray((v as ChangeReport).actions));
}

function publicView({ title, step, state, registeredAt, endedAt, error }: Compensation): CompensationProgress {
  return { title, step, state, registeredAt, endedAt, error };
}


