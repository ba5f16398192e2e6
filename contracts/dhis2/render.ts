/**
 * How a sync shows itself: the Temporal UI's current details, the CLI's status, the approval
 * page, and the lines of a field diff. Pure functions, used by the workflow and by Node code alike.
 */
import type { DraftView, SyncProgress } from './messages';
import { syncWorkflowId, type ResourceType } from './resources';

const typeLabel: Record<ResourceType, string> = { organisationUnit: 'Org unit', organisationUnitGroup: 'Org unit group', organisationUnitGroupSet: 'Org unit group set' };

export const syncTitle = (target: string, type: ResourceType, uid: string): string => `${typeLabel[type]} ${uid} → ${target}`;

const shown = (v: unknown): string => {
  const s = v === undefined || v === null ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v);
  return (s.length > 200 ? `${s.slice(0, 200)}…` : s).replace(/\s+/g, ' ');
};

/** One line per changed field, the fields that need approval first and marked with *. */
export function diffLines(changes: Array<{ field: string; old?: unknown; new?: unknown }>, gated: string[]): string[] {
  const sorted = [...changes].sort((a, b) => Number(gated.includes(b.field)) - Number(gated.includes(a.field)));
  return sorted.slice(0, 40).map((c) => `${gated.includes(c.field) ? '* ' : '  '}${c.field}: ${shown(c.old)} -> ${shown(c.new)}`);
}

/** A fingerprint as people compare it: its first 12 hex digits. */
export const shortFingerprint = (fingerprint: string): string => fingerprint.slice(0, 12);

/** What an approver reads before deciding: the version, the whole import, its diff against the target now, and where to edit it. */
export function draftViewLines(view: DraftView, target: string, reviewLink: string): string[] {
  const verb = { create: 'create', update: 'update', delete: 'delete' }[view.operation];
  return [
    `Version ${shortFingerprint(view.fingerprint)} of the draft (fingerprint ${view.fingerprint}): an approval counts for this version only.`,
    ...(view.invalid ? [`This version cannot be applied: ${view.invalid}. Fix the draft or reject.`] : []),
    '',
    view.operation === 'delete' ? `${target} will delete:` : `${target} will receive exactly this (${verb}):`,
    view.object,
    '',
    `Against what ${target} has now (* = needs approval):`,
    ...(view.changes.length ? diffLines(view.changes, view.gatedFields) : ['  (no difference)']),
    '',
    `Draft (a reviewer may edit it until the decision; an edit is a new version): ${reviewLink}`,
  ];
}

/** What the Temporal UI shows as the workflow's current details. */
export function renderSync(p: SyncProgress): string {
  const id = syncWorkflowId(p.target, p.type, p.uid);
  const lines = [
    `**${syncTitle(p.target, p.type, p.uid)}** — ${p.status.replace(/_/g, ' ')}`,
    '',
    `${p.changesSeen} source change(s), ${p.passes} pass(es)${p.lastCommittedAt ? `, last source commit ${p.lastCommittedAt}` : ''}`,
  ];
  if (p.waitingFor?.length) lines.push('', `Waiting until the target has: ${p.waitingFor.map((w) => `${w.type} ${w.uid}`).join(', ')}`);
  const gate = p.awaiting && (p.approvals ?? []).find((g) => g.gate === p.awaiting!.gate && g.state === 'open');
  if (p.awaiting && gate) {
    const a = p.awaiting;
    lines.push('', `**Waiting for approval** \`${a.gate}\` since ${a.since}: ${a.operation} touching ${a.fields.join(', ')} ` +
      `(${gate.approvedBy.length}/${gate.quorum}${gate.approvers ? ` of ${gate.approvers.join(', ')}` : ''}, until ${gate.deadline})`);
    lines.push(...(gate.details ?? []).map((d) => `    ${d}`));
    lines.push(`Draft${a.edited ? ' (edited by a reviewer)' : ''}: ${a.reviewLink}${a.ticket ? ` · ticket ${a.ticket}` : ''}`);
  }
  if (p.parked) {
    lines.push('', `**Parked** since ${p.parked.at} (${p.parked.queued} later change(s) queued behind it): ${p.parked.error}`);
    lines.push(...p.parked.errors.map((e) => `- ${e.code}${e.property ? ` (${e.property})` : ''}: ${e.message}`));
    lines.push('', `Retry: npm run runbook -- retry ${id} · drop: npm run runbook -- drop ${id} --reason "..."`);
  } else if (p.error) lines.push('', `Failed: ${p.error}`);
  if (p.recent.length) lines.push('', ...p.recent.map((r) => `- ${r.at} ${r.action}${r.changes?.length ? `: ${r.changes.join(', ')}` : ''}${r.note ? ` — ${r.note}` : ''}${r.error ? ` — ${r.error}` : ''}`));
  return lines.join('\n');
}
