/**
 * Resources point at each other (an org unit at its parent, a group at its members): a sync
 * whose target lacks what its resource points at asks those resources' syncs to run and to wake
 * it once the target has them; it wakes, in turn, whoever waited for its own resource.
 */
import { getExternalWorkflowHandle, workflowInfo } from '@temporalio/workflow';
import type { MissingReference } from '../../../activities/dhis2/target';
import { sourceChangedSignal } from '../../../contracts/dhis2/messages';
import type { SyncActivities } from './activities';
import type { SyncState } from './state';

/** The target lacks what this resource points at: ask each missing resource's sync to run and to wake this one when the target has it. */
export async function askForReferences(sync: SyncState, { temporal }: SyncActivities, refs: MissingReference[], action: string): Promise<void> {
  const { target, type, uid, settings } = sync.args;
  const missing = refs.filter((m) => !(m.type === type && m.uid === uid));
  sync.progress.waitingFor = missing.map(({ type: t, uid: u }) => ({ type: t, uid: u }));
  sync.record({ action, note: `the target lacks ${missing.map((m) => `${m.type} ${m.uid}${m.property ? ` (${m.property})` : ''}`).join(', ')}` });
  await temporal.requestSync({ target, refs: missing, waiter: workflowInfo().workflowId, taskQueue: workflowInfo().taskQueue, settings });
  sync.show('waiting_for_reference');
}

/** The target holds this resource now (or never will): wake whoever waited for it. */
export async function wakeWaiters(sync: SyncState): Promise<void> {
  const ids = [...sync.waiters];
  sync.waiters.clear();
  await Promise.all(ids.map((id) => getExternalWorkflowHandle(id).signal(sourceChangedSignal, {}).catch(() => undefined)));
}

/** A pass got past its references: the next wait for one starts short again. */
export function referencesFound(sync: SyncState): void {
  sync.referenceWaits = 0;
  sync.progress.waitingFor = undefined;
}
