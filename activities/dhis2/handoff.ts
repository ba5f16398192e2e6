/**
 * Handing a change to the resource's sync workflow: signal-with-start on its deterministic id,
 * so a duplicate hand-over is one more harmless signal and a finished sync simply starts again.
 * Used by the change listener, by syncs that wait for a reference, and by the snapshot.
 */
import type { Client } from '@temporalio/client';
import {
  batchWorkflowType, changesCapturedSignal, maxCapturedPerSignal, sourceChangedSignal, syncWorkflowType,
  type BatchArgs, type CapturedChange, type SourceChange, type SyncArgs, type SyncSettings,
} from '../../contracts/dhis2/messages';
import { batchWorkflowId, syncWorkflowId, type ResourceType } from '../../contracts/dhis2/resources';
import type { SyncConfig, SyncTarget } from './config';

export const syncSettings = (config: SyncConfig, target: SyncTarget): SyncSettings => ({
  idleAfter: config.idleAfter, giveUpAfter: target.retry.giveUpAfter, maximumInterval: target.retry.maximumInterval,
});

export interface Handoff { target: string; type: ResourceType; uid: string; settings: SyncSettings; change: SourceChange }

/** Resolves once Temporal has durably recorded the signal (or the start with it). */
export async function handOver(client: Client, taskQueue: string, h: Handoff): Promise<void> {
  const args: SyncArgs = { target: h.target, type: h.type, uid: h.uid, settings: h.settings };
  await client.workflow.signalWithStart(syncWorkflowType, {
    workflowId: syncWorkflowId(h.target, h.type, h.uid),
    taskQueue,
    args: [args],
    signal: sourceChangedSignal,
    signalArgs: [h.change],
    // The UI's Summary panel: which resource goes to which target (set when this hand-over starts the run).
    staticSummary: `Org-unit sync: ${h.type} ${h.uid} to ${h.target}`,
  });
}

/** Hands many changes of one target to its orgUnitBatch (signal-with-start), in signals of at most maxCapturedPerSignal changes. */
export async function handOverToBatch(client: Client, taskQueue: string, target: string, settings: SyncSettings, changes: CapturedChange[]): Promise<void> {
  const args: BatchArgs = { target, settings };
  for (let i = 0; i < changes.length; i += maxCapturedPerSignal) {
    await client.workflow.signalWithStart(batchWorkflowType, {
      workflowId: batchWorkflowId(taskQueue, target),
      taskQueue,
      args: [args],
      signal: changesCapturedSignal,
      signalArgs: [{ changes: changes.slice(i, i + maxCapturedPerSignal) }],
      staticSummary: `Org-unit batches to ${target}`,
    });
  }
}
