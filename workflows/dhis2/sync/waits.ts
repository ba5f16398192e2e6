/**
 * How long a sync waits: for the next source change until it has been idle for `idleAfter`
 * (then it ends), and between tries while the target lacks what the resource points at.
 */
import { condition, sleep } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { toMs } from '../../kit/approval';
import type { SyncState } from './state';

/** 30s, 1m, 2m ... 30m between tries while a reference is missing and nothing wakes us. */
export const backoff = (n: number): number => Math.min(30 * 60_000, 30_000 * 2 ** Math.max(0, n - 1));

export type IdleWatch = ReturnType<typeof idleWatch>;

/** One timer per idle period, not one per pass: reached() once `idleAfter` passed with no touch(). */
export function idleWatch(idleAfter: Duration) {
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

/**
 * Until a pass is due: true at once when a change is pending; while a reference is missing, true
 * after the back-off even without news; otherwise false once the sync has been idle long enough.
 */
export async function waitForChange(sync: SyncState): Promise<boolean> {
  if (sync.pending) return true;
  if (sync.progress.status === 'waiting_for_reference') {
    if (!(await condition(() => sync.pending, backoff(sync.referenceWaits)))) sync.pending = true;
    return true;
  }
  sync.idle.arm();
  await condition(() => sync.pending || sync.idle.reached());
  return sync.pending;
}
