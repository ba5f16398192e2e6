import type { Progress } from '../../workflows/kit/messages';

const icons: Record<string, string> = { pending: '[ ]', running: '[>]', done: '[x]', skipped: '[-]', failed: '[!]', compensated: '[~]' };

/** The run as an operator reads it in a terminal. */
export function formatProgress(p: Progress): string {
  const lines = [`${p.title}${p.dryRun ? ' (dry-run)' : ''}: ${p.status}${p.requestedBy ? `, requested by ${p.requestedBy}` : ''}`];
  for (const s of p.steps) {
    lines.push(`  ${icons[s.state]} ${s.title} (${s.name})${s.note ? ` — ${s.note}` : ''}${s.error ? ` — ${s.error}` : ''}`);
    for (const a of s.actions) lines.push(`        ${a}`);
  }
  for (const g of p.approvals) {
    lines.push(`  gate ${g.gate}: ${g.state} — ${g.summary} (${g.approvedBy.length}/${g.quorum}${g.approvers ? ` of ${g.approvers.join(', ')}` : ''}` +
      `${g.state === 'open' ? `, until ${g.deadline}` : ''})${g.reason ? ` — ${g.reason}` : ''}`);
    for (const r of g.requests ?? []) lines.push(`        request for ${r.approver} by ${r.channel} to ${r.to}: ${r.state} (link ${r.linkId})${r.error ? ` — ${r.error}` : ''}`);
  }
  for (const d of p.decisions) {
    const via = d.via === 'link' ? `link ${d.linkId}` : `${d.via}${d.origin ? ` ${d.origin}` : ''}`;
    lines.push(`  decision: ${d.decision} ${d.gate} by ${d.by} via ${via} at ${d.receivedAt}: ${d.outcome}${d.note ? ` (${d.note})` : ''}`);
  }
  if (p.droppedDecisions) lines.push(`  ${p.droppedDecisions} further ignored decision(s) not recorded (replayed links or past the cap)`);
  for (const c of p.compensations) lines.push(`  undo "${c.title}" (${c.step}): ${c.state}${c.error ? ` — ${c.error}` : ''}`);
  if (p.error) lines.push(`  error: ${p.error}`);
  return lines.join('\n');
}
