/**
 * The fast path of a sync: the same pass as syncResource, run as a LOCAL activity inside the
 * worker that runs the workflow (no task queue round trip), for a target that answers well.
 *
 * It never waits on a troubled target: when a target has more calls in flight than its
 * concurrency, or failed or answered slowly in the last 30 seconds, the pass is `deferred` at
 * once and the workflow uses the slow path (the target's own task queue, retries with backoff),
 * so a slow or failing target takes only its own slots there.
 */
import { applyDraft, type ApplyOutcome } from './approval';
import { checkRequest, syncResourceOn, type SyncOutcome } from './sync';
import { openTarget, type SyncRequest } from './target';

const slowCallMs = 5_000;
const coolOffMs = 30_000;
const targets = new Map<string, { inFlight: number; troubledUntil: number }>();

export type Deferred = { action: 'deferred'; reason: string };
export type FastOutcome = SyncOutcome | Deferred;

/** Runs `work` in this worker when the target answers well, else defers at once (the slow path takes it). */
export async function onHealthyTarget<T>(targetName: string, work: (target: ReturnType<typeof openTarget>) => Promise<T>, slowMs = slowCallMs): Promise<T | Deferred> {
  const target = openTarget(targetName);
  const health = targets.get(target.name) ?? { inFlight: 0, troubledUntil: 0 };
  targets.set(target.name, health);
  if (Date.now() < health.troubledUntil) return { action: 'deferred', reason: `${target.name} failed or was slow in the last ${coolOffMs / 1000}s` };
  if (health.inFlight >= target.settings.concurrency) return { action: 'deferred', reason: `${target.name} has ${health.inFlight} calls in flight` };
  health.inFlight += 1;
  const started = Date.now();
  try {
    return await work(target);
  } catch (err) {
    health.troubledUntil = Date.now() + coolOffMs;
    return { action: 'deferred', reason: (err as Error).message };
  } finally {
    health.inFlight -= 1;
    if (Date.now() - started > slowMs) health.troubledUntil = Date.now() + coolOffMs;
  }
}

export function syncResourceFast(req: SyncRequest): Promise<FastOutcome> {
  return onHealthyTarget(req.target, (target) => { checkRequest(req); return syncResourceOn(target, req); });
}

/** The approved draft applied in this worker (a person just approved it and waits to see it applied); deferred like a pass. */
export function applyDraftFast(req: Parameters<typeof applyDraft>[0]): Promise<ApplyOutcome | Deferred> {
  return onHealthyTarget(req.target, () => { checkRequest(req); return applyDraft(req); });
}
