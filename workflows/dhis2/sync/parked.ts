/**
 * A change the target refused for good is PARKED, not dropped: this workflow is the dead letter,
 * found with RunbookStatus = "parked". Nothing applies (later changes queue behind it) until a
 * person retries it (`retry` signal) or gives it up (`drop`, with a reason).
 */
import { condition } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { ParkedChange, ParkedDecision } from '../../../contracts/dhis2/messages';
import { now } from '../../kit/run-state';
import type { SyncActivities } from './activities';
import type { ParkedVerdict, SyncState } from './state';

export async function park(sync: SyncState, { temporal }: SyncActivities, error: string, errors: ParkedChange['errors']): Promise<void> {
  const { target, type, uid } = sync.args;
  sync.progress.error = error;
  sync.progress.parked = { at: now(), error, errors: errors.slice(0, 20), queued: sync.pending ? 1 : 0 };
  sync.record({ action: 'parked', error });
  sync.show('parked');
  await temporal.notifySyncFailure({ target, type, uid, error }).catch(() => undefined);
}

/** The `retry` and `drop` signals: a verdict counts only while a change is parked, says who decides, and (a drop) why. */
export function judgeVerdict(sync: SyncState, kind: ParkedVerdict['kind'], d: ParkedDecision): void {
  const by = typeof d?.by === 'string' && d.by.trim() ? d.by.trim().slice(0, 200) : undefined;
  const reason = typeof d?.reason === 'string' && d.reason.trim() ? d.reason.trim().slice(0, 1000) : undefined;
  const status = sync.progress.status;
  const refused = status !== 'parked' ? `nothing is parked (status ${status})`
    : !by ? 'say who decides ("by")' : kind === 'drop' && !reason ? 'a drop needs a reason' : sync.verdict ? 'a decision is already being applied' : undefined;
  if (refused) { sync.record({ action: `${kind} ignored`, note: `${by ?? 'someone'}: ${refused}` }); return; }
  sync.verdict = { kind, by: by!, reason };
}

/** Waits (up to idleAfter, then the loop looks again) for a verdict, and applies it: a retry makes a pass due, a drop lets the queue move. */
export async function settleParked(sync: SyncState): Promise<void> {
  if (!(await condition(() => sync.verdict !== undefined, sync.args.settings.idleAfter as Duration))) return;
  const d = sync.verdict!;
  sync.verdict = undefined;
  sync.progress.parked = undefined;
  sync.progress.error = undefined;
  sync.record({ action: d.kind === 'retry' ? 'retried' : 'dropped', note: `by ${d.by}${d.reason ? `: ${d.reason}` : ''}` });
  if (d.kind === 'retry') sync.pending = true;
  sync.showNext();
}
