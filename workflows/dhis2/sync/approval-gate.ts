/**
 * The approval of one gated change, from the gate opening to the ticket closing: the draft and
 * the ticket follow the source while the gate waits (each approver's link goes in a private message); the approved draft (as the reviewer left it)
 * is applied; every outcome is told in the ticket. Only this resource on this target waits.
 */
import { condition, patched, workflowInfo } from '@temporalio/workflow';
import type { ApplyOutcome, ApprovalNeeded, ReviewOutcome } from '../../../activities/dhis2/approval';
import type { SyncOutcome } from '../../../activities/dhis2/sync';
import type { TicketStatus } from '../../../activities/dhis2/target';
import type { AwaitedChange, DraftView, ParkedChange } from '../../../contracts/dhis2/messages';
import { diffLines, draftViewLines, shortFingerprint } from '../../../contracts/dhis2/render';
import { failureText } from '../../../contracts/failure';
import { ApprovalDesk, type ApprovalOptions, type ApprovalResult } from '../../kit/approval';
import { now } from '../../kit/run-state';
import type { SyncActivities } from './activities';
import { askForReferences } from './references';
import type { SyncState } from './state';
import { backoff } from './waits';

/** Closed gates (and their decisions) kept in progress. */
const keptGates = 5;

/** How a gated change ended: applied, parked (`failed`), or closed with nothing applied. */
export type Decided =
  | { action: 'applied'; operation: ApprovalNeeded['operation'] }
  | { action: 'failed'; error: string; errors: ParkedChange['errors'] }
  | { action: 'closed' };

/**
 * One opening of the gate: the change as it is now, and where its draft and ticket are. `bound`:
 * the gate decides one exact version of the draft (its fingerprint), and only that version is
 * applied; false only for openings recorded before approvals were bound (their runs replay as they ran).
 */
interface Opening { gate: string; awaiting: AwaitedChange; current: ApprovalNeeded; draftGone: boolean; bound: boolean; looking?: Promise<void> }

/** The patch that binds an approval to the draft's fingerprint (issue 22). */
const boundPatch = 'approval-bound-to-draft';
/** The patch that applies an approved draft in the worker first (a local activity), the target's queue when it is troubled. */
const applyInWorkerPatch = 'approval-apply-in-worker';
/** The patch that keeps every later author of a gated change from approving it under four-eyes. */
const everyAuthorPatch = 'four-eyes-every-author';

export class ApprovalGate {
  private readonly desk: ApprovalDesk;

  constructor(private readonly sync: SyncState, private readonly activities: SyncActivities) {
    this.desk = new ApprovalDesk(sync);
  }

  /** Waits for a decision on `first` (re-opening with new links while the approved draft cannot be applied), then closes the ticket. */
  async decide(first: ApprovalNeeded): Promise<Decided> {
    let change = first;
    let ticket: string | undefined;
    let preface: string | undefined;
    for (;;) {
      const { opening, result } = await this.open(change, ticket, preface);
      change = opening.current;
      ticket = opening.awaiting.ticket;
      this.trim();
      const verdict = await this.judge(opening, result, ticket);
      if (!('approvedBy' in verdict)) return verdict;
      const { approvedBy, fingerprint } = verdict;
      const applied = await this.apply(change, fingerprint);
      if (applied.action === 'draftChanged') {
        // Edited after the approval (e.g. while the apply waited for a parent): that version was never approved.
        this.sync.record({ action: 'draft changed after approval', note: `approved ${shortFingerprint(fingerprint!)}, the draft is now ${shortFingerprint(applied.view.fingerprint)}` });
        change = { ...change, view: applied.view };
        preface = `Approved by ${approvedBy}, but the draft changed after that approval (version ${shortFingerprint(fingerprint!)} was approved; ` +
          `it is now ${shortFingerprint(applied.view.fingerprint)}). Nothing was applied. Decide again on the new version, with a new link:`;
        continue;
      }
      if (applied.action === 'draftInvalid') {
        // The gate opens again, with new links in the same ticket: the old ones were used.
        this.sync.record({ action: 'draft refused', note: applied.reason });
        preface = `Approved by ${approvedBy}, but the draft cannot be applied: ${applied.reason}. Nothing was applied. ` +
          `Fix the draft (${change.reviewLink}), then decide again with a new link:`;
        continue;
      }
      return this.close(opening.gate, change, ticket, approvedBy, applied);
    }
  }

  /** Opens the gate and waits for its decision while following the source; returns when the gate closed. */
  private async open(change: ApprovalNeeded, ticket: string | undefined, preface: string | undefined) {
    const { progress } = this.sync;
    progress.gates += 1;
    const gate = `change-${progress.gates}`;
    progress.awaiting = { gate, operation: change.operation, fields: change.gatedFields, reviewLink: change.reviewLink, ticket, since: now() };
    const opening: Opening = { gate, awaiting: progress.awaiting, current: change, draftGone: false, bound: patched(boundPatch) };
    const decision = this.desk.wait(gate, undefined, this.request(opening, ticket, preface));
    let settled = false;
    void decision.then(() => { settled = true; }, () => { settled = true; });
    this.sync.record({ action: 'waiting for approval', changes: change.gatedFields, note: `gate ${gate}${change.author ? `, change by ${change.author}` : ''}` });
    await this.followSource(opening, () => settled);
    const result = await decision;
    progress.awaiting = undefined;
    return { opening, result };
  }

  /** What the gate asks, of whom, for how long; its request goes out as a ticket in the target (or a reply in the open one). */
  private request(opening: Opening, ticket: string | undefined, preface: string | undefined): ApprovalOptions {
    const { target, type, uid } = this.sync.args;
    const change = opening.current;
    const a = change.approval;
    const view = opening.bound ? viewOf(change) : undefined;
    return {
      summary: this.summary(change), details: view ? draftViewLines(view, target, change.reviewLink) : draftLines(change),
      fingerprint: view?.fingerprint, review: view && (() => this.look(opening)), recheck: view && (() => this.recheck(opening)),
      approvers: a.approvers, quorum: a.quorum, fourEyes: a.fourEyes && Boolean(change.author), requestedBy: change.author,
      timeout: a.timeout, onTimeout: 'return', linkTtl: a.linkTtl,
      deliver: {
        channel: 'dhis2-message', to: target, approvers: a.approvers,
        send: async (r) => {
          const sent = await this.activities.onTarget.openApprovalTicket.executeWithOptions({
            summary: `Send ${a.approvers.join(', ')} their links privately; ${ticket ? 'reply in' : 'open'} the ticket on ${target}`,
          }, [{
            target, type, uid, name: change.name, operation: change.operation, changes: change.changes, gatedFields: change.gatedFields, author: change.author,
            quorum: a.quorum, fourEyes: a.fourEyes, gate: r.gate, nonce: r.nonce, deadline: r.deadline, expiresAt: r.expiresAt, links: r.links, ticket, preface,
          }]);
          opening.awaiting.ticket = sent.ref;
          return sent;
        },
      },
    };
  }

  /** While the gate waits: woken by a source change, or after a while (1m, 2m ... 1h) to see whether the draft is still there. */
  private async followSource(opening: Opening, settled: () => boolean): Promise<void> {
    const { target, type, uid } = this.sync.args;
    for (let looks = 0; !settled();) {
      const news = await condition(() => settled() || this.sync.pending, Math.min(3_600_000, 60_000 * 2 ** looks));
      if (settled()) break;
      looks = news ? looks : looks + 1;
      // The draft follows the source, unless a reviewer edited it.
      this.sync.pending = false;
      if (news) this.sync.progress.passes += 1;
      let refreshed: SyncOutcome;
      try {
        refreshed = await (news ? this.activities.onTarget : this.activities.probe).syncResource({ target, type, uid, held: { draftHash: opening.current.draftHash } });
      } catch (err) {
        if (news) this.sync.record({ action: 'draft not updated', error: failureText(err) });
        continue;
      }
      await this.refreshed(opening, refreshed);
    }
  }

  /**
   * The reviewGate update (an approver opens the page, or presses Approve): reads the draft as it is
   * now, so the page shows what a reviewer made of it. Looks that arrive while one runs share it.
   */
  private look(opening: Opening): Promise<void> {
    opening.looking ??= (async () => {
      const { target, type, uid } = this.sync.args;
      try {
        await this.seen(opening, await this.activities.look.reviewDraft({ target, type, uid, operation: opening.current.operation }));
      } catch {
        // The target does not answer now: the gate shows the draft as last read, and the apply checks the version again.
      } finally {
        opening.looking = undefined;
      }
    })();
    return opening.looking;
  }

  /**
   * Before an approval sent as a decideGate update counts: is the draft still the version the gate
   * shows? One read in this worker (a person waits); a target that does not answer leaves the gate as
   * it is, and the apply checks the version again.
   */
  private async recheck(opening: Opening): Promise<void> {
    const { target, type, uid } = this.sync.args;
    const known = this.sync.progress.approvals.find((g) => g.gate === opening.gate)?.fingerprint;
    try {
      await this.seen(opening, await this.activities.glance.reviewDraft({ target, type, uid, operation: opening.current.operation, known }));
    } catch {
      // Not answered in time: counted on the version the gate shows; the apply refuses any other.
    }
  }

  /** What a look at the draft found, while an update waits: the same version, another one (the gate shows it), or none (the gate is withdrawn). */
  private async seen(opening: Opening, outcome: ReviewOutcome): Promise<void> {
    if (outcome.action === 'draftMissing') {
      opening.draftGone = true;
      this.desk.withdraw(opening.gate, 'the draft was deleted in the target');
    } else if (outcome.action === 'draft') await this.revised(opening, outcome.view, true);
  }

  /** The draft is another version now: the gate shows it and counts approvals for it only; approvals of the old version are told they no longer count. */
  private async revised(opening: Opening, view: DraftView, fromUpdate = false, author?: string): Promise<void> {
    const { target } = this.sync.args;
    const { current } = opening;
    const voided = this.desk.revise(opening.gate, {
      fingerprint: view.fingerprint, summary: this.summary({ ...current, operation: view.operation }), details: draftViewLines(view, target, current.reviewLink), author,
    });
    if (!voided) return;
    opening.current = { ...current, view };
    if (voided.length) {
      this.sync.record({ action: 'approvals voided', note: `the draft is now version ${shortFingerprint(view.fingerprint)}; approvals by ${voided.join(', ')} were for the previous version` });
      const told = this.tell(opening.awaiting.ticket, `The draft changed (now version ${shortFingerprint(view.fingerprint)}): the approval(s) by ${voided.join(', ')} were for the ` +
        'previous version and no longer count. Open your link again to see the new version and decide on it.');
      // An update's caller (a person at the gateway) does not wait for the ticket's reply, which may be retried for minutes.
      if (!fromUpdate) await told;
    }
  }

  /** What became of the draft since the gate opened: updated (the ticket says so), kept as a reviewer edited it, or gone. */
  private async refreshed(opening: Opening, refreshed: SyncOutcome): Promise<void> {
    const { awaiting, gate } = opening;
    if (refreshed.action === 'needsApproval') {
      // The new version holds this author's change too: with four-eyes they may not approve it (runs from before keep their rule).
      if (opening.bound) await this.revised(opening, viewOf(refreshed), false, patched(everyAuthorPatch) ? refreshed.author : undefined);
      opening.current = refreshed;
      const record = this.sync.progress.approvals.find((g) => g.gate === gate);
      if (record && record.state === 'open' && !opening.bound) {
        record.summary = this.summary(refreshed);
        record.details = draftLines(refreshed);
      }
      awaiting.fields = refreshed.gatedFields;
      this.sync.record({ action: 'draft updated', changes: refreshed.changes.map((x) => x.field) });
      this.sync.show('waiting_for_approval');
      await this.tell(awaiting.ticket, [`The source changed again${refreshed.author ? ` (by ${refreshed.author})` : ''}. The draft was updated; your link approves this latest version:`,
        '', ...diffLines(refreshed.changes, refreshed.gatedFields), '', refreshed.reviewLink].join('\n'));
    } else if (refreshed.action === 'draftEdited') {
      if (opening.bound) await this.look(opening);
      if (awaiting.edited) return;
      awaiting.edited = true;
      this.sync.record({ action: 'draft kept', note: 'a reviewer edited the draft; the source changed since' });
      this.sync.show('waiting_for_approval');
      await this.tell(awaiting.ticket, 'The source changed since you edited the draft. Your edited draft was NOT updated: ' +
        `compare it with the source before approving (${opening.current.reviewLink}).`);
    } else if (refreshed.action === 'draftMissing') {
      opening.draftGone = true;
      this.desk.withdraw(gate, 'the draft was deleted in the target');
    } else if (refreshed.action === 'released') {
      this.desk.withdraw(gate, refreshed.reason);
    } else if (refreshed.action === 'failed') {
      this.sync.record({ action: 'draft not updated', error: refreshed.error });
    }
  }

  /** Who approved (to apply the draft now), or how the change ended without being applied. */
  private async judge(opening: Opening, result: ApprovalResult, ticket: string | undefined): Promise<{ approvedBy: string; fingerprint?: string } | Decided> {
    const { gate, draftGone, current: change } = opening;
    const { timeout, onTimeout } = change.approval;
    if (result.outcome === 'approved') {
      const approved = this.sync.progress.approvals.find((g) => g.gate === gate)?.fingerprint;
      return { approvedBy: result.by.join(', '), fingerprint: opening.bound ? approved ?? change.draftHash : undefined };
    }
    if (result.outcome === 'timedOut' && onTimeout === 'apply') return { approvedBy: `nobody within ${timeout} (applied on timeout, as configured)` };
    if (result.outcome === 'timedOut' && onTimeout === 'park') {
      const id = workflowInfo().workflowId;
      this.sync.record({ action: 'approval timed out', note: `${gate}: parked, as configured` });
      await this.finish(ticket, `No decision within ${timeout}: the change is PARKED, as configured. Nothing was applied. ` +
        `To ask again: npm run runbook -- retry ${id}; to give it up: npm run runbook -- drop ${id} --reason "...".`, 'PENDING');
      return { action: 'failed', error: `no decision within ${timeout} on gate ${gate}`, errors: [] };
    }
    if (result.outcome === 'withdrawn' && !draftGone) {
      this.sync.record({ action: 'approval withdrawn', note: `${gate}: ${result.reason}` });
      await this.tell(ticket, `No approval is needed any more: ${result.reason}. Nothing waits.`, 'SOLVED');
      this.sync.pending = true; // a plain pass now applies whatever the source holds
      return { action: 'closed' };
    }
    const why = result.outcome === 'rejected' ? `rejected by ${result.by}: ${result.reason}`
      : result.outcome === 'timedOut' ? `no decision within ${timeout} (rejected on timeout, as configured)`
        : result.reason;
    this.sync.record({ action: 'rejected', note: `${gate}: ${why}` });
    await this.finish(ticket, `The change was ${why.startsWith('rejected') ? '' : 'rejected: '}${why}. Nothing was applied${draftGone ? '' : '; the draft was deleted'}.`, 'INVALID', draftGone);
    return { action: 'closed' };
  }

  /** Applies the approved draft (the `approved` version only), waiting (approved, not asking again) while the target lacks what it points at. */
  private async apply(change: ApprovalNeeded, approved: string | undefined) {
    const { target, type, uid } = this.sync.args;
    for (let waits = 0; ; waits++) {
      const req = { target, type, uid, operation: change.operation, draftHash: change.draftHash, ...(approved ? { approved } : {}) };
      // In this worker first (the approver waits to see it applied); a troubled target gets the slow path.
      let applied = patched(applyInWorkerPatch)
        ? await this.activities.fast.applyDraftFast(req).catch((err) => ({ action: 'deferred' as const, reason: failureText(err) }))
        : undefined;
      if (!applied || applied.action === 'deferred') {
        try {
          applied = await this.activities.onTarget.applyDraft(req);
        } catch (err) {
          applied = { action: 'failed' as const, error: failureText(err), errors: [] };
        }
      }
      if (applied.action !== 'waitingForReferences') return applied;
      await askForReferences(this.sync, this.activities, applied.missing, 'approved, waiting');
      // Woken by the referenced resource's sync (or by a source change), else tried again after a while.
      await condition(() => this.sync.pending, backoff(waits + 1));
      this.sync.pending = false;
      this.sync.progress.waitingFor = undefined;
      this.sync.show('syncing');
    }
  }

  /** After the apply: the ticket tells what happened to the approved change. */
  private async close(gate: string, change: ApprovalNeeded, ticket: string | undefined, approvedBy: string,
    applied: Exclude<ApplyOutcome, { action: 'draftInvalid' | 'draftChanged' | 'waitingForReferences' }>): Promise<Decided> {
    const { target } = this.sync.args;
    if (applied.action === 'draftMissing') {
      this.sync.record({ action: 'rejected', note: `${gate}: approved, but the draft was deleted in the target` });
      await this.finish(ticket, `Approved by ${approvedBy}, but the draft was deleted in the target: the change is rejected. Nothing was applied.`, 'INVALID', true);
      return { action: 'closed' };
    }
    if (applied.action === 'failed') {
      await this.finish(ticket, `Approved by ${approvedBy}, but ${target} refused it: ${applied.error}\nThe change is PARKED: fix the cause, then npm run runbook -- retry ${workflowInfo().workflowId}.`, 'PENDING');
      return { action: 'failed', error: applied.error, errors: applied.errors };
    }
    const how = applied.edited ? 'the draft as edited by the reviewer' : 'the draft as proposed';
    this.sync.record({ action: applied.action === 'unchanged' ? 'approved (already there)' : `${applied.action} (approved)`, changes: change.gatedFields, note: `by ${approvedBy}; ${how}` });
    this.sync.progress.error = undefined;
    await this.finish(ticket, `Approved by ${approvedBy}. Applied on ${target}: ${how}.`, 'SOLVED');
    return { action: 'applied', operation: change.operation };
  }

  private summary(change: ApprovalNeeded): string {
    const { target, type, uid } = this.sync.args;
    return `${change.operation} ${type} ${change.name ? `'${change.name}' ` : ''}(${uid}) on ${target}: ${change.gatedFields.join(', ')}` +
      `${change.author ? `, changed on the source by ${change.author}` : ''}`;
  }

  /** Ticket replies tell people; a reply that cannot be sent is recorded, and the change goes on. */
  private async tell(ticket: string | undefined, text: string, status?: TicketStatus): Promise<void> {
    if (!ticket) return;
    const { target } = this.sync.args;
    await this.activities.onTarget.updateTicket({ target, ticket, text, status }).catch((err) => this.sync.record({ action: 'ticket reply failed', error: failureText(err) }));
  }

  private async finish(ticket: string | undefined, text: string, status: TicketStatus, keepDraft = false): Promise<void> {
    const { target, type, uid } = this.sync.args;
    await this.activities.onTarget.finishApproval({ target, type, uid, ticket, text, status, keepDraft })
      .catch((err) => this.sync.record({ action: 'closing the ticket failed', error: failureText(err) }));
  }

  /** Closed gates beyond the last few leave progress (their decisions with them). */
  private trim(): void {
    const { progress } = this.sync;
    const closed = progress.approvals.filter((g) => g.state !== 'open');
    const drop = new Set(closed.slice(0, Math.max(0, closed.length - keptGates)).map((g) => g.gate));
    progress.approvals = progress.approvals.filter((g) => !drop.has(g.gate));
    progress.decisions = progress.decisions.filter((d) => !drop.has(d.gate));
  }
}

/** The draft as the gate shows it: from the pass that staged it, or (a pass from before views) its diff only. */
const viewOf = (change: ApprovalNeeded): DraftView => change.view ?? {
  operation: change.operation, fingerprint: change.draftHash, object: '(not read yet: open the draft)', changes: change.changes, gatedFields: change.gatedFields,
};

/** The diff and where to edit the draft: the gate's details on the approval page (gates opened before approvals were bound). */
const draftLines = (change: ApprovalNeeded): string[] =>
  [...diffLines(change.changes, change.gatedFields), `Draft (editable until you decide): ${change.reviewLink}`];
