/**
 * orgUnitSync: keeps ONE resource in step on ONE target (workflow id
 * orgunit-sync:<target>:<type>:<uid>). The change listener signals it for every source change;
 * each pass reads the source as it is then, so changes that arrive while a pass runs become one
 * more pass, applied in order. Waits for what the resource points at, retries a target that is
 * down, continues as new before its history grows large, and ends when idle.
 *
 * A change to fields that need approval waits at a gate (./sync/approval-gate.ts); a change the
 * target refuses for good is parked until a person retries or drops it (./sync/parked.ts).
 */
import { allHandlersFinished, condition, continueAsNew, getExternalWorkflowHandle, patched, setHandler, setWorkflowOptions, workflowInfo } from '@temporalio/workflow';
import {
  dropSyncSignal, retrySyncSignal, sourceChangedSignal, syncProgressQuery, syncReleasedSignal, type SyncArgs, type SyncProgress,
} from '../../contracts/dhis2/messages';
import { batchWorkflowId } from '../../contracts/dhis2/resources';
import { syncActivities } from './sync/activities';
import { ApprovalGate } from './sync/approval-gate';
import { judgeVerdict, settleParked } from './sync/parked';
import { syncPass } from './sync/pass';
import { SyncState } from './sync/state';
import { waitForChange } from './sync/waits';

export async function orgUnitSync(args: SyncArgs): Promise<SyncProgress> {
  const sync = new SyncState(args);
  setHandler(sourceChangedSignal, (change) => sync.sourceChanged(change));
  setHandler(retrySyncSignal, (d) => judgeVerdict(sync, 'retry', d));
  setHandler(dropSyncSignal, (d) => judgeVerdict(sync, 'drop', d));
  setHandler(syncProgressQuery, () => sync.progress);
  sync.announce();
  const activities = syncActivities(args);
  const gate = new ApprovalGate(sync, activities);
  sync.resume();

  for (;;) {
    // An update still running (an approver's decision reading the draft) gets its answer first.
    if (sync.historyIsLong()) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof orgUnitSync>(sync.handOver());
    }
    if (sync.parked) {
      await settleParked(sync);
      continue;
    }
    // In step and nothing due: the target's batches may take this resource again.
    if (sync.progress.status === 'idle' && !sync.pending) await releaseToBatches(sync);
    // Idle for idleAfter with no change: this sync ends (the next change starts it again).
    if (!(await waitForChange(sync))) break;
    sync.startPass();
    await syncPass(sync, activities, gate);
  }
  await condition(allHandlersFinished);
  await releaseToBatches(sync);
  sync.show('completed');
  return sync.progress;
}

/**
 * Handed over by the target's orgUnitBatch: tell it this sync is done with what it was handed (the
 * number of the last hand-over), so its batches may apply the resource again. The batch ignores it
 * when it has handed the resource over since. Once per hand-over.
 */
async function releaseToBatches(sync: SyncState): Promise<void> {
  const seq = sync.batchSeq;
  if (seq === undefined || sync.releasedSeq === seq || !patched('batch-release')) return;
  sync.releasedSeq = seq;
  const { target, type, uid } = sync.args;
  await getExternalWorkflowHandle(batchWorkflowId(workflowInfo().taskQueue, target)).signal(syncReleasedSignal, { type, uid, seq }).catch(() => undefined);
}

// It lives for weeks, across deploys: it moves to the current build at its next task (and its
// continue-as-new starts there), so every change to it goes through patched(), never pinning.
setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, orgUnitSync);
