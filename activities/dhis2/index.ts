/**
 * DHIS2 org-unit sync activities. The per-resource ones (syncResource, notifySyncFailure) run
 * on each target's own task queue; the others on the worker's.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { BatchCarried, SyncSettings } from '../../contracts/dhis2/messages';
import type { ResourceType } from '../../contracts/dhis2/resources';
import { runLimited } from '../lib/limited';
import { applyBatch } from './batch';
import { currentSyncConfig } from './config';
import { handOver, handOverToBatch } from './handoff';
import { applyDraftFast, syncResourceFast } from './fast-path';
import * as setup from './setup';
import { checkSnapshotTarget, copyPage } from './snapshot';
import { whileHeartbeating } from '../lib/heartbeat';
import { checkRequest, syncResource } from './sync';
import { applyDraft, finishApproval, reviewDraft } from './approval';
import { openTarget, type SyncRequest } from './target';
import { openApprovalTicket, updateTicket } from './ticket';

/** Every function activities/dhis2/setup.ts exports is an activity. */
export function createDhis2SetupActivities() {
  return { ...setup };
}
export type Dhis2SetupActivities = ReturnType<typeof createDhis2SetupActivities>;

export function createDhis2Activities() {
  return {
    ...createDhis2SetupActivities(),
    syncResource: (req: SyncRequest) => whileHeartbeating(() => syncResource(req)),
    syncResourceFast,
    applyDraftFast,
    // Approvals: on the target's queue, like syncResource.
    applyDraft: (req: Parameters<typeof applyDraft>[0]) => { checkRequest(req); return whileHeartbeating(() => applyDraft(req)); },
    reviewDraft: (req: Parameters<typeof reviewDraft>[0]) => { checkRequest(req); return whileHeartbeating(() => reviewDraft(req)); },
    openApprovalTicket: (req: Parameters<typeof openApprovalTicket>[0]) => { checkRequest(req); return whileHeartbeating(() => openApprovalTicket(req)); },
    updateTicket: (req: Parameters<typeof updateTicket>[0]) => whileHeartbeating(() => updateTicket(req)),
    finishApproval: (req: Parameters<typeof finishApproval>[0]) => { checkRequest(req); return whileHeartbeating(() => finishApproval(req)); },
    checkSnapshotTarget: (req: { target: string }) => whileHeartbeating(() => checkSnapshotTarget(req)),
    copyPage: (req: Parameters<typeof copyPage>[0]) => whileHeartbeating(() => copyPage(req)),

    /** Asks each referenced resource's sync to run, and to signal `waiter` once the target has it. */
    async requestSync(req: { target: string; refs: Array<{ type: ResourceType; uid: string }>; waiter: string; taskQueue: string; settings: SyncSettings }): Promise<void> {
      for (const ref of req.refs) checkRequest({ target: req.target, ...ref });
      const client = Context.current().client;
      // With batches, the target's orgUnitBatch hands the resource to its own sync, and knows it did.
      if (currentSyncConfig().batches) return handOverToBatch(client, req.taskQueue, req.target, req.settings, req.refs.map((ref) => ({ ...ref, waiter: req.waiter })));
      await Promise.all(req.refs.map((ref) => handOver(client, req.taskQueue, { target: req.target, ...ref, settings: req.settings, change: { waiter: req.waiter } })));
    },

    /** The batch apply of orgUnitBatch: on the target's queue, like syncResource. */
    applyBatch: (req: Parameters<typeof applyBatch>[0]) => whileHeartbeating(() => applyBatch(req)),

    /** orgUnitBatch hands these resources to their own syncs (each change numbered, so the sync can say when it is done with it). */
    async handToSyncs(req: { target: string; taskQueue: string; settings: SyncSettings; changes: Array<BatchCarried['pending'][number] & { seq: number }> }): Promise<void> {
      for (const c of req.changes) checkRequest({ target: req.target, type: c.type, uid: c.uid });
      const client = Context.current().client;
      const jobs = req.changes.flatMap((c) => (c.waiters.length ? c.waiters : [undefined]).map((waiter) => () => handOver(client, req.taskQueue, {
        target: req.target, type: c.type, uid: c.uid, settings: req.settings, change: { lsn: c.lsn, committedAt: c.committedAt, waiter, seq: c.seq },
      })));
      await whileHeartbeating(() => runLimited(jobs, 32));
    },

    /** Tells the target's recipients that a change could not be applied, and why. */
    async notifySyncFailure(req: { target: string; type: ResourceType; uid: string; error: string }): Promise<void> {
      const target = openTarget(req.target);
      if (!target.settings.notify.on.includes('failure')) return;
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? 'unknown';
      try {
        await target.notify(`[Runbooks org-unit sync] FAILED to sync ${req.type} ${req.uid} (parked)`,
          `The change to ${req.type} ${req.uid} could not be applied on ${target.name}:\n\n${req.error}\n\n` +
          `It is PARKED, not lost: later changes to this resource wait behind it. Once the cause is fixed: npm run runbook -- retry ${workflowId}; ` +
          `to give it up: npm run runbook -- drop ${workflowId} --reason "...".`);
      } catch (err) {
        throw ApplicationFailure.retryable(`Could not notify ${target.name} of the failure: ${(err as Error).message}`);
      }
    },
  };
}

export type Dhis2Activities = ReturnType<typeof createDhis2Activities>;
