/**
 * orgUnitBatch: applies ONE target's captured changes in batches (workflow id
 * orgunit-batch:<task queue>:<target>). The listener hands over everything a flush captured for
 * this target in one signal; each batch is one activity on the target's queue (both sides read in
 * bulk, one metadata import), so a change costs a fraction of a workflow task instead of a
 * workflow, a signal and a pass of its own.
 *
 * What needs more goes to the resource's own orgUnitSync, which keeps every per-resource guarantee:
 * a change that needs approval, a delete, a refusal or a missing reference (handed back by the
 * batch), and a resource some sync waits for. While that sync runs, every later change of the
 * resource goes to it too, in order; once it is idle it says so (syncReleased) and the resource
 * comes back to batches. Batches run one after another, so one resource is never applied twice at once.
 */
import {
  allHandlersFinished, condition, continueAsNew, proxyActivities, setCurrentDetails, setHandler,
  setWorkflowOptions, upsertSearchAttributes, workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Dhis2Activities } from '../../activities/dhis2';
import type { BatchOutcome } from '../../activities/dhis2/batch';
import {
  batchProgressQuery, batchWorkflowType, changesCapturedSignal, syncReleasedSignal,
  type BatchArgs, type BatchCarried, type BatchProgress,
} from '../../contracts/dhis2/messages';
import { resourceTypes, syncActivityQueue, uidPattern } from '../../contracts/dhis2/resources';
import { failureText } from '../../contracts/failure';
import { RunbookName, RunbookTarget } from '../../contracts/search-attributes';
import { now } from '../kit/run-state';

/** Resources per batch: one import of a few hundred objects takes about a second on a busy DHIS2. */
const maxBatch = 250;
/** Continue as new past this many events. */
const maxHistoryEvents = 4_000;
const keptRecords = 10;

const keyOf = (c: { type: string; uid: string }) => `${c.type}:${c.uid}`;

/** A captured change as the workflow keeps it: every waiter of the resource's changes so far. */
type Pending = BatchCarried['pending'][number];

export async function orgUnitBatch(args: BatchArgs): Promise<BatchProgress> {
  const { target, settings, carried } = args;
  const pending = new Map<string, Pending>((carried?.pending ?? []).map((c) => [keyOf(c), c]));
  const withSync = new Map<string, number>(carried?.withSync ?? []);
  let seq = carried?.seq ?? 0;
  const progress: BatchProgress = {
    runbook: batchWorkflowType, title: `Org-unit batches to ${target}`, approvals: [], decisions: [], droppedDecisions: 0,
    target, status: 'idle', batches: 0, applied: 0, unchanged: 0, handedToSyncs: 0, withSync: 0, pending: 0, recent: [],
    ...carried?.progress,
  };
  const show = (status: BatchProgress['status']) => {
    Object.assign(progress, { status, withSync: withSync.size, pending: pending.size });
    setCurrentDetails(`**Org-unit batches → ${target}** — ${status}\n\n${progress.applied} applied, ${progress.unchanged} already in step, ` +
      `${progress.handedToSyncs} handed to their own sync in ${progress.batches} batches; ${withSync.size} resources with a sync running, ${pending.size} waiting.`);
  };

  setHandler(changesCapturedSignal, (signal) => {
    for (const c of Array.isArray(signal?.changes) ? signal.changes : []) {
      // A sender names resources; only well-formed ones are kept (the activities check them again).
      if (!c || !resourceTypes.includes(c.type) || typeof c.uid !== 'string' || !uidPattern.test(c.uid)) continue;
      const key = keyOf(c);
      const before = pending.get(key);
      const waiters = before?.waiters ?? [];
      if (typeof c.waiter === 'string' && c.waiter.length <= 400 && !waiters.includes(c.waiter) && waiters.length < 100) waiters.push(c.waiter);
      pending.set(key, { type: c.type, uid: c.uid, lsn: typeof c.lsn === 'string' ? c.lsn : before?.lsn, committedAt: typeof c.committedAt === 'string' ? c.committedAt : before?.committedAt, waiters });
      if (typeof c.committedAt === 'string') progress.lastCommittedAt = c.committedAt;
    }
    progress.pending = pending.size;
  });
  setHandler(syncReleasedSignal, (r) => {
    const key = r && keyOf(r);
    if (key && withSync.get(key) === r.seq) withSync.delete(key);
    progress.withSync = withSync.size;
  });
  setHandler(batchProgressQuery, () => progress);
  upsertSearchAttributes([{ key: RunbookName, value: batchWorkflowType }, { key: RunbookTarget, value: target }]);

  // An activity, not a local one: a batch runs for seconds while more changes arrive, and takes only the target's own slots.
  // A worker lost mid-batch is noticed by the heartbeat and the batch runs again (it is idempotent); a batch that fails
  // twice hands every resource to its own sync, which retries as the target's config allows.
  const onTarget = proxyActivities<Dhis2Activities>({
    taskQueue: syncActivityQueue(workflowInfo().taskQueue, target),
    startToCloseTimeout: '5 minutes', heartbeatTimeout: '15 seconds', retry: { initialInterval: '1s', maximumAttempts: 2 },
  });
  const temporal = proxyActivities<Dhis2Activities>({ startToCloseTimeout: '2 minutes', retry: { maximumInterval: '30s' } });
  show(pending.size ? 'applying' : 'idle');

  for (;;) {
    const { continueAsNewSuggested, historyLength } = workflowInfo();
    if (continueAsNewSuggested || historyLength > maxHistoryEvents) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof orgUnitBatch>({
        target, settings,
        carried: {
          pending: [...pending.values()],
          withSync: [...withSync], seq, progress,
        },
      });
    }
    // Idle with no resource in a sync of its own: this workflow ends (the next change starts it again).
    if (!(await condition(() => pending.size > 0, settings.idleAfter as Duration))) {
      if (!withSync.size && !pending.size) break;
      continue;
    }
    show('applying');
    const batch = [...pending.values()].slice(0, maxBatch);
    for (const c of batch) pending.delete(keyOf(c));
    // A resource whose sync runs, or that a sync waits for, goes to its own sync; the rest is applied here.
    const toSync = batch.filter((c) => withSync.has(keyOf(c)) || c.waiters.length);
    const direct = batch.filter((c) => !toSync.includes(c));
    let outcome: BatchOutcome = { applied: [], handBack: [] };
    if (direct.length) {
      try {
        outcome = await onTarget.applyBatch({ target, items: direct.map(({ type, uid }) => ({ type, uid })) });
      } catch (err) {
        // The batch failed as a whole (a worker lost mid-batch is replayed instead): every resource gets its own sync.
        outcome = { applied: [], handBack: direct.map(({ type, uid }) => ({ type, uid, reason: failureText(err) })) };
      }
    }
    // A resource whose reference the target lacks (a new unit under a new parent) tries once more, in a
    // batch after the missing resources; then it goes to its own sync, which waits for them.
    const again = outcome.handBack.filter((h) => h.missing?.length && !(pending.get(keyOf(h))?.tries) && !batch.find((c) => keyOf(c) === keyOf(h))?.tries);
    for (const h of again) {
      for (const m of h.missing!) if (!pending.has(keyOf(m))) pending.set(keyOf(m), { type: m.type, uid: m.uid, waiters: [] });
      const before = batch.find((c) => keyOf(c) === keyOf(h))!;
      if (!pending.has(keyOf(h))) pending.set(keyOf(h), { ...before, tries: 1 });
    }
    const retried = new Set(again.map(keyOf));
    const handedBack = new Set(outcome.handBack.filter((h) => !retried.has(keyOf(h))).map(keyOf));
    const handOver = [...toSync, ...direct.filter((c) => handedBack.has(keyOf(c)))].map((c) => {
      seq += 1;
      withSync.set(keyOf(c), seq);
      return { ...c, seq };
    });
    if (handOver.length) await temporal.handToSyncs({ target, taskQueue: workflowInfo().taskQueue, settings, changes: handOver });

    progress.batches += 1;
    const applied = outcome.applied.filter((a) => a.action === 'created' || a.action === 'updated').length;
    progress.applied += applied;
    progress.unchanged += outcome.applied.length - applied;
    progress.handedToSyncs += handOver.length;
    progress.recent.push({
      at: now(), applied, unchanged: outcome.applied.length - applied, handedBack: handedBack.size, forwarded: toSync.length, retried: retried.size || undefined,
      reasons: outcome.handBack.length ? [...new Set(outcome.handBack.map((h) => h.reason))].slice(0, 3) : undefined,
    });
    progress.recent.splice(0, Math.max(0, progress.recent.length - keptRecords));
    show(pending.size ? 'applying' : 'idle');
  }
  await condition(allHandlersFinished);
  show('completed');
  return progress;
}

// Like orgUnitSync it lives across deploys: every change to it goes through patched(), never pinning.
setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, orgUnitBatch);
