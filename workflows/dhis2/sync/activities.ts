/**
 * The sync's activity stubs. Not the kit's presets: a sync runs on its target's own task queue
 * with the retry window from the target's config (giveUpAfter, maximumInterval), and its stubs
 * keep the options running syncs were scheduled with.
 */
import { proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { Dhis2Activities } from '../../../activities/dhis2';
import type { SyncArgs } from '../../../contracts/dhis2/messages';
import { syncActivityQueue } from '../../../contracts/dhis2/resources';

export function syncActivities({ target, settings }: SyncArgs) {
  const targetQueue = syncActivityQueue(workflowInfo().taskQueue, target);
  return {
    /** Fast path: a local activity in this worker, for a target that answers well (it defers at once otherwise). */
    fast: proxyLocalActivities<Dhis2Activities>({ startToCloseTimeout: '20 seconds', retry: { maximumAttempts: 1 } }),
    /** Slow path: the target's own task queue, so a slow or failing target takes only its own slots; retried with backoff. */
    onTarget: proxyActivities<Dhis2Activities>({
      taskQueue: targetQueue,
      startToCloseTimeout: '3 minutes',
      heartbeatTimeout: '10 seconds',
      scheduleToCloseTimeout: settings.giveUpAfter as Duration,
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: settings.maximumInterval as Duration },
    }),
    /** Temporal itself (starting the syncs of missing references) and the failure notice: on the worker's queue. */
    temporal: proxyActivities<Dhis2Activities>({ startToCloseTimeout: '1 minute', retry: { maximumInterval: '30s' } }),
    /** A look at the target while a gate waits: short-lived, a failure only means "look again later". */
    probe: proxyActivities<Dhis2Activities>({
      taskQueue: targetQueue, startToCloseTimeout: '1 minute', heartbeatTimeout: '10 seconds', scheduleToCloseTimeout: '2 minutes',
    }),
    /** An approver's approval waits on this (the decideGate update): in this worker, one read, a few seconds at most; the apply checks the version again anyway. */
    glance: proxyLocalActivities<Dhis2Activities>({ startToCloseTimeout: '4 seconds', retry: { maximumAttempts: 1 } }),
    /** An approver's look at the draft (the reviewGate update): a person waits for it, so it gives up soon and the page shows the draft as last read. */
    look: proxyActivities<Dhis2Activities>({
      taskQueue: targetQueue, startToCloseTimeout: '10 seconds', scheduleToCloseTimeout: '15 seconds', retry: { initialInterval: '500ms', maximumAttempts: 3 },
    }),
  };
}

export type SyncActivities = ReturnType<typeof syncActivities>;
