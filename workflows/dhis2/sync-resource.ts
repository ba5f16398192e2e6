/**
 * orgUnitSync: keeps ONE resource in step on ONE target (workflow id
 * orgunit-sync:<target>:<type>:<uid>). The change listener signals it for every source change;
 * each pass reads the source as it is then, so changes that arrive while a pass runs become one
 * more pass, applied in order. Waits for what the resource points at, retries a target that is
 * down, continues as new before its history grows large, and ends when idle.
 */
import {
  ActivityFailure, ApplicationFailure, condition, continueAsNew, getExternalWorkflowHandle, proxyActivities, proxyLocalActivities,
  setCurrentDetails, setHandler, sleep, upsertSearchAttributes, workflowInfo,
} from '@temporalio/workflow';
import { toMs } from '../kit/approval';
import type { Duration } from '@temporalio/common';
import type { Dhis2Activities } from '../../activities/dhis2';
import type { FastOutcome } from '../../activities/dhis2/fast-path';
import type { SyncOutcome } from '../../activities/dhis2/sync';
import { RunbookName, RunbookResource, RunbookStatus, RunbookTarget } from '../kit/search-attributes';
import {
  dropSyncSignal, retrySyncSignal, sourceChangedSignal, syncProgressQuery, syncWorkflowType,
  type ParkedDecision, type SyncArgs, type SyncProgress, type SyncRecord, type SyncStatus,
} from './messages';
import { syncActivityQueue, syncWorkflowId, type ResourceType } from './resources';

const syncWorkflowIdOf = (p: SyncProgress) => syncWorkflowId(p.target, p.type, p.uid);

/** Passes kept in progress; history past that is in Temporal's event history. */
const keptRecords = 10;
/** Continue as new past this many events, well before Temporal's limits make replays slow. */
const maxHistoryEvents = 2_000;

export async function orgUnitSync(args: SyncArgs): Promise<SyncProgress> {
  const { target, type, uid, settings } = args;
  const progress: SyncProgress = args.carried?.progress ?? { target, type, uid, status: 'syncing', changesSeen: 0, passes: 0, recent: [] };
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

  let published = '';
  const show = (status: SyncStatus) => {
    progress.status = status;
    setCurrentDetails(renderSync(progress));
    // The search attribute changes only between kinds of state, not on every pass (each upsert is a history event).
    const kind = searchStatus[status];
    if (kind !== published) {
      upsertSearchAttributes([{ key: RunbookStatus, value: kind }]);
      published = kind;
    }
  };

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
      const missing = outcome.missing.filter((m) => !(m.type === type && m.uid === uid));
      progress.waitingFor = missing.map(({ type: t, uid: u }) => ({ type: t, uid: u }));
      record({ action: 'waiting', note: `the target lacks ${missing.map((m) => `${m.type} ${m.uid}${m.property ? ` (${m.property})` : ''}`).join(', ')}` });
      // Ask each missing resource's sync to run and to wake this one when the target has it.
      await temporal.requestSync({ target, refs: missing, waiter: workflowInfo().workflowId, taskQueue: workflowInfo().taskQueue, settings });
      referenceWaits += 1;
      show('waiting_for_reference');
      continue;
    }
    referenceWaits = 0;
    progress.waitingFor = undefined;

    if (outcome.action === 'failed') {
      // Parked, not dropped: this workflow is the dead letter, found with RunbookStatus = "parked".
      progress.error = outcome.error;
      progress.parked = { at: new Date().toISOString(), error: outcome.error, errors: outcome.errors.slice(0, 20), queued: pending ? 1 : 0 };
      record({ action: 'parked', error: outcome.error });
      show('parked');
      await temporal.notifySyncFailure({ target, type, uid, error: outcome.error }).catch(() => undefined);
      continue;
    }
    progress.error = undefined;
    if (outcome.action === 'skipped') record({ action: 'skipped', note: outcome.reason });
    else if (outcome.action === 'unchanged') record({ action: 'unchanged' });
    else record({ action: outcome.action, changes: outcome.changes.map((c) => c.field), note: outcome.notifyError && `notification failed: ${outcome.notifyError}` });

    // The target holds this resource now (or never will): wake whoever waited for it.
    if (outcome.action !== 'skipped' && outcome.action !== 'deleted') await wakeWaiters(waiters);
    show(pending ? 'syncing' : 'idle');
  }
  show('completed');
  return progress;
}

/** What operators filter on (RunbookStatus): a sync that is merely between passes is still `active`. */
const searchStatus: Record<SyncStatus, string> = {
  syncing: 'active', idle: 'active', waiting_for_reference: 'waiting_for_reference', parked: 'parked', completed: 'completed',
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

function failureText(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return failureText(err.cause);
  if (err instanceof ApplicationFailure || err instanceof Error) return err.message;
  return String(err);
}

const typeLabel: Record<ResourceType, string> = { organisationUnit: 'Org unit', organisationUnitGroup: 'Org unit group', organisationUnitGroupSet: 'Org unit group set' };

/** What the Temporal UI shows as the workflow's current details. */
export function renderSync(p: SyncProgress): string {
  const lines = [
    `**${typeLabel[p.type]} ${p.uid} → ${p.target}** — ${p.status.replace(/_/g, ' ')}`,
    '',
    `${p.changesSeen} source change(s), ${p.passes} pass(es)${p.lastCommittedAt ? `, last source commit ${p.lastCommittedAt}` : ''}`,
  ];
  if (p.waitingFor?.length) lines.push('', `Waiting until the target has: ${p.waitingFor.map((w) => `${w.type} ${w.uid}`).join(', ')}`);
  if (p.parked) {
    lines.push('', `**Parked** since ${p.parked.at} (${p.parked.queued} later change(s) queued behind it): ${p.parked.error}`);
    lines.push(...p.parked.errors.map((e) => `- ${e.code}${e.property ? ` (${e.property})` : ''}: ${e.message}`));
    lines.push('', `Retry: npm run runbook -- retry ${syncWorkflowIdOf(p)} · drop: npm run runbook -- drop ${syncWorkflowIdOf(p)} --reason "..."`);
  } else if (p.error) lines.push('', `Failed: ${p.error}`);
  if (p.recent.length) lines.push('', ...p.recent.map((r) => `- ${r.at} ${r.action}${r.changes?.length ? `: ${r.changes.join(', ')}` : ''}${r.note ? ` — ${r.note}` : ''}${r.error ? ` — ${r.error}` : ''}`));
  return lines.join('\n');
}
