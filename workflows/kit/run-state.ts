/**
 * The run's picture: what `progress` returns, what the UI shows as current details, and the
 * search attributes operators filter on. Everything the kit learns goes through here.
 */
import { setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import type { Progress, RunStatus, StepProgress } from './messages';
import { RunbookName, RunbookStatus, RunbookStep } from './search-attributes';

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

const marks: Record<StepProgress['state'], string> = {
  pending: '[ ]', running: '[ ]', done: '[x]', skipped: '[-]', failed: '[!]', compensated: '[~]',
};

/** The Markdown the Temporal UI shows as the workflow's current details. */
export function renderChecklist(p: Progress): string {
  const current = p.steps.find((s) => s.name === p.currentStep);
  const lines = [
    `**${p.title}**${p.dryRun ? ' (dry-run)' : ''} — ${p.status.replace(/_/g, ' ')}${current ? `: ${current.title}` : ''}`,
  ];
  // What the run waits for comes first: the UI shows current details in a frame of fixed height.
  for (const gate of p.approvals.filter((g) => g.state === 'open')) {
    lines.push('', `Waiting for approval \`${gate.gate}\` (${gate.approvedBy.length}/${gate.quorum}, until ${gate.deadline}): ${gate.summary}`);
    for (const r of gate.requests) {
      lines.push(`- request for ${r.approver} by ${r.channel} to ${r.to}: ${r.state}${r.error ? ` — ${r.error} (send a link with: npm run runbook -- link)` : ''}`);
    }
  }
  lines.push('', ...p.steps.map((s) => {
    const label = s.name === p.currentStep && s.state === 'running' ? `**${s.title}** (running)` : s.title;
    const note = s.note && (s.state === 'running' || s.state === 'done' || s.state === 'skipped') ? ` — ${s.note}` : '';
    return `- ${marks[s.state]} ${label}${s.state === 'failed' && s.error ? ` — failed: ${s.error}` : note}`;
  }));
  const undo = p.compensations.filter((c) => c.state !== 'registered' && c.state !== 'released');
  if (undo.length) lines.push('', 'Compensations:', ...undo.map((c) => `- ${c.title}: ${c.state}`));
  return lines.join('\n');
}
