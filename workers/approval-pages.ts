/**
 * The approval gateway's HTML pages: small, escaped, no scripts, readable on a phone, usable with
 * the keyboard alone. Every page says plainly what state the link or the gate is in.
 */
import type { ApprovalClaim } from '../activities/lib/approval-token';
import type { ApprovalLedger, GateProgress, Progress } from '../contracts/messages';
import type { SyncProgress } from '../contracts/dhis2/messages';
import { renderSync } from '../contracts/dhis2/render';
import { formatProgress } from '../contracts/progress-text';
import { span, whenText } from '../contracts/time-text';

export { span };

/** What the gateway reads from a run: a runbook's progress, or a sync's; both carry the approval ledger. */
export type RunProgress = ApprovalLedger & Partial<Pick<Progress, 'steps'>>;

/** The run as an approver reads it: a runbook's checklist (no step ids, no undo bookkeeping), or a sync's state. */
export function runText(p: RunProgress): string {
  if (Array.isArray(p.steps)) return formatProgress(p as Progress, { internals: false });
  if ('passes' in p) return renderSync(p as unknown as SyncProgress);
  return '';
}

export const esc = (s: unknown): string =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const when = (t: string | number, now = Date.now()) => whenText(t, now);

export type PageKind = 'ok' | 'bad' | 'info';

export function page(title: string, body: string, kind: PageKind = 'info'): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;font-size:1.05rem;line-height:1.45;max-width:46rem;margin:1.5rem auto;padding:0 1rem;color:#1d1d1d;background:#fff}
h1{font-size:1.5rem;line-height:1.25;overflow-wrap:anywhere}h2{font-size:1.15rem;margin-top:2rem}
pre{background:#f4f4f4;padding:.75rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.9rem}
code{overflow-wrap:anywhere}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
@media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
label{font-weight:600}textarea{width:100%;box-sizing:border-box;min-height:5rem;font:inherit;padding:.5rem}
.actions{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1rem}
button{font:inherit;font-weight:600;padding:.7rem 1.6rem;border-radius:.4rem;border:2px solid #333;cursor:pointer;min-width:9rem}
button.approve{background:#176b2c;color:#fff;border-color:#176b2c}button.reject{background:#fff;color:#a11;border-color:#a11}
button:focus-visible,a:focus-visible,textarea:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
.state{padding:.8rem 1rem;border-left:.4rem solid #555;background:#f6f6f6}.ok{border-color:#176b2c;color:#0f4d1f}.bad{border-color:#a11;color:#7a0c0c}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}
td.act{white-space:nowrap;overflow-wrap:normal}td.act a{display:inline-block;padding:.4rem .9rem;border:2px solid #1a5fb4;border-radius:.4rem;font-weight:600;text-decoration:none;color:#1a5fb4}
</style></head>
<body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;
}

export function message(title: string, text: string, kind: PageKind = 'ok'): string {
  return page(title, `<p class="state ${kind}" role="status">${esc(text)}</p>`, kind);
}

/** What became of a decision and what happens next, with where to follow the run. */
export interface DecidedView {
  decision: 'approve' | 'reject';
  approver: string;
  gateName: string;
  gate?: GateProgress;
  reason?: string;
  /** The run in the Temporal UI (APPROVAL_UI_URL), when known. */
  runUrl?: string;
  /** The version (fingerprint) of the draft approved, for a gate bound to a draft. */
  version?: string;
}

/** The page after Approve or Reject: the outcome, what the run does now, and where to follow it. */
export function decidedPage(v: DecidedView): string {
  const g = v.gate;
  const follow = v.runUrl ? `<p><a href="${esc(v.runUrl)}">Follow the run in the Temporal UI</a></p>` : '';
  if (v.decision === 'reject') {
    return page('Rejected', `<p class="state bad" role="status">${esc(`Rejected by ${v.approver}: ${v.reason}. The run will not do what this gate guarded.`)}</p>
<p>What happens next: the run takes its safe path (it stops, or undoes what it started) and records your reason. Nothing else is needed from you.</p>${follow}`, 'bad');
  }
  const count = `Thank you, ${v.approver}. Approvals: ${g?.approvedBy.length ?? '?'} of ${g?.quorum ?? '?'}; the gate is ${g?.state ?? 'open'}.` +
    `${v.version ? ` You approved version ${v.version.slice(0, 12)} of the draft; only that version is applied.` : ''}`;
  const missing = g ? Math.max(0, g.quorum - g.approvedBy.length) : 0;
  const others = g?.approvers?.filter((a) => !g.approvedBy.some((b) => b.trim().toLowerCase() === a.trim().toLowerCase()));
  const next = g?.state === 'approved'
    ? 'What happens next: the run goes on now with what this gate guarded. You can close this page; nothing else is needed from you.'
    : g?.state === 'open'
      ? `What happens next: nothing yet. The gate waits for ${missing} more approval(s)${others?.length ? ` (asked: ${others.join(', ')})` : ''} until ${when(g.deadline)}; the run goes on once they are in.`
      : 'What happens next: the run goes on as the gate was decided.';
  return page('Approved', `<p class="state ok" role="status">${esc(count)}</p>\n<p>${esc(next)}</p>${follow}`, 'ok');
}

/** How a used link was used: shown when it is opened again, whatever became of the run since. */
export interface UsedLinkView {
  claim: ApprovalClaim;
  decision: 'approve' | 'reject';
  /** When the decision reached the run (ISO). */
  at: string;
  /** "signed in as ..." when the gateway knew. */
  signedInAs?: string;
  /** What the run made of it, when it can still be read. */
  outcome?: { counted: boolean; note?: string; gate?: GateProgress };
  /** The run's state now: running, or how it ended. */
  runState: string;
  runUrl?: string;
}

export function usedLinkPage(v: UsedLinkView): string {
  const { claim } = v;
  const did = v.decision === 'approve' ? 'approved' : 'rejected';
  const how = v.outcome
    ? v.outcome.counted
      ? `It counted${v.outcome.gate ? `: approvals ${v.outcome.gate.approvedBy.length} of ${v.outcome.gate.quorum}, the gate is ${v.outcome.gate.state}` : ''}.`
      : `It was not counted: ${v.outcome.note ?? 'the gate did not take it'}.`
    : 'What the run made of it cannot be read right now.';
  const run = v.runState === 'RUNNING' ? 'The run is still going.' : `The run has since ended (${v.runState.toLowerCase().replace(/_/g, ' ')}).`;
  const text = `This link was used: ${claim.approver} ${did} "${claim.gate}" with it on ${when(v.at)}${v.signedInAs ? `, ${v.signedInAs}` : ''}. ${how} ${run} ` +
    'A link decides once; nothing more was sent.';
  return page('This link was used', `<p class="state" role="status">${esc(text)}</p>${v.runUrl ? `<p><a href="${esc(v.runUrl)}">Follow the run in the Temporal UI</a></p>` : ''}`);
}

export interface ApprovalView {
  token: string;
  workflowId: string;
  approver: string;
  /** When the link expires, seconds since the epoch. */
  expiresAt: number;
  gate: GateProgress;
  progress: RunProgress;
  /** Who is signed in (OpenID Connect), when sign-in is on. */
  signedInAs?: string;
  /** Shown first, e.g. why the decision just sent was refused. */
  notice?: string;
}

export function approvalForm(v: ApprovalView): string {
  const { gate, progress } = v;
  const step = progress.steps?.find((s) => s.name === gate.step);
  const asked = gate.approvers?.length ? gate.approvers.join(', ') : 'anyone with a link';
  const sent = gate.requests.length ? ` (requests sent: ${gate.requests.map((r) => `${r.approver} by ${r.channel}`).join(', ')})` : '';
  const rows: Array<[string, string]> = [
    ['Runbook', `${progress.title} (<code>${esc(progress.runbook)}</code>)`],
    ['Run', `<code>${esc(v.workflowId)}</code>${step ? `, step <em>${esc(step.title)}</em>` : ''}`],
    ['Asked for by', esc(gate.requestedBy ?? progress.requestedBy ?? 'not recorded')],
    ['Who is asked', `${esc(asked)}; ${gate.quorum} approval(s) needed${gate.fourEyes ? ', four-eyes' : ''}${esc(sent)}`],
    ['Approved so far', gate.approvedBy.length ? `${gate.approvedBy.length} of ${gate.quorum}: ${esc(gate.approvedBy.join(', '))}` : `none of ${gate.quorum}`],
    ['Waits until', esc(when(gate.deadline))],
    ['You decide as', `<strong>${esc(v.approver)}</strong>${v.signedInAs ? ` (signed in as ${esc(v.signedInAs)})` : ''}`],
    ['This link', `works once, until ${esc(when(v.expiresAt * 1000))}`],
  ];
  const details = gate.details?.length ? `<h2>What changes</h2><pre>${esc(gate.details.join('\n'))}</pre>` : '';
  const notice = v.notice ? `<p class="state bad" role="alert">${esc(v.notice)}</p>` : '';
  return page(`Approve "${gate.gate}"?`, `${notice}
<p class="state"><strong>${esc(gate.summary)}</strong></p>${details}
<dl>${rows.map(([k, val]) => `<dt>${esc(k)}</dt><dd>${val}</dd>`).join('')}</dl>
${decisionForm(v.token, gate.fingerprint)}
<h2>The run so far</h2><pre>${esc(runText(progress))}</pre>`);
}

/** `fingerprint`: of the version shown; Approve counts for that version only. */
const decisionForm = (token: string, fingerprint?: string) => `<form method="post" action="/approve">
<input type="hidden" name="t" value="${esc(token)}">${fingerprint ? `\n<input type="hidden" name="fp" value="${esc(fingerprint)}">` : ''}
<p><label for="reason">Reason (required to reject)</label><br><textarea id="reason" name="reason" maxlength="2000"></textarea></p>
<div class="actions"><button class="approve" type="submit" name="decision" value="approve">Approve</button>
<button class="reject" type="submit" name="decision" value="reject">Reject</button></div>
</form>`;

/** When no worker can answer the progress query: the link's own facts, and the same buttons. */
export function blindApprovalForm(token: string, claim: ApprovalClaim): string {
  return page(`Approve "${claim.gate}"?`, `<p class="state">Run <code>${esc(claim.workflowId)}</code> is waiting, but its progress cannot be read right now
(no worker is running). You can still decide as <strong>${esc(claim.approver)}</strong>: the decision is delivered to the run, and it counts
only if the gate "${esc(claim.gate)}" is still open when the runbook resumes. The request you received says what the gate is for.
This link works once, until ${esc(when(claim.exp * 1000))}.</p>
${decisionForm(token)}`);
}

/** A genuine link that only ran out of time. */
export function expiredPage(claim: ApprovalClaim): string {
  return message('This link has expired',
    `It was for "${claim.gate}" of run ${claim.workflowId}, for ${claim.approver}, and expired ${when(claim.exp * 1000)}. Nothing was sent. ` +
    'If the gate still waits, ask for a new link (npm run runbook -- link <run> --gate <gate> --for <you>) or open your approvals inbox.', 'bad');
}

export interface InboxRow {
  workflowId: string;
  runbook: string;
  title: string;
  gate: GateProgress;
  /** A fresh signed link for this approver, when the inbox is an approver's. */
  link?: string;
  /** Where an operator can look at the run. */
  uiUrl?: string;
}

export function inboxPage(who: { approver?: string; operator?: boolean }, rows: InboxRow[], unreadable: string[], now = Date.now()): string {
  const heading = who.approver ? `Waiting for you, ${who.approver}` : 'Runs waiting for a person';
  const body = rows.length ? `<table><thead><tr><th>Runbook</th><th>Waiting for</th><th>Waiting since</th><th></th></tr></thead><tbody>
${rows.map((r) => `<tr><td>${esc(r.title)}<br><code>${esc(r.workflowId)}</code></td>
<td><strong>${esc(r.gate.gate)}</strong>: ${esc(r.gate.summary)}<br>${r.gate.approvedBy.length} of ${r.gate.quorum} approved${r.gate.approvers ? `; asked: ${esc(r.gate.approvers.join(', '))}` : ''}; until ${esc(when(r.gate.deadline, now))}</td>
<td>${esc(span(now - Date.parse(r.gate.openedAt)))}</td>
<td class="act">${r.link ? `<a href="${esc(r.link)}">Decide</a>` : r.uiUrl ? `<a href="${esc(r.uiUrl)}">Open in Temporal UI</a>` : ''}</td></tr>`).join('\n')}
</tbody></table>` : '<p class="state ok" role="status">Nothing is waiting for a decision.</p>';
  const note = unreadable.length ? `<p class="state bad">${unreadable.length} waiting run(s) could not be read (no worker answering): ${esc(unreadable.slice(0, 20).join(', '))}</p>` : '';
  const foot = who.approver
    ? '<p>Each Decide link shows the run first; only the buttons on that page decide. The links are made for you and work once.</p>'
    : '<p>Operators see every waiting run; a decision needs the approver\'s own link (npm run runbook -- link &lt;run&gt; --gate &lt;gate&gt; --for &lt;approver&gt;).</p>';
  return page(heading, `${body}${note}${foot}`);
}
