/**
 * Approval gates: a run waits for `approve` / `reject` signals, as long as the gate's timeout.
 * A decision counts only for a gate that is open now: one sent earlier is recorded as ignored,
 * and a link counts only for the opening (nonce) it was made for. When the gate opens it draws
 * its nonce and sends the approval requests; the links are signed and delivered by an activity
 * and never pass through here.
 */
import { ApplicationFailure, CancellationScope, condition, isCancellation, proxyActivities, setHandler, uuid4 } from '@temporalio/workflow';
import type { ApprovalActivities } from '../../activities/approvals';
import { durationSeconds, maxLinkTtlSeconds, type ApprovalRecipient } from '../../contracts/input';
import {
  approveSignal, decideGateUpdate, rejectSignal, reviewGateUpdate, signalDescriptions,
  type ApprovalLedger, type GateLook, type ApprovalRequestProgress, type Decision, type DecisionAnswer, type DecisionRecord, type DecisionVia,
  type GateDecision, type GateProgress,
} from '../../contracts/messages';
import { failureText } from '../../contracts/failure';
import { now } from './run-state';

/** What a workflow gives the desk: its ledger (part of its `progress`), and how it shows that it waits for a person. */
export interface ApprovalHost {
  readonly progress: ApprovalLedger & { dryRun?: boolean };
  /** The run waits for a person now (true), or goes on (false). */
  waiting(yes: boolean): void;
  /** Pushes the picture (current details, search attributes) after the ledger changed. */
  publish(): void;
  /** In a dry-run: records what the gate would do under its step. */
  plan(step: string, action: string): void;
}

/** A workflow's own channel for approval requests (e.g. a ticket in the target system). */
export interface GateDelivery {
  /** Shown in progress, e.g. "dhis2-message". */
  channel: string;
  /** Where it goes, e.g. the target's name. */
  to: string;
  /** One link each, each delivered to its approver alone. */
  approvers: string[];
  /** Sends the request and the links; the links are signed inside the activity it calls and never return. `failed`: approvers it could not reach. */
  send(request: GateRequest): Promise<{ ref?: string; failed?: Array<{ approver: string; error: string }> }>;
}

/** What a gate's delivery knows when the gate opens. */
export interface GateRequest {
  gate: string;
  nonce: string;
  summary: string;
  details?: string[];
  deadline: string;
  /** When the links expire, seconds since the epoch. */
  expiresAt: number;
  links: Array<{ approver: string; linkId: string }>;
}

export interface ApprovalOptions {
  /** One line shown in the UI, the CLI, the request and the approval page: what is being approved. */
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
  /** Send each of these a signed link when the gate opens. */
  notify?: ApprovalRecipient[];
  /** How long the links live: default until the gate times out; never more than 7 days. */
  linkTtl?: string;
  /** What exactly is decided, one line each; shown on the approval page. */
  details?: string[];
  /** Who asked for this decision when it is not the run's requestedBy (four-eyes applies to them). */
  requestedBy?: string;
  /** The workflow's own request channel, besides `notify`. */
  deliver?: GateDelivery;
  /** The fingerprint of the exact content this gate decides: then only approvals carrying it count (see `revise`). */
  fingerprint?: string;
  /** Reads the content again (e.g. a draft a reviewer may edit elsewhere) and `revise`s the gate; run by the reviewGate update. */
  review?: () => Promise<void>;
  /**
   * Reads the content again before an approval sent as a decideGate update counts (a person waits
   * for the answer: keep it quick), and `revise`s the gate when it changed; `review` when absent.
   */
  recheck?: () => Promise<void>;
}

/** What a gate bound to content shows and counts approvals for; `revise` replaces it when the content changed. */
export interface GateContent {
  fingerprint: string;
  summary: string;
  details?: string[];
  /** Who made the change that made this content (a later source change): with four-eyes they may not approve it. */
  author?: string;
}

export type ApprovalResult =
  | { outcome: 'approved'; gate: string; by: string[] }
  | { outcome: 'rejected'; gate: string; by: string; reason: string }
  | { outcome: 'timedOut'; gate: string }
  | { outcome: 'withdrawn'; gate: string; reason: string };

/** The failure that ends a run whose gate was rejected or timed out (compensations then run). */
export function approvalFailure(result: Exclude<ApprovalResult, { outcome: 'approved' }>): ApplicationFailure {
  if (result.outcome === 'rejected') return ApplicationFailure.nonRetryable(`Gate "${result.gate}" was rejected by ${result.by}: ${result.reason}`, 'ApprovalRejected');
  if (result.outcome === 'withdrawn') return ApplicationFailure.nonRetryable(`Gate "${result.gate}" was withdrawn: ${result.reason}`, 'ApprovalWithdrawn');
  return ApplicationFailure.nonRetryable(`Gate "${result.gate}" timed out without approval`, 'ApprovalTimedOut');
}

/**
 * Ignored decisions recorded per run, whatever gate they name (a sender picks the name, so a cap
 * per name caps nothing); past it they are only counted (progress.droppedDecisions).
 */
export const maxIgnoredPerRun = 20;
/** reviewGate updates a run runs (each reads the content and leaves events in history); past it they are refused without a trace. */
export const maxReviewsPerRun = 500;

const same = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();
const text = (v: unknown, max: number): string | undefined => (typeof v === 'string' && v.trim() ? v.trim().slice(0, max) : undefined);
const vias: DecisionVia[] = ['link', 'cli', 'ui'];

const requests = proxyActivities<ApprovalActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 6 },
});

export class ApprovalDesk {
  /**
   * Every link seen, recorded or not, with the fingerprint it carried: a link counts once for one
   * content (an approval for content that then changed no longer counts, and the same link may
   * approve the new content), and a replay does not grow the run.
   */
  private readonly seenLinks = new Set<string>();
  /** How each open gate re-reads its content (ApprovalOptions.review), and before an approval counts (recheck). */
  private readonly reviewers = new Map<string, () => Promise<void>>();
  private readonly recheckers = new Map<string, () => Promise<void>>();
  private reviews = 0;

  constructor(private readonly state: ApprovalHost) {
    const receive = (decision: 'approve' | 'reject') => (d: Decision): void => { this.receive(decision, d); };
    setHandler(approveSignal, receive('approve'), { description: signalDescriptions.approve });
    setHandler(rejectSignal, receive('reject'), { description: signalDescriptions.reject });
    setHandler(reviewGateUpdate, (look) => this.review(look), {
      validator: (look) => this.checkLook(look),
      description: 'Read the content an open gate decides again and answer with the gate: {"gate": "<gate>", "nonce": "<nonce>"}',
    });
    setHandler(decideGateUpdate, (d) => this.decide(d), {
      validator: (d) => this.checkDecision(d),
      description: 'Decide a gate and get the outcome: {"gate": "<gate>", "decision": "approve" | "reject", "by": "<your name>", "reason": "<why>", "fingerprint": "<version, for a gate that shows one>"}',
    });
  }

  /** A decision that could not count is refused before anything is written (a refused update leaves no trace). */
  private checkDecision(raw: GateDecision): void {
    const d = (typeof raw === 'object' && raw) ? raw : ({} as GateDecision);
    if (d.decision !== 'approve' && d.decision !== 'reject') throw new Error('a decision needs "decision": "approve" or "reject"');
    const entry = this.entry(d.decision, d);
    if (entry.linkId && this.seenLinks.has(`${entry.linkId} ${entry.fingerprint ?? ''}`)) throw new Error('this link was already used for this version');
    const note = this.verdict(entry, text(d.nonce, 100));
    if (note) throw new Error(note);
  }

  /**
   * Reads the content again (a gate bound to content), then counts the decision, and answers with the
   * outcome and the gate. Past the run's budget of looks the content is not read again: the approval
   * counts for the version the gate shows, and the apply refuses any other.
   */
  private async decide(d: GateDecision): Promise<DecisionAnswer> {
    const gateName = text(d.gate, 100) ?? '';
    const recheck = d.decision === 'approve' ? this.recheckers.get(gateName) : undefined;
    if (recheck && this.reviews < maxReviewsPerRun) {
      this.reviews += 1;
      await recheck();
    }
    const entry = this.receive(d.decision, d);
    const gate = this.state.progress.approvals.find((g) => g.gate === gateName);
    return typeof entry === 'string' ? { outcome: 'ignored', note: entry, gate } : { outcome: entry.outcome, note: entry.note, gate };
  }

  /** A look is for an open gate's current opening, within the run's budget; refused looks never enter history. */
  private checkLook(look: GateLook): void {
    const gate = typeof look?.gate === 'string' ? this.state.progress.approvals.find((g) => g.gate === look.gate) : undefined;
    if (!gate || gate.state !== 'open') throw new Error(`gate ${JSON.stringify(String(look?.gate ?? '')).slice(0, 102)} is not open`);
    if (look.nonce !== gate.nonce) throw new Error(`the nonce is not that of the gate's current opening`);
    if (this.reviews >= maxReviewsPerRun) throw new Error(`this run already answered ${maxReviewsPerRun} looks; the gate is shown as last read`);
  }

  private async review(look: GateLook): Promise<GateProgress> {
    this.reviews += 1;
    const reviewer = this.reviewers.get(look.gate);
    if (reviewer) await reviewer();
    return this.state.progress.approvals.find((g) => g.gate === look.gate)!;
  }

  /**
   * The content an open gate decides changed (a reviewer edited the draft, the source changed it):
   * the gate shows and counts approvals for the new content only. Returns who had approved the old
   * content (their approvals no longer count), or undefined when nothing changed.
   */
  revise(gate: string, content: GateContent): string[] | undefined {
    const record = this.state.progress.approvals.find((g) => g.gate === gate && g.state === 'open');
    if (!record || record.fingerprint === content.fingerprint) return undefined;
    const voided = record.approvedBy;
    Object.assign(record, { fingerprint: content.fingerprint, summary: content.summary, details: content.details, approvedBy: [] });
    if (content.author && !same(content.author, record.requestedBy ?? '') && !(record.alsoBy ?? []).some((a) => same(a, content.author!))) {
      record.alsoBy = [...(record.alsoBy ?? []), content.author.slice(0, 200)];
    }
    this.state.publish();
    return voided;
  }

  async wait(gate: string, step: string | undefined, opts: ApprovalOptions): Promise<ApprovalResult> {
    const progress = this.state.progress;
    if (progress.approvals.some((g) => g.gate === gate)) {
      throw ApplicationFailure.nonRetryable(`Gate "${gate}" was already used in this run: give each gate its own name`, 'RunbookBug');
    }
    const requestedBy = opts.requestedBy ?? progress.requestedBy;
    if (opts.fourEyes && !requestedBy) {
      throw ApplicationFailure.nonRetryable(
        `Gate "${gate}" requires four-eyes approval, so the input must say who started the run: set "requestedBy"`, 'InvalidInput');
    }
    const timeoutMs = toMs(opts.timeout);
    const record: GateProgress = {
      gate, step, summary: opts.summary, details: opts.details, state: 'open', nonce: uuid4(), approvers: opts.approvers, quorum: opts.quorum ?? 1,
      fourEyes: opts.fourEyes ?? false, requestedBy: opts.requestedBy, approvedBy: [], openedAt: now(),
      deadline: new Date(Date.now() + timeoutMs).toISOString(), onTimeout: opts.onTimeout ?? 'fail', requests: [],
      ...(opts.fingerprint ? { fingerprint: opts.fingerprint } : {}),
    };
    progress.approvals.push(record);
    if (progress.dryRun) {
      if (step) {
        this.state.plan(step, `would wait for approval "${gate}": ${opts.summary} (${record.quorum} approval(s), up to ${opts.timeout})`);
        for (const r of opts.notify ?? []) this.state.plan(step, `would send an approval request for ${r.approver} to ${[r.email, r.webhook && `webhook ${r.webhook}`].filter(Boolean).join(' and ')}`);
      }
      Object.assign(record, { state: 'approved', reason: 'dry-run: the gate would wait here', closedAt: now() });
      return { outcome: 'approved', gate, by: [] };
    }

    this.state.waiting(true);
    if (opts.review) this.reviewers.set(gate, opts.review);
    if (opts.recheck ?? opts.review) this.recheckers.set(gate, (opts.recheck ?? opts.review)!);
    const sending = this.sendRequests(record, opts);
    const decided = await condition(() => record.state !== 'open', timeoutMs);
    this.reviewers.delete(gate);
    this.recheckers.delete(gate);
    sending?.cancel(); // links to a closed gate are useless: stop any delivery still retrying
    if (!decided) Object.assign(record, { state: 'timedOut', closedAt: now() });
    this.state.waiting(false);

    if (record.state === 'approved') return { outcome: 'approved', gate, by: record.approvedBy };
    if (record.state === 'rejected') return { outcome: 'rejected', gate, by: record.rejectedBy ?? '', reason: record.reason ?? '' };
    if (record.state === 'withdrawn') return { outcome: 'withdrawn', gate, reason: record.reason ?? '' };
    if (record.onTimeout === 'fail') {
      throw ApplicationFailure.nonRetryable(
        `Gate "${gate}" timed out after ${opts.timeout} without ${record.quorum} approval(s) (had ${record.approvedBy.length}); ` +
        'nothing after it was done. Start the runbook again when approvers are available.', 'ApprovalTimedOut');
    }
    return { outcome: 'timedOut', gate };
  }

  /** Sends the gate's approval requests in the background; a delivery that fails for good is recorded, and the gate still waits. */
  private sendRequests(record: GateProgress, opts: ApprovalOptions): CancellationScope | undefined {
    const targets = (opts.notify ?? []).flatMap((r) => [
      ...(r.email ? [{ approver: r.approver, channel: 'email' as const, to: r.email }] : []),
      ...(r.webhook ? [{ approver: r.approver, channel: 'webhook' as const, to: r.webhook }] : []),
    ]);
    const deliver = opts.deliver;
    if (!targets.length && !deliver?.approvers.length) return undefined;
    const deadlineSeconds = Date.parse(record.deadline) / 1000;
    const ttl = Math.min(opts.linkTtl ? durationSeconds(opts.linkTtl) : Infinity, maxLinkTtlSeconds);
    const expiresAt = Math.floor(Math.min(Date.now() / 1000 + ttl, deadlineSeconds));
    const p = this.state.progress;
    const scope = new CancellationScope();
    void scope.run(() => Promise.all([deliver?.approvers.length && this.sendOwn(record, deliver, expiresAt), ...targets.map(async (t) => {
      const entry: ApprovalRequestProgress = { ...t, linkId: uuid4(), state: 'sending' };
      record.requests.push(entry);
      this.state.publish();
      try {
        // The summary is the line the UI's event view shows for this activity.
        await requests.sendApprovalRequest.executeWithOptions({ summary: `Ask ${t.approver} by ${t.channel} to decide gate ${record.gate}` }, [{
          runbook: p.runbook, title: p.title, gate: record.gate, nonce: record.nonce, summary: record.summary, requestedBy: p.requestedBy,
          deadline: record.deadline, expiresAt, channel: t.channel, to: t.to, links: [{ approver: t.approver, linkId: entry.linkId }],
        }]);
        Object.assign(entry, { state: 'sent', sentAt: now() });
      } catch (err) {
        Object.assign(entry, isCancellation(err) ? { state: 'cancelled' } : { state: 'failed', error: failureText(err) });
      }
      this.state.publish();
    })]));
    return scope;
  }

  /** The workflow's own channel: one activity sends every approver their own link (and says whom it could not reach). */
  private async sendOwn(record: GateProgress, deliver: GateDelivery, expiresAt: number): Promise<void> {
    const entries: ApprovalRequestProgress[] = deliver.approvers.map((approver) => ({ approver, channel: deliver.channel, to: deliver.to, linkId: uuid4(), state: 'sending' }));
    record.requests.push(...entries);
    this.state.publish();
    let change: Partial<ApprovalRequestProgress>;
    let failed: Array<{ approver: string; error: string }> = [];
    try {
      const sent = await deliver.send({
        gate: record.gate, nonce: record.nonce, summary: record.summary, details: record.details, deadline: record.deadline, expiresAt,
        links: entries.map((e) => ({ approver: e.approver, linkId: e.linkId })),
      });
      change = { state: 'sent', sentAt: now(), ref: sent.ref };
      failed = Array.isArray(sent.failed) ? sent.failed : [];
    } catch (err) {
      change = isCancellation(err) ? { state: 'cancelled' } : { state: 'failed', error: failureText(err) };
    }
    for (const e of entries) {
      const notReached = failed.find((f) => f.approver === e.approver);
      Object.assign(e, change, notReached ? { state: 'failed', error: String(notReached.error).slice(0, 500), sentAt: undefined } : {});
    }
    this.state.publish();
  }

  /** Closes an open gate from the workflow itself: what it asked about no longer needs a decision. */
  withdraw(gate: string, reason: string): boolean {
    const record = this.state.progress.approvals.find((g) => g.gate === gate && g.state === 'open');
    if (!record) return false;
    Object.assign(record, { state: 'withdrawn', reason, closedAt: now() });
    this.state.publish();
    return true;
  }

  /** A decision as the run keeps it (text clipped, `via` one of the known ones). */
  private entry(decision: 'approve' | 'reject', d: Decision): DecisionRecord {
    return {
      gate: text(d.gate, 100) ?? '', decision, by: text(d.by, 200) ?? '', reason: text(d.reason, 2000),
      via: vias.includes(d.via as DecisionVia) ? d.via as DecisionVia : 'ui', origin: text(d.origin, 200), linkId: text(d.linkId, 100),
      fingerprint: text(d.fingerprint, 100), receivedAt: now(), outcome: 'ignored',
    };
  }

  /** Records a decision and counts it if it can; returns the record, or why it was only counted as dropped. */
  private receive(decision: 'approve' | 'reject', raw: Decision): DecisionRecord | string {
    const d = (typeof raw === 'object' && raw) ? raw : ({} as Decision);
    const entry = this.entry(decision, d);
    if (entry.linkId) {
      const seen = `${entry.linkId} ${entry.fingerprint ?? ''}`;
      if (this.seenLinks.has(seen)) return this.drop('this link was already used for this version');
      this.seenLinks.add(seen);
    }
    const known = this.state.progress.approvals.some((g) => g.gate === entry.gate);
    this.judge(entry, text(d.nonce, 100));
    if (entry.outcome === 'ignored') {
      const ignored = this.state.progress.decisions.filter((o) => o.outcome === 'ignored').length;
      if (ignored >= maxIgnoredPerRun) return this.drop(`${entry.note} (not recorded: the run keeps ${maxIgnoredPerRun} ignored decisions)`);
      // A made-up gate name is the sender's text: only its outline is kept.
      if (!known) Object.assign(entry, { gate: entry.gate.slice(0, 40), by: entry.by.slice(0, 40), reason: undefined, origin: entry.origin?.slice(0, 100) });
    }
    this.state.progress.decisions.push(entry);
    this.state.publish();
    return entry;
  }

  private drop(why: string): string {
    this.state.progress.droppedDecisions += 1;
    return why;
  }

  /** Counts a decision for its open gate, or says why it does not count. */
  private judge(d: DecisionRecord, nonce: string | undefined): void {
    const note = this.verdict(d, nonce);
    if (note) {
      d.outcome = 'ignored';
      d.note = note;
      return;
    }
    const gate = this.state.progress.approvals.find((g) => g.gate === d.gate)!;
    d.outcome = 'accepted';
    if (d.decision === 'reject') {
      Object.assign(gate, { state: 'rejected', rejectedBy: d.by, reason: d.reason || '(no reason given)', closedAt: now() });
      return;
    }
    gate.approvedBy.push(d.by);
    if (gate.approvedBy.length >= gate.quorum) Object.assign(gate, { state: 'approved', reason: d.reason, closedAt: now() });
  }

  /** Why a decision would not count now, or undefined when it counts (changes nothing). */
  private verdict(d: DecisionRecord, nonce: string | undefined): string | undefined {
    if (!d.gate || !d.by) return 'a decision needs "gate" and "by"';
    const gate = this.state.progress.approvals.find((g) => g.gate === d.gate);
    if (!gate) return `gate "${d.gate}" is not open: a decision counts only while its gate waits; send it again then`;
    if (gate.state !== 'open') return `gate already ${gate.state}`;
    if (d.via === 'link' && !nonce) return 'a link decision must carry the nonce of its gate';
    if (nonce && nonce !== gate.nonce) return `this link was made for another opening of gate "${d.gate}"`;
    if (gate.approvers && !gate.approvers.some((a) => same(a, d.by))) return `${d.by} is not on the approvers list`;
    if (d.decision === 'approve' && gate.fingerprint && d.fingerprint !== gate.fingerprint) {
      return d.fingerprint
        ? `the draft changed since you opened this page: you saw version ${d.fingerprint.slice(0, 12)}, it is now ${gate.fingerprint.slice(0, 12)}; look at it again`
        : `this gate approves one exact version: send its fingerprint ("fingerprint": "${gate.fingerprint}", shown with the gate) after reading it`;
    }
    if (d.decision === 'reject') return undefined;
    const requester = gate.requestedBy ?? this.state.progress.requestedBy;
    if (gate.fourEyes && requester && same(requester, d.by)) {
      return gate.requestedBy ? `four-eyes: ${requester} asked for this change and may not approve it` : 'four-eyes: the person who started the run may not approve it';
    }
    if (gate.fourEyes && gate.alsoBy?.some((a) => same(a, d.by))) return `four-eyes: ${d.by} changed what this gate decides and may not approve it`;
    if (gate.approvedBy.some((a) => same(a, d.by))) return `${d.by} already approved; approvals must come from distinct people`;
    return undefined;
  }
}

export function toMs(timeout: string | number): number {
  if (typeof timeout === 'number') return timeout;
  const seconds = durationSeconds(timeout);
  if (Number.isNaN(seconds)) throw ApplicationFailure.nonRetryable(`Not a duration: "${timeout}" (use e.g. "30s", "15m", "24h", "7d")`, 'InvalidInput');
  return seconds * 1000;
}
