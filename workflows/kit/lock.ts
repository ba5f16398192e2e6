/**
 * One run at a time per target. A lock is a child workflow with the id `runbook-lock:<key>`:
 * Temporal lets only one run of a workflow id exist at a time, so starting it is the atomic
 * "take the lock". It lives while its holder runs: the kit releases it when the run ends, and the
 * parent-close policy ends it if the holder is terminated. Operators see every held lock in the UI.
 */
import {
  ApplicationFailure, CancellationScope, ParentClosePolicy, condition,
  defineSignal, proxyActivities, setHandler, sleep, startChild, workflowInfo, type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { KitActivities } from '../../activities/kit';
import type { RunState } from './run-state';

export const releaseLockSignal = defineSignal('release');

/** The lock workflow: holds until released, or until its holder closes (parent-close policy). */
export async function runbookLock(holder: { workflowId: string; runId: string; runbook: string }): Promise<string> {
  let released = false;
  setHandler(releaseLockSignal, () => { released = true; });
  await condition(() => released);
  return `released by ${holder.runbook} ${holder.workflowId}`;
}

const locks = proxyActivities<KitActivities>({ startToCloseTimeout: '30 seconds', retry: { maximumAttempts: 5 } });

export const lockWorkflowId = (key: string) => `runbook-lock:${key}`;

export class Locks {
  private readonly held: Array<ChildWorkflowHandle<typeof runbookLock>> = [];

  constructor(private readonly state: RunState) {}

  /**
   * Takes every key (in a fixed order, so two runs cannot deadlock). A key held by another run is
   * waited for up to `waitMs` (0: refuse at once), then refused naming the run that holds it.
   * A key held by this run's parent (a runbook run as a child step) counts as held.
   */
  async take(keys: string[], waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (const key of [...new Set(keys)].sort()) {
      for (;;) {
        const taken = await this.tryTake(key);
        if (taken) break;
        const holder = await locks.describeLockHolder({ workflowId: lockWorkflowId(key) });
        if (!holder) continue; // released in between: try again
        const parent = workflowInfo().parent;
        if (parent && parent.workflowId === holder.workflowId && parent.runId === holder.runId) break;
        if (Date.now() >= deadline) {
          throw ApplicationFailure.nonRetryable(
            `Another run is working on ${key}: ${holder.workflowId} (run ${holder.runId}). One run at a time per target: ` +
            'wait until it ends (or set "waitForLock"), or cancel it. This run changed nothing.', 'TargetBusy');
        }
        this.state.progress.waitingForLock = { key, heldBy: holder.workflowId };
        this.state.setStatus('waiting_for_lock');
        await sleep(Math.min(5_000, Math.max(1, deadline - Date.now())));
      }
    }
    if (this.state.progress.waitingForLock) {
      this.state.progress.waitingForLock = undefined;
      this.state.setStatus('running');
    }
    this.state.progress.locks = [...new Set(keys)].sort();
  }

  private async tryTake(key: string): Promise<boolean> {
    const info = workflowInfo();
    try {
      this.held.push(await startChild(runbookLock, {
        workflowId: lockWorkflowId(key),
        args: [{ workflowId: info.workflowId, runId: info.runId, runbook: info.workflowType }],
        parentClosePolicy: ParentClosePolicy.TERMINATE,
        staticSummary: `Lock on ${key}, held by ${info.workflowType} ${info.workflowId}`,
      }));
      return true;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return false;
      throw err;
    }
  }

  /** Releases every lock this run holds and waits until they are gone; nothing can interrupt it. */
  async releaseAll(): Promise<void> {
    if (!this.held.length) return;
    await CancellationScope.nonCancellable(async () => {
      for (const handle of this.held.splice(0)) {
        await handle.signal(releaseLockSignal).catch(() => undefined);
        await handle.result().catch(() => undefined);
      }
    });
  }
}
