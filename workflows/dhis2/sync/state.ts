/**
 * What one org-unit sync knows between its passes: its progress (what the `progress` query
 * returns), the source changes not yet looked at, who waits for this resource, and a person's
 * pending retry or drop. Everything it shows goes through `show`: the UI's current details and
 * the search attribute operators filter on.
 */
import { setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { RunbookName, RunbookResource, RunbookStatus, RunbookTarget } from '../../../contracts/search-attributes';
import {
  syncWorkflowType, type ParkedDecision, type SourceChange, type SyncArgs, type SyncProgress, type SyncRecord, type SyncStatus,
} from '../../../contracts/dhis2/messages';
import { renderSync, syncTitle } from '../../../contracts/dhis2/render';
import type { ApprovalHost } from '../../kit/approval';
import { now } from '../../kit/run-state';
import { idleWatch, type IdleWatch } from './waits';

/** Passes kept in progress; history past that is in Temporal's event history. */
const keptRecords = 10;
/** Continue as new past this many events, well before Temporal's limits make replays slow. */
const maxHistoryEvents = 2_000;

/** What operators filter on (RunbookStatus): a sync that is merely between passes is still `active`. */
const searchStatus: Record<SyncStatus, string> = {
  syncing: 'active', idle: 'active', waiting_for_reference: 'waiting_for_reference', waiting_for_approval: 'waiting_for_approval', parked: 'parked', completed: 'completed',
};

/** A person's retry or drop of the parked change. */
export type ParkedVerdict = { kind: 'retry' | 'drop' } & ParkedDecision;

export class SyncState implements ApprovalHost {
  readonly progress: SyncProgress;
  /** Source changes not yet looked at: the next pass covers every one of them. */
  pending: boolean;
  /** Workflows that wait for this resource to exist on the target (signalled once it does). */
  readonly waiters: Set<string>;
  /** A retry or drop of the parked change, received and not yet applied. */
  verdict?: ParkedVerdict;
  /** Passes in a row that found a reference missing: the wait before trying again grows with it. */
  referenceWaits = 0;
  /** The last number the target's orgUnitBatch handed this resource over with (undefined: not handed over by it). */
  batchSeq?: number;
  /** The hand-over number this sync last told the batch it is done with. */
  releasedSeq?: number;
  readonly idle: IdleWatch;
  /** The RunbookStatus last upserted (each upsert is a history event). */
  private published = '';

  constructor(readonly args: SyncArgs) {
    const { target, type, uid, carried } = args;
    this.progress = {
      runbook: syncWorkflowType, title: syncTitle(target, type, uid), approvals: [], decisions: [], droppedDecisions: 0, gates: 0,
      target, type, uid, status: 'syncing', changesSeen: 0, passes: 0, recent: [],
      ...carried?.progress,
    };
    this.pending = carried?.pending ?? false;
    this.waiters = new Set(carried?.waiters ?? []);
    this.batchSeq = carried?.batchSeq;
    this.idle = idleWatch(args.settings.idleAfter as Duration);
  }

  /** The `sourceChanged` signal: one more pass is due; a waiter asks to be told once the target has this resource. */
  sourceChanged(change: SourceChange): void {
    this.pending = true;
    this.idle.touch();
    this.progress.changesSeen += 1;
    if (this.progress.parked) this.progress.parked.queued += 1;
    if (typeof change?.committedAt === 'string') this.progress.lastCommittedAt = change.committedAt;
    if (typeof change?.waiter === 'string' && change.waiter !== workflowInfo().workflowId) this.waiters.add(change.waiter);
    if (typeof change?.seq === 'number' && Number.isSafeInteger(change.seq)) this.batchSeq = Math.max(this.batchSeq ?? 0, change.seq);
  }

  /** The search attributes that say which sync this is (its status follows with the first `show`). */
  announce(): void {
    const { target, type, uid } = this.args;
    upsertSearchAttributes([
      { key: RunbookName, value: syncWorkflowType },
      { key: RunbookTarget, value: target },
      { key: RunbookResource, value: `${type}:${uid}` },
    ]);
  }

  record(r: Omit<SyncRecord, 'at'>): void {
    this.progress.recent.push({ at: now(), ...r });
    this.progress.recent.splice(0, Math.max(0, this.progress.recent.length - keptRecords));
  }

  show(status: SyncStatus): void {
    this.progress.status = status;
    this.publish();
    // The search attribute changes only between kinds of state, not on every pass.
    const kind = searchStatus[status];
    if (kind !== this.published) {
      upsertSearchAttributes([{ key: RunbookStatus, value: kind }]);
      this.published = kind;
    }
  }

  /** The first picture of a run: a carried status stays (parked, waiting), but a finished sync woken again is idle. */
  resume(): void {
    this.show(this.pending ? 'syncing' : this.progress.status === 'completed' ? 'idle' : this.progress.status);
  }

  /** Between passes: another one is due, or the sync is idle. */
  showNext(): void {
    this.show(this.pending ? 'syncing' : 'idle');
  }

  /** Current details only: what the approval desk calls after its ledger changed (the status did not). */
  publish(): void {
    setCurrentDetails(renderSync(this.progress));
  }

  /** For the approval desk: the change waits for a person, or goes on. */
  waiting(yes: boolean): void {
    this.show(yes ? 'waiting_for_approval' : 'syncing');
  }

  /** For the approval desk in a dry-run: a sync has none. */
  plan(): void {
    return undefined;
  }

  get parked(): boolean {
    return this.progress.status === 'parked';
  }

  /** A pass begins: it covers every change so far. */
  startPass(): void {
    this.pending = false;
    this.progress.passes += 1;
    this.show('syncing');
  }

  /** Time to continue as new: the history is long, and nothing is half done (no pass due unless parked, no verdict to apply). */
  historyIsLong(): boolean {
    const { continueAsNewSuggested, historyLength } = workflowInfo();
    return (!this.pending || this.parked) && !this.verdict && (continueAsNewSuggested || historyLength > maxHistoryEvents);
  }

  /** What the next run of this workflow starts from (SyncArgs and CarriedState: running syncs depend on this shape). */
  handOver(): SyncArgs {
    const { target, type, uid, settings } = this.args;
    return { target, type, uid, settings, carried: { pending: this.pending, waiters: [...this.waiters], progress: this.progress, batchSeq: this.batchSeq } };
  }
}
