/**
 * The run's picture: what `progress` returns, what the UI shows as current details, and the
 * search attributes operators filter on. Everything the kit learns goes through here.
 */
import { setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import type { Progress, RunStatus, StepProgress } from '../../contracts/messages';
import { renderChecklist } from '../../contracts/progress-text';
import { RunbookName, RunbookStatus, RunbookStep } from '../../contracts/search-attributes';

export const now = (): string => new Date().toISOString();

export class RunState {
  readonly progress: Progress;
  private published = { status: '', step: '' };

  constructor(runbook: string, title: string, steps: Record<string, string>, dryRun: boolean, requestedBy?: string) {
    this.progress = {
      runbook, title, status: 'running', dryRun, requestedBy,
      steps: Object.entries(steps).map(([name, stepTitle]) => ({ name, title: stepTitle, state: 'pending', actions: [] })),
      approvals: [], decisions: [], compensations: [], droppedDecisions: 0,
    };
    upsertSearchAttributes([{ key: RunbookName, value: runbook }]);
    this.publish();
  }

  step(name: string): StepProgress {
    const step = this.progress.steps.find((s) => s.name === name);
    if (!step) {
      const known = this.progress.steps.map((s) => s.name).join(', ');
      throw new Error(`Step "${name}" is not declared by runbook ${this.progress.runbook} (declared: ${known})`);
    }
    return step;
  }

  setStatus(status: RunStatus): void {
    this.progress.status = status;
    this.publish();
  }

  /** For the approval desk: the run waits for a person, or goes on. */
  waiting(yes: boolean): void {
    this.setStatus(yes ? 'waiting_for_approval' : 'running');
  }

  /** For the approval desk in a dry-run: what a gate would do, under its step. */
  plan(step: string, action: string): void {
    this.step(step).actions.push(action);
  }

  /** Pushes the picture to the UI (current details) and to the search attributes when they changed. */
  publish(): void {
    setCurrentDetails(renderChecklist(this.progress));
    const step = this.progress.currentStep ?? '';
    if (this.published.status !== this.progress.status || this.published.step !== step) {
      upsertSearchAttributes([
        { key: RunbookStatus, value: this.progress.status },
        { key: RunbookStep, value: step || null },
      ]);
      this.published = { status: this.progress.status, step };
    }
  }
}
