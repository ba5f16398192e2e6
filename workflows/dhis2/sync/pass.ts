/**
 * One pass: make the target hold what the source holds now, and act on what the target said —
 * applied (wake whoever waited for this resource), a reference missing (ask for it and wait),
 * a change that needs approval (its gate), or refused for good (park it).
 */
import type { FastOutcome } from '../../../activities/dhis2/fast-path';
import type { SyncOutcome } from '../../../activities/dhis2/sync';
import type { ApprovalNeeded } from '../../../activities/dhis2/approval';
import { failureText } from '../../../contracts/failure';
import type { SyncActivities } from './activities';
import type { ApprovalGate } from './approval-gate';
import { park } from './parked';
import { askForReferences, referencesFound, wakeWaiters } from './references';
import type { SyncState } from './state';

export async function syncPass(sync: SyncState, activities: SyncActivities, gate: ApprovalGate): Promise<void> {
  const outcome = await readAndApply(sync, activities);
  sync.idle.touch();
  if (outcome.action === 'waitingForReferences') {
    await askForReferences(sync, activities, outcome.missing, 'waiting');
    sync.referenceWaits += 1;
    return;
  }
  referencesFound(sync);
  if (outcome.action === 'needsApproval') return approve(sync, activities, gate, outcome);
  if (outcome.action === 'failed') return park(sync, activities, outcome.error, outcome.errors);
  sync.progress.error = undefined;
  if (outcome.action === 'skipped') sync.record({ action: 'skipped', note: outcome.reason });
  else if (outcome.action === 'created' || outcome.action === 'updated' || outcome.action === 'deleted') {
    sync.record({ action: outcome.action, changes: outcome.changes.map((c) => c.field), note: outcome.notifyError && `notification failed: ${outcome.notifyError}` });
  } else sync.record({ action: 'unchanged' });
  if (outcome.action !== 'skipped' && outcome.action !== 'deleted') await wakeWaiters(sync);
  sync.showNext();
}

/** The fast path first; a target that is busy or troubled gets the pass on its own queue, retried as its config allows. */
async function readAndApply(sync: SyncState, { fast, onTarget }: SyncActivities): Promise<SyncOutcome> {
  const { target, type, uid } = sync.args;
  const quick: FastOutcome = await fast.syncResourceFast({ target, type, uid }).catch((err) => ({ action: 'deferred', reason: failureText(err) }));
  if (quick.action !== 'deferred') return quick;
  try {
    return await onTarget.syncResource({ target, type, uid });
  } catch (err) {
    // Retried for as long as the target's config allows: now it counts as failed for good.
    return { action: 'failed', error: failureText(err), errors: [] };
  }
}

/** Waits at the gate, as long as its timeout; source changes meanwhile update the draft and the ticket. */
async function approve(sync: SyncState, activities: SyncActivities, gate: ApprovalGate, change: ApprovalNeeded): Promise<void> {
  const decided = await gate.decide(change);
  if (decided.action === 'failed') return park(sync, activities, decided.error, decided.errors);
  if (decided.action === 'applied' && decided.operation !== 'delete') await wakeWaiters(sync);
  sync.showNext();
}
