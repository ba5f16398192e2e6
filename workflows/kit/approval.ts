/**
 * Approval gates: a run waits for `approve` / `reject` signals, as long as the gate's timeout.
 * Decisions that arrive before their gate opens wait in the inbox; every decision is recorded
 * with whether it counted and why not.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { approveSignal, rejectSignal, signalDescriptions, type Decision, type DecisionRecord, type GateProgress } from './messages';
import { now, type RunState } from './run-state';

export interface ApprovalOptions {
  /** One line shown in the UI, the CLI and on the approval page: what is being approved. */
  summary: string;
  /** Who may decide; anyone when absent. */
  approvers?: string[];
  /** Distinct approvals needed (default 1). */
  quorum?: number;
  /** The run's starter (input.requestedBy) may not approve. */
  fourEyes?: boolean;
  /** How long to wait, e.g. "24h". Every wait ends. */
  timeout: string | number;
  /** On timeout: fail the run (default), or return `timedOut` so the runbook takes its safe path. */
  onTimeout?: 'fail' | 'return';
}

export type ApprovalResult =
  | { outcome: 'approved'; gate: string; by: string[] }
  | { outcome: 'rejected'; gate: string; by: string; reason: string }
  | { outcome: 'timedOut'; gate: string };

/** The failure that ends a run whose gate was rejected or timed out (compensations then run). */
export function approvalFailure(result: Exclude<ApprovalResult, { outcome: 'approved' }>): ApplicationFailure {
  return result.outcome === 'rejected'
    ? ApplicationFailure.nonRetryable(`Gate "${result.gate}" was rejected by ${result.by}: ${result.reason}`, 'ApprovalRejected')
    : ApplicationFailure.nonRetryable(`Gate "${result.gate}" timed out without approval`, 'ApprovalTimedOut');
}

const same = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

export class ApprovalDesk {
  private readonly inbox: DecisionRecord[] = [];

  constructor(private readonly state: RunState) {
    const receive = (decision: 'approve' | 'reject') => (d: Decision) => this.receive(decision, d);
    setHandler(approveSignal, receive('approve'), { description: signalDescriptions.approve });
    setHandler(rejectSignal, receive('reject'), { description: signalDescriptions.reject });
  }

  async wait(gate: string, step: string | undefined, opts: ApprovalOptions): Promise<ApprovalResult> {
    const progress = this.state.progress;
    if (progress.approvals.some((g) => g.gate === gate)) {
      throw ApplicationFailure.nonRetryable(`Gate "${gate}" was already used in this run: give each gate its own name`, 'RunbookBug');
    }
    if (opts.fourEyes && !progress.requestedBy) {
      throw ApplicationFailure.nonRetryable(
        `Gate "${gate}" requires four-eyes approval, so the input must say who started the run: set "requestedBy"`, 'InvalidInput');
    }
    const timeoutMs = toMs(opts.timeout);
    const record: GateProgress = {
      gate, step, summary: opts.summary, state: 'open', approvers: opts.approvers, quorum: opts.quorum ?? 1,
      fourEyes: opts.fourEyes ?? false, approvedBy: [], openedAt: now(),
      deadline: new Date(Date.now() + timeoutMs).toISOString(), onTimeout: opts.onTimeout ?? 'fail',
    };
    progress.approvals.push(record);
    if (progress.dryRun) {
      if (step) this.state.step(step).actions.push(`would wait for approval "${gate}": ${opts.summary} (${record.quorum} approval(s), up to ${opts.timeout})`);
      record.state = 'approved';
      record.reason = 'dry-run: the gate would wait here';
      record.closedAt = now();
      return { outcome: 'approved', gate, by: [] };
    }

    this.state.setStatus('waiting_for_approval');
    for (const d of this.inbox.filter((d) => d.gate === gate && d.outcome === 'pending')) this.judge(d);
    const decided = await condition(() => record.state !== 'open', timeoutMs);
    if (!decided) {
      record.state = 'timedOut';
      record.closedAt = now();
    }
    this.state.setStatus('running');

    if (record.state === 'approved') return { outcome: 'approved', gate, by: record.approvedBy };
    if (record.state === 'rejected') return { outcome: 'rejected', gate, by: record.rejectedBy ?? '', reason: record.reason ?? '' };
    if (record.onTimeout === 'fail') {
      throw ApplicationFailure.nonRetryable(
        `Gate "${gate}" timed out after ${opts.timeout} without ${record.quorum} approval(s) (had ${record.approvedBy.length}); ` +
        'nothing after it was done. Start the runbook again when approvers are available.', 'ApprovalTimedOut');
    }
    return { outcome: 'timedOut', gate };
  }

  private receive(decision: 'approve' | 'reject', d: Decision): void {
    const entry: DecisionRecord = {
      gate: String(d?.gate ?? ''), decision, by: String(d?.by ?? '').trim(), reason: d?.reason, via: d?.via, linkId: d?.linkId,
      receivedAt: now(), outcome: 'pending',
    };
    this.state.progress.decisions.push(entry);
    this.inbox.push(entry);
    this.judge(entry);
    this.state.publish();
  }

  /** Counts a decision for its gate, or records why it did not count. Leaves it pending if the gate is not open yet. */
  private judge(d: DecisionRecord): void {
    const ignore = (note: string) => { d.outcome = 'ignored'; d.note = note; };
    if (!d.gate || !d.by) return ignore('a decision needs "gate" and "by"');
    const gate = this.state.progress.approvals.find((g) => g.gate === d.gate);
    if (!gate) return; // not open yet: kept until it opens
    if (gate.state !== 'open') return ignore(`gate already ${gate.state}`);
    if (d.linkId && this.state.progress.decisions.some((o) => o !== d && o.linkId === d.linkId && o.outcome === 'accepted')) {
      return ignore('this approval link was already used');
    }
    if (gate.approvers && !gate.approvers.some((a) => same(a, d.by))) return ignore(`${d.by} is not on the approvers list`);
    if (d.decision === 'reject') {
      d.outcome = 'accepted';
      Object.assign(gate, { state: 'rejected', rejectedBy: d.by, reason: d.reason || '(no reason given)', closedAt: now() });
      return;
    }
    if (gate.fourEyes && this.state.progress.requestedBy && same(this.state.progress.requestedBy, d.by)) {
      return ignore('four-eyes: the person who started the run may not approve it');
    }
    if (gate.approvedBy.some((a) => same(a, d.by))) return ignore(`${d.by} already approved; approvals must come from distinct people`);
    d.outcome = 'accepted';
    gate.approvedBy.push(d.by);
    if (gate.approvedBy.length >= gate.quorum) Object.assign(gate, { state: 'approved', reason: d.reason, closedAt: now() });
  }
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function toMs(timeout: string | number): number {
  if (typeof timeout === 'number') return timeout;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(timeout.trim());
  if (!m) throw ApplicationFailure.nonRetryable(`Not a duration: "${timeout}" (use e.g. "30s", "15m", "24h", "7d")`, 'InvalidInput');
  return Number(m[1]) * units[m[2]];
}
