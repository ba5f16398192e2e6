/**
 * A run's progress as people read it: the Markdown checklist the Temporal UI shows as current
 * details, and the plain text of the CLI and the approval page. One set of marks for both.
 */
import type { Progress, StepState } from './messages';
import { utcText, whenText } from './time-text';

export const stepMarks: Record<StepState, string> = {
  pending: '[ ]', running: '[>]', done: '[x]', skipped: '[-]', failed: '[!]', compensated: '[~]',
};

/** What a reader is shown: operators see step names and undo bookkeeping; approvers see the run as people describe it. */
export interface ProgressTextOptions {
  /** Step ids, link ids, registered undo steps, the actions' commands: for operators (the CLI). Default true. */
  internals?: boolean;
  /** For "in 1 h 59 min": the moment the text is read (default now). */
  now?: number;
}

/** The run as an operator reads it in a terminal, or (internals: false) as an approver reads it on the approval page. */
export function formatProgress(p: Progress, opts: ProgressTextOptions = {}): string {
  const internals = opts.internals ?? true;
  const at = (t: string) => whenText(t, opts.now);
  const lines = [`${p.title}${p.dryRun ? ' (dry-run)' : ''}: ${internals ? p.status : p.status.replace(/_/g, ' ')}${p.requestedBy ? `, requested by ${p.requestedBy}` : ''}`];
  for (const s of p.steps) {
    lines.push(`  ${stepMarks[s.state]} ${s.title}${internals ? ` (${s.name})` : ''}${s.note ? ` — ${s.note}` : ''}${s.error ? ` — ${s.error}` : ''}`);
    if (internals) for (const a of s.actions) lines.push(`        ${a}`);
  }
  for (const g of p.approvals) {
    lines.push(`  gate ${g.gate}: ${g.state} — ${g.summary} (${g.approvedBy.length}/${g.quorum}${g.approvers ? ` of ${g.approvers.join(', ')}` : ''}` +
      `${g.state === 'open' ? `, until ${at(g.deadline)}` : ''})${g.reason ? ` — ${g.reason}` : ''}`);
    for (const r of g.requests ?? []) {
      lines.push(`        request for ${r.approver} by ${r.channel}${internals ? ` to ${r.to}` : ''}: ${r.state}${internals ? ` (link ${r.linkId})` : ''}${r.error ? ` — ${r.error}` : ''}`);
    }
  }
  for (const d of p.decisions) {
    const via = d.via === 'link' ? (internals ? `link ${d.linkId}` : 'link') : `${d.via}${d.origin && internals ? ` ${d.origin}` : ''}`;
    lines.push(`  decision: ${d.decision} ${d.gate} by ${d.by} via ${via} at ${at(d.receivedAt)}: ${d.outcome}${d.note ? ` (${d.note})` : ''}`);
  }
  if (p.droppedDecisions && internals) lines.push(`  ${p.droppedDecisions} further ignored decision(s) not recorded (replayed links or past the cap)`);
  // Undo steps registered but never needed are bookkeeping; one that ran says what was undone.
  for (const c of p.compensations.filter((x) => internals || (x.state !== 'registered' && x.state !== 'released'))) {
    lines.push(`  undo "${c.title}"${internals ? ` (${c.step})` : ''}: ${c.state}${c.error ? ` — ${c.error}` : ''}`);
  }
  if (p.error) lines.push(`  error: ${p.error}`);
  return lines.join('\n');
}

/**
 * The Temporal UI shows current details in a frame of fixed height (UI 2.42: an iframe of 300 px,
 * about a dozen lines at its usual width), cut, not scrolled. So the checklist is kept short: what
 * the run waits for first, its summary clipped (whole on the approval page and in `runbook status`),
 * and on a long runbook the steps already done folded into one line.
 */
const frameSummaryChars = 240;
const frameSteps = 7;

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text);

/** The Markdown the Temporal UI shows as the workflow's current details. */
export function renderChecklist(p: Progress): string {
  const current = p.steps.find((s) => s.name === p.currentStep);
  const open = p.approvals.filter((g) => g.state === 'open');
  // While a gate waits its line says what for, and the step is the checklist's bold line: the title stays one line.
  const lines = [
    `**${p.title}**${p.dryRun ? ' (dry-run)' : ''} — ${p.status.replace(/_/g, ' ')}${current && !open.length ? `: ${current.title}` : ''}`,
  ];
  // What the run waits for comes first, in the title's paragraph (a hard line break: no paragraph margin to spend).
  for (const [i, gate] of open.entries()) {
    if (i === 0) lines[lines.length - 1] += '\\';
    else lines.push('');
    lines.push(`Waiting for approval \`${gate.gate}\` (${gate.approvedBy.length}/${gate.quorum}, until ${utcText(gate.deadline)}): ${clip(gate.summary, frameSummaryChars)}`);
    for (const r of gate.requests) {
      lines.push(`- request for ${r.approver} by ${r.channel} to ${r.to}: ${r.state}${r.error ? ` — ${r.error} (send a link with: npm run runbook -- link)` : ''}`);
    }
  }
  const item = (s: Progress['steps'][number]) => {
    const label = s.name === p.currentStep && s.state === 'running' ? `**${s.title}** (running)` : s.title;
    const note = s.note && (s.state === 'running' || s.state === 'done' || s.state === 'skipped') ? ` — ${s.note}` : '';
    return `- ${stepMarks[s.state]} ${label}${s.state === 'failed' && s.error ? ` — failed: ${s.error}` : note}`;
  };
  // The steps done before the first one still to do, folded into one line when the list is long.
  let settled = 0;
  while (settled < p.steps.length && (p.steps[settled].state === 'done' || p.steps[settled].state === 'skipped')) settled += 1;
  const fold = p.steps.length > frameSteps && settled > 1 && settled < p.steps.length;
  lines.push('', ...(fold
    ? [`- ${stepMarks.done} ${settled} steps done (last: ${p.steps[settled - 1].title})`, ...p.steps.slice(settled).map(item)]
    : p.steps.map(item)));
  const undo = p.compensations.filter((c) => c.state !== 'registered' && c.state !== 'released');
  if (undo.length) lines.push('', 'Compensations:', ...undo.map((c) => `- ${c.title}: ${c.state}`));
  // The UI sizes its frame a little short of the content (UI 2.42 cut the last line in half): a last,
  // empty line (a no-break space) is what it cuts.
  lines.push('', '\u00a0');
  return lines.join('\n');
}
