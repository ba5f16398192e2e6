/**
 * orgUnitSync: keeps ONE resource in step on ONE target (workflow id
 * orgunit-sync:<target>:<type>:<uid>). The change listener signals it for every source change;
 * each pass reads the source as it is then, so changes that arrive while a pass runs become one
 * more pass, applied in order. Waits for what the resource points at, retries a target that is
 * down, continues as new before its history grows large, and ends when idle.
 *
 * A change to fields that need approval waits at a gate: its draft in the target's dataStore, a
 * ticket in the target's messaging with the signed links; only this resource on this target waits.
 */
import {
  condition, continueAsNew, getExternalWorkflowHandle, proxyActivities, proxyLocalActivities,
  setCurrentDetails, setHandler, sleep, upsertSearchAttributes, workflowInfo, type ActivityInterfaceFor,
} from '@temporalio/workflow';
import { ApprovalDesk, toMs, type ApprovalHost } from '../kit/approval';
import type { Duration } from '@temporalio/common';
import type { Dhis2Activities } from '../../activities/dhis2';
import type { ApprovalNeeded, TicketStatus } from '../../activities/dhis2/approval';
import type { FastOutcome } from '../../activities/dhis2/fast-path';
import type { MissingReference, SyncOutcome } from '../../activities/dhis2/sync';
import { RunbookName, RunbookResource, RunbookStatus, RunbookTarget } from '../../contracts/search-attributes';
import {
  dropSyncSignal, retrySyncSignal, sourceChangedSignal, syncProgressQuery, syncWorkflowType,
  type ParkedDecision, type SyncArgs, type SyncProgress, type SyncRecord, type SyncStatus,
} from '../../contracts/dhis2/messages';
import { diffLines, renderSync, syncTitle } from '../../contracts/dhis2/render';
import { syncActivityQueue } from '../../contracts/dhis2/resources';
import { failureText } from '../../contracts/failure';

/** Passes kept in progress; history past that is in Temporal's event history. */
const keptRecords = 10;
/** Continue as new past this many events, well before Temporal's limits make replays slow. */
const maxHistoryEvents = 2_000;
/** Closed gates (and their decisions) kept in progress. */
const keptGates = 5;

export async function orgUnitSync(args: SyncArgs): Promise<SyncProgress> {
  const { target, type, uid, settings } = args;
  const progress: SyncProgress = {
    runbook: syncWorkflowType, title: syncTitle(target, type, uid), approvals: [], decisions: [], droppedDecisions: 0, gates: 0,
    target, type, uid, status: 'syncing', changesSeen: 0, passes: 0, recent: [],
    ...args.carried?.progress,
  };
  let pending = args.carried?.pending ?? false;
  const waiters = new Set(args.carried?.waiters ?? []);
  const idle = idleWatch(settings.idleAfter as Duration);

  setHandler(sourceChangedSignal, (change) => {
    pending = true;
    idle.touch();
    progress.changesSeen += 1;
    if (progress.parked) progress.parked.queued += 1;
    if (typeof change?.committedAt === 'string') progress.lastCommittedAt = change.committedAt;
    if (typeof change?.waiter === 'string' && change.waiter !== workflowInfo().workflowId) waiters.add(change.waiter);
  });
  const record = (r: Omit<SyncRecord, 'at'>) => {
    progress.recent.push({ at: new Date().toISOString(), ...r });
    progress.recent.splice(0, Math.max(0, progress.recent.length - keptRecords));
  };
  let decision: ({ kind: 'retry' | 'drop' } & ParkedDecision) | undefined;
  const decide = (kind: 'retry' | 'drop') => (d: ParkedDecision) => {
    const by = typeof d?.by === 'string' && d.by.trim() ? d.by.trim().slice(0, 200) : undefined;
    const reason = typeof d?.reason === 'string' && d.reason.trim() ? d.reason.trim().slice(0, 1000) : undefined;
    const refused = progress.status !== 'parked' ? `nothing is parked (status ${progress.status})`
      : !by ? 'say who decides ("by")' : kind === 'drop' && !reason ? 'a drop needs a reason' : decision ? 'a decision is already being applied' : undefined;
    if (refused) { record({ action: `${kind} ignored`, note: `${by ?? 'someone'}: ${refused}` }); return; }
    decision = { kind, by: by!, reason };
  };
  setHandler(retrySyncSignal, decide('retry'));
  setHandler(dropSyncSignal, decide('drop'));
  setHandler(syncProgressQuery, () => progress);
  upsertSearchAttributes([
    { key: RunbookName, value: syncWorkflowType },
    { key: RunbookTarget, value: target },
    { key: RunbookResource, value: `${type}:${uid}` },
  ]);

  // Fast path: a local activity in this worker, for a target that answers well (it defers at once otherwise).
  const fast = proxyLocalActivities<Dhis2Activities>({ startToCloseTimeout: '20 seconds', retry: { maximumAttempts: 1 } });
  // Slow path: the target's own task queue, so a slow or failing target takes only its own slots; retried with backoff.
  const onTarget = proxyActivities<Dhis2Activities>({
    taskQueue: syncActivityQueue(workflowInfo().taskQueue, target),
    startToCloseTimeout: '3 minutes',
    heartbeatTimeout: '10 seconds',
    scheduleToCloseTimeout: settings.giveUpAfter as Duration,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: settings.maximumInterval as Duration },
  });
  const temporal = proxyActivities<Dhis2Activities>({ startToCloseTimeout: '1 minute', retry: { maximumInterval: '30s' } });
  // A look at the target while a gate waits: short-lived, a failure only means "look again later".
  const probe = proxyActivities<Dhis2Activities>({
    taskQueue: syncActivityQueue(workflowInfo().taskQueue, target), startToCloseTimeout: '1 minute', heartbeatTimeout: '10 seconds', scheduleToCloseTimeout: '2 minutes',
  });
  const publish = () => setCurrentDetails(renderSync(progress));
  /** The target lacks what this resource points at: ask each missing resource's sync to run and to wake this one when the target has it. */
  const askForReferences = async (refs: MissingReference[], action: string) => {
    const missing = refs.filter((m) => !(m.type === type && m.uid === uid));
    progress.waitingFor = missing.map(({ type: t, uid: u }) => ({ type: t, uid: u }));
    record({ action, note: `the target lacks ${missing.map((m) => `${m.type} ${m.uid}${m.property ? ` (${m.property})` : ''}`).join(', ')}` });
    await temporal.requestSync({ target, refs: missing, waiter: workflowInfo().workflowId, taskQueue: workflowInfo().taskQueue, settings });
    show('waiting_for_reference');
  };
  /** Parked, not dropped: this workflow is the dead letter, found with RunbookStatus = "parked". */
  const park = async (error: string, errors: Array<{ code: string; message: string; uid?: string; property?: string }>) => {
    progress.error = error;
    progress.parked = { at: new Date().toISOString(), error, errors: errors.slice(0, 20), queued: pending ? 1 : 0 };
    record({ action: 'parked', error });
    show('parked');
    await temporal.notifySyncFailure({ target, type, uid, error }).catch(() => undefined);
  };

  let published = '';
  const show = (status: SyncStatus) => {
    progress.status = status;
    publish();
    // The search attribute changes only between kinds of state, not on every pass (each upsert is a history event).
    const kind = searchStatus[status];
    if (kind !== published) {
      upsertSearchAttributes([{ key: RunbookStatus, value: kind }]);
      published = kind;
    }
  };

  const host: ApprovalHost = {
    progress,
    waiting: (yes) => show(yes ? 'waiting_for_approval' : 'syncing'),
    publish,
    plan: () => undefined,
  };
  const desk = new ApprovalDesk(host);
  const gates = gateKeeper({
    target, type, uid, progress, desk, onTarget, probe, askForReferences, show, record,
    news: { has: () => pending, take: () => { pending = false; }, give: () => { pending = true; } },
  });

  let referenceWaits = 0;
  show(pending ? 'syncing' : progress.status === 'completed' ? 'idle' : progress.status);
  for (;;) {
    const parked = progress.status === 'parked';
    if ((!pending || parked) && !decision && (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxHistoryEvents)) {
      await continueAsNew<typeof orgUnitSync>({ target, type, uid, settings, carried: { pending, waiters: [...waiters], progress } });
    }
    if (parked) {
      // Parked: nothing applies (later changes queue behind it) until a person retries or drops it.
      if (!(await condition(() => decision !== undefined, settings.idleAfter as Duration))) continue;
      const d = decision!;
      decision = undefined;
      progress.parked = undefined;
      progress.error = undefined;
      record({ action: d.kind === 'retry' ? 'retried' : 'dropped', note: `by ${d.by}${d.reason ? `: ${d.reason}` : ''}` });
      if (d.kind === 'retry') pending = true;
      show(pending ? 'syncing' : 'idle');
      continue;
    }
    if (!pending) {
      const status = progress.status;
      if (status === 'waiting_for_reference') {
        // After waiting for a reference long enough, try again even without news.
        if (!(await condition(() => pending, backoff(referenceWaits)))) pending = true;
      } else {
        idle.arm();
        await condition(() => pending || idle.reached());
        if (!pending) break;
      }
    }
    pending = false;
    progress.passes += 1;
    show('syncing');

    let outcome: SyncOutcome;
    const quick: FastOutcome = await fast.syncResourceFast({ target, type, uid }).catch((err) => ({ action: 'deferred', reason: failureText(err) }));
    if (quick.action !== 'deferred') {
      outcome = quick;
    } else {
      try {
        outcome = await onTarget.syncResource({ target, type, uid });
      } catch (err) {
        // Retried for as long as the target's config allows: now it counts as failed for good.
        outcome = { action: 'failed', error: failureText(err), errors: [] };
      }
    }
    idle.touch();

    if (outcome.action === 'waitingForReferences') {
      await askForReferences(outcome.missing, 'waiting');
      referenceWaits += 1;
      continue;
    }
    referenceWaits = 0;
    progress.waitingFor = undefined;

    if (outcome.action === 'needsApproval') {
      // Waits here, as long as the gate's timeout; source changes meanwhile update the draft and the ticket.
      const decided = await gates.decide(outcome);
      if (decided.action === 'failed') await park(decided.error, decided.errors);
      else if (decided.action === 'applied') {
        if (decided.operation !== 'delete') await wakeWaiters(waiters);
        show(pending ? 'syncing' : 'idle');
      } else show(pending ? 'syncing' : 'idle');
      continue;
    }

    if (outcome.action === 'failed') {
      await park(outcome.error, outcome.errors);
      continue;
    }
    progress.error = undefined;
    if (outcome.action === 'skipped') record({ action: 'skipped', note: outcome.reason });
    else if (outcome.action === 'created' || outcome.action === 'updated' || outcome.action === 'deleted') {
      record({ action: outcome.action, changes: outcome.changes.map((c) => c.field), note: outcome.notifyError && `notification failed: ${outcome.notifyError}` });
    } else record({ action: 'unchanged' });

    // The target holds this resource now (or never will): wake whoever waited for it.
    if (outcome.action !== 'skipped' && outcome.action !== 'deleted') await wakeWaiters(waiters);
    show(pending ? 'syncing' : 'idle');
  }
  show('completed');
  return progress;
}

/** What operators filter on (RunbookStatus): a sync that is merely between passes is still `active`. */
const searchStatus: Record<SyncStatus, string> = {
  syncing: 'active', idle: 'active', waiting_for_reference: 'waiting_for_reference', waiting_for_approval: 'waiting_for_approval', parked: 'parked', completed: 'completed',
};

/** One timer per idle period, not one per pass: reached() once `idleAfter` passed with no touch(). */
function idleWatch(idleAfter: Duration) {
  const ms = toMs(idleAfter as string);
  let lastActive = Date.now();
  let reached = false;
  let watching = false;
  const watch = async () => {
    watching = true;
    for (let left = ms; left > 0; left = lastActive + ms - Date.now()) await sleep(left);
    reached = true;
    watching = false;
  };
  return {
    touch() { lastActive = Date.now(); reached = false; },
    /** Starts the timer unless one runs (outside any condition predicate: predicates must not schedule). */
    arm() { if (!watching && !reached) void watch(); },
    reached: () => reached,
  };
}

async function wakeWaiters(waiters: Set<string>): Promise<void> {
  const ids = [...waiters];
  waiters.clear();
  await Promise.all(ids.map((id) => getExternalWorkflowHandle(id).signal(sourceChangedSignal, {}).catch(() => undefined)));
}

/** 30s, 1m, 2m ... 30m between tries while a reference is missing and nothing wakes us. */
const backoff = (n: number): number => Math.min(30 * 60_000, 30_000 * 2 ** Math.max(0, n - 1));

interface GateContext {
  target: string;
  type: SyncArgs['type'];
  uid: string;
  progress: SyncProgress;
  desk: ApprovalDesk;
  onTarget: ActivityInterfaceFor<Dhis2Activities>;
  probe: ActivityInterfaceFor<Dhis2Activities>;
  askForReferences: (refs: MissingReference[], action: string) => Promise<void>;
  show: (status: SyncStatus) => void;
  record: (r: Omit<SyncRecord, 'at'>) => void;
  /** Source changes not yet looked at (the workflow's `pending`). */
  news: { has(): boolean; take(): void; give(): void };
}

export type Decided =
  | { action: 'applied'; operation: ApprovalNeeded['operation'] }
  | { action: 'failed'; error: string; errors: Array<{ code: string; message: string; uid?: string; property?: string }> }
  | { action: 'closed' };

/**
 * The approval of one gated change, from the gate opening to the ticket closing: the draft and
 * the ticket follow the source while the gate waits; the approved draft (as the reviewer left it)
 * is applied; every outcome is told in the ticket.
 */
function gateKeeper(c: GateContext) {
  const { target, type, uid, progress, desk, onTarget } = c;
  const req = { target, type, uid };

  /** Ticket replies tell people; a reply that cannot be sent is recorded, and the change goes on. */
  const tell = async (ticket: string | undefined, text: string, status?: TicketStatus) => {
    if (!ticket) return;
    await onTarget.updateTicket({ target, ticket, text, status }).catch((err) => c.record({ action: 'ticket reply failed', error: failureText(err) }));
  };
  const finish = async (ticket: string | undefined, text: string, status: TicketStatus, keepDraft = false) => {
    await onTarget.finishApproval({ ...req, ticket, text, status, keepDraft }).catch((err) => c.record({ action: 'closing the ticket failed', error: failureText(err) }));
  };
  const trim = () => {
    const closed = progress.approvals.filter((g) => g.state !== 'open');
    const drop = new Set(closed.slice(0, Math.max(0, closed.length - keptGates)).map((g) => g.gate));
    progress.approvals = progress.approvals.filter((g) => !drop.has(g.gate));
    progress.decisions = progress.decisions.filter((d) => !drop.has(d.gate));
  };

  /** Waits for a decision while following the source; returns when the gate closed. */
  async function open(change: ApprovalNeeded, ticket: string | undefined, preface: string | undefined) {
    progress.gates += 1;
    const gate = `change-${progress.gates}`;
    const a = change.approval;
    let current = change;
    let draftGone = false;
    progress.awaiting = { gate, operation: change.operation, fields: change.gatedFields, reviewLink: change.reviewLink, ticket, since: new Date().toISOString() };
    const awaiting = progress.awaiting;
    const summary = (ch: ApprovalNeeded) => `${ch.operation} ${type} ${ch.name ? `'${ch.name}' ` : ''}(${uid}) on ${target}: ${ch.gatedFields.join(', ')}` +
      `${ch.author ? `, changed on the source by ${ch.author}` : ''}`;
    const decision = desk.wait(gate, undefined, {
      summary: summary(change), details: [...diffLines(change.changes, change.gatedFields), `Draft (editable until you decide): ${change.reviewLink}`],
      approvers: a.approvers, quorum: a.quorum, fourEyes: a.fourEyes && Boolean(change.author), requestedBy: change.author,
      timeout: a.timeout, onTimeout: 'return', linkTtl: a.linkTtl,
      deliver: {
        channel: 'dhis2-ticket', to: target, approvers: a.approvers,
        send: async (r) => {
          const sent = await onTarget.openApprovalTicket({
            ...req, name: change.name, operation: change.operation, changes: change.changes, gatedFields: change.gatedFields, author: change.author,
            quorum: a.quorum, fourEyes: a.fourEyes, gate: r.gate, nonce: r.nonce, deadline: r.deadline, expiresAt: r.expiresAt, links: r.links, ticket, preface,
          });
          awaiting.ticket = sent.ref;
          return sent;
        },
      },
    });
    let settled = false;
    void decision.then(() => { settled = true; }, () => { settled = true; });
    c.record({ action: 'waiting for approval', changes: change.gatedFields, note: `gate ${gate}${change.author ? `, change by ${change.author}` : ''}` });

    for (let looks = 0; !settled;) {
      // Woken by a source change, or after a while (1m, 2m ... 1h) to see whether the draft is still there.
      const news = await condition(() => settled || c.news.has(), Math.min(3_600_000, 60_000 * 2 ** looks));
      if (settled) break;
      looks = news ? looks : looks + 1;
      // The draft follows the source, unless a reviewer edited it.
      c.news.take();
      if (news) progress.passes += 1;
      let refreshed: SyncOutcome;
      try {
        refreshed = await (news ? onTarget : c.probe).syncResource({ ...req, held: { draftHash: current.draftHash } });
      } catch (err) {
        if (news) c.record({ action: 'draft not updated', error: failureText(err) });
        continue;
      }
      const record = progress.approvals.find((g) => g.gate === gate);
      if (refreshed.action === 'needsApproval') {
        current = refreshed;
        if (record && record.state === 'open') {
          record.summary = summary(refreshed);
          record.details = [...diffLines(refreshed.changes, refreshed.gatedFields), `Draft (editable until you decide): ${refreshed.reviewLink}`];
        }
        awaiting.fields = refreshed.gatedFields;
        c.record({ action: 'draft updated', changes: refreshed.changes.map((x) => x.field) });
        c.show('waiting_for_approval');
        await tell(awaiting.ticket, [`The source changed again${refreshed.author ? ` (by ${refreshed.author})` : ''}. The draft was updated; your link approves this latest version:`,
          '', ...diffLines(refreshed.changes, refreshed.gatedFields), '', refreshed.reviewLink].join('\n'));
      } else if (refreshed.action === 'draftEdited') {
        if (!awaiting.edited) {
          awaiting.edited = true;
          c.record({ action: 'draft kept', note: 'a reviewer edited the draft; the source changed since' });
          c.show('waiting_for_approval');
          await tell(awaiting.ticket, 'The source changed since you edited the draft. Your edited draft was NOT updated: ' +
            `compare it with the source before approving (${current.reviewLink}).`);
        }
      } else if (refreshed.action === 'draftMissing') {
        draftGone = true;
        desk.withdraw(gate, 'the draft was deleted in the target');
      } else if (refreshed.action === 'released') {
        desk.withdraw(gate, refreshed.reason);
      } else if (refreshed.action === 'failed') {
        c.record({ action: 'draft not updated', error: refreshed.error });
      }
    }
    const result = await decision;
    progress.awaiting = undefined;
    return { gate, result, current, draftGone, ticket: awaiting.ticket };
  }

  /** Applies the approved draft, waiting (approved, not asking again) while the target lacks what it points at. */
  async function apply(change: ApprovalNeeded) {
    for (let waits = 0; ; waits++) {
      let applied;
      try {
        applied = await onTarget.applyDraft({ ...req, operation: change.operation, draftHash: change.draftHash });
      } catch (err) {
        applied = { action: 'failed' as const, error: failureText(err), errors: [] };
      }
      if (applied.action !== 'waitingForReferences') return applied;
      await c.askForReferences(applied.missing, 'approved, waiting');
      // Woken by the referenced resource's sync (or by a source change), else tried again after a while.
      await condition(() => c.news.has(), backoff(waits + 1));
      c.news.take();
      progress.waitingFor = undefined;
      c.show('syncing');
    }
  }

  async function decide(first: ApprovalNeeded): Promise<Decided> {
    let change = first;
    let ticket: string | undefined;
    let preface: string | undefined;
    for (;;) {
      const opened = await open(change, ticket, preface);
      const { gate, result, draftGone } = opened;
      change = opened.current;
      ticket = opened.ticket;
      trim();
      let approvedBy: string;
      if (result.outcome === 'approved') {
        approvedBy = result.by.join(', ');
      } else if (result.outcome === 'timedOut' && change.approval.onTimeout === 'apply') {
        approvedBy = `nobody within ${change.approval.timeout} (applied on timeout, as configured)`;
      } else if (result.outcome === 'timedOut' && change.approval.onTimeout === 'park') {
        c.record({ action: 'approval timed out', note: `${gate}: parked, as configured` });
        await finish(ticket, `No decision within ${change.approval.timeout}: the change is PARKED, as configured. Nothing was applied. ` +
          `To ask again: npm run runbook -- retry ${workflowInfo().workflowId}; to give it up: npm run runbook -- drop ${workflowInfo().workflowId} --reason "...".`, 'PENDING');
        return { action: 'failed', error: `no decision within ${change.approval.timeout} on gate ${gate}`, errors: [] };
      } else if (result.outcome === 'withdrawn' && !draftGone) {
        c.record({ action: 'approval withdrawn', note: `${gate}: ${result.reason}` });
        await tell(ticket, `No approval is needed any more: ${result.reason}. Nothing waits.`, 'SOLVED');
        c.news.give(); // a plain pass now applies whatever the source holds
        return { action: 'closed' };
      } else {
        const why = result.outcome === 'rejected' ? `rejected by ${result.by}: ${result.reason}`
          : result.outcome === 'timedOut' ? `no decision within ${change.approval.timeout} (rejected on timeout, as configured)`
            : result.reason;
        c.record({ action: 'rejected', note: `${gate}: ${why}` });
        await finish(ticket, `The change was ${why.startsWith('rejected') ? '' : 'rejected: '}${why}. Nothing was applied${draftGone ? '' : '; the draft was deleted'}.`, 'INVALID', draftGone);
        return { action: 'closed' };
      }

      const applied = await apply(change);
      if (applied.action === 'draftInvalid') {
        // The gate opens again, with new links in the same ticket: the old ones were used.
        c.record({ action: 'draft refused', note: applied.reason });
        preface = `Approved by ${approvedBy}, but the draft cannot be applied: ${applied.reason}. Nothing was applied. ` +
          `Fix the draft (${change.reviewLink}), then decide again with a new link:`;
        continue;
      }
      if (applied.action === 'draftMissing') {
        c.record({ action: 'rejected', note: `${gate}: approved, but the draft was deleted in the target` });
        await finish(ticket, `Approved by ${approvedBy}, but the draft was deleted in the target: the change is rejected. Nothing was applied.`, 'INVALID', true);
        return { action: 'closed' };
      }
      if (applied.action === 'failed') {
        await finish(ticket, `Approved by ${approvedBy}, but ${target} refused it: ${applied.error}\nThe change is PARKED: fix the cause, then npm run runbook -- retry ${workflowInfo().workflowId}.`, 'PENDING');
        return { action: 'failed', error: applied.error, errors: applied.errors };
      }
      const how = applied.edited ? 'the draft as edited by the reviewer' : 'the draft as proposed';
      c.record({ action: applied.action === 'unchanged' ? 'approved (already there)' : `${applied.action} (approved)`, changes: change.gatedFields, note: `by ${approvedBy}; ${how}` });
      progress.error = undefined;
      await finish(ticket, `Approved by ${approvedBy}. Applied on ${target}: ${how}.`, 'SOLVED');
      return { action: 'applied', operation: change.operation };
    }
  }

  return { decide };
}
