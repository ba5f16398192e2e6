/**
 * The fast path of a sync: the same pass as syncResource, run as a LOCAL activity inside the
 * worker that runs the workflow (no task queue round trip), for a target that answers well.
 *
 * It never waits on a troubled target: when a target has more calls in flight than its
 * concurrency, or failed or answered slowly in the last 30 seconds, the pass is `deferred` at
 * once and the workflow uses the slow path (the target's own task queue, retries with backoff),
 * so a slow or failing target takes only its own slots there.
 */
import { checkRequest, syncResourceOn, type SyncOutcome } from './sync';
import { openTarget, type SyncRequest } from './target';

const slowCallMs = 5_000;
const coolOffMs = 30_000;
const targets = new Map<string, { inFlight: number; troubledUntil: number }>();

export type FastOutcome = SyncOutcome | { action: 'deferred'; reason: string };

export async function syncResourceFast(req: SyncRequest): Promise<FastOutcome> {
  const target = openTarget(req.target);
  const health = targets.get(target.name) ?? { inFlight: 0, troubledUntil: 0 };
  targets.set(target.name, health);
  if (Date.now() < health.troubledUntil) return { action: 'deferred', reason: `${target.name} failed or was slow in the last ${coolOffMs / 1000}s` };
  if (health.inFlight >= target.settings.concurrency) return { action: 'deferred', reason: `${target.name} has ${health.inFlight} calls in flight` };
  health.inFlight += 1;
  const started = Date.now();
  try {
    checkRequest(req);
    return await syncResourceOn(target, req);
  } catch (err) {
    health.troubledUntil = Date.now() + coolOffMs;
    return { action: 'deferred', reason: (err as Error).message };
  } finally {
    health.inFlight -= 1;
    if (Date.now() - started > slowCallMs) health.troubledUntil = Date.now() + coolOffMs;
  }
}
