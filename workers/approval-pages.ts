/** The approval gateway's HTML pages: small, escaped, no scripts. */
import type { ApprovalClaim } from '../activities/lib/approval-token';
import type { ApprovalLedger, GateProgress, Progress } from '../workflows/kit/messages';
import type { SyncProgress } from '../workflows/dhis2/messages';
import { renderSync } from '../workflows/dhis2/render';
import { formatProgress } from '../scripts/lib/format-progress';

/** What the gateway reads from a run: a runbook's progress, or a sync's; both carry the approval ledger. */
export type RunProgress = ApprovalLedger & Partial<Pick<Progress, 'steps'>>;

/** The run as text: a runbook's checklist, or a sync's state. */
export function runText(p: RunProgress): string {
  if (Array.isArray(p.steps)) return formatProgress(p as Progress);
  if ('passes' in p) return renderSync(p as unknown as SyncProgress);
  return '';
}

export const esc = (s: unknown): string =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
pre{background:#f4f4f4;padding:1rem;overflow:auto}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:1rem}
textarea{width:100%;min-height:4rem}.ok{color:#176b2c}.bad{color:#a11}</style></head>
<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

export interface ApprovalView {
  token: string;
  workflowId: string;
  approver: string;
  /** When the link expires, seconds since the epoch. */
  expiresAt: number;
  gate: GateProgress;
  progress: RunProgress;
}

export function approvalForm(v: ApprovalView): string {
  const step = v.progress.steps?.find((s) => s.name === v.gate.step);
  const details = v.gate.details?.length ? `<pre>${esc(v.gate.details.join('\n'))}</pre>` : '';
  return page(`Approve ${v.gate.gate}? — ${v.progress.title}`, `
<p><strong>${esc(v.gate.summary)}</strong></p>${details}
<p>Runbook <code>${esc(v.progress.runbook)}</code>, run <code>${esc(v.workflowId)}</code>${step ? `, step <em>${esc(step.title)}</em>` : ''}.
Requested by ${esc(v.gate.requestedBy ?? v.progress.requestedBy ?? 'unknown')}. You are deciding as <strong>${esc(v.approver)}</strong>.
Approvals so far: ${v.gate.approvedBy.length} of ${v.gate.quorum}${v.gate.approvedBy.length ? ` (${esc(v.gate.approvedBy.join(', '))})` : ''}; open until ${esc(v.gate.deadline)}.
This link works once, until ${esc(new Date(v.expiresAt * 1000).toISOString())}.</p>
${decisionForm(v.token)}
<h2>The run so far</h2><pre>${esc(runText(v.progress))}</pre>`);
}

const decisionForm = (token: string) => `<form method="post" action="/approve">
<input type="hidden" name="t" value="${esc(token)}">
<label for="reason">Reason (required to reject)</label><br><textarea id="reason" name="reason"></textarea><br><br>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="reject">Reject</button>
</form>`;

/** When no worker can answer the progress query: the link's own facts, and the same buttons. */
export function blindApprovalForm(token: string, claim: ApprovalClaim): string {
  return page(`Approve ${claim.gate}?`, `<p>Run <code>${esc(claim.workflowId)}</code> is waiting, but its progress cannot be read right now
(no worker is running). You can still decide as <strong>${esc(claim.approver)}</strong>: the decision is delivered to the run, and it counts
only if the gate "${esc(claim.gate)}" is still open when the runbook resumes. The request you received says what the gate is for.</p>
${decisionForm(token)}`);
}

export function message(title: string, text: string, kind: 'ok' | 'bad' = 'ok'): string {
  return page(title, `<p class="${kind}">${esc(text)}</p>`);
}
