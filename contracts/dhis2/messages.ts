/**
 * The messages of the per-resource sync workflows, defined once for the workflows, the change
 * listener, the CLI and the tests.
 */
import { defineSignal } from '@temporalio/workflow';
import { progressQueryOf, type ApprovalLedger } from '../messages';
import type { ResourceType } from './resources';

/** The workflow type that keeps one resource in step on one target. */
export const syncWorkflowType = 'orgUnitSync';

/** How long a change may keep retrying against a target, and when an idle sync ends: from the target's config. */
export interface SyncSettings {
  idleAfter: string;
  giveUpAfter: string;
  maximumInterval: string;
}

export interface SyncArgs {
  target: string;
  type: ResourceType;
  uid: string;
  settings: SyncSettings;
  /** What a previous run of this workflow handed over when it continued as new. */
  carried?: CarriedState;
}

/** "Something about this resource changed on the source": the workflow reads the source itself, so the signal carries no data. */
export interface SourceChange {
  /** The source commit's WAL position and time, when it came from change capture. */
  lsn?: string;
  committedAt?: string;
  /** A workflow waiting for this resource to exist on the target: signalled once it does. */
  waiter?: string;
  /** Handed over by the target's orgUnitBatch: the sync tells it this number once it is idle (syncReleased). */
  seq?: number;
}
export const sourceChangedSignal = defineSignal<[SourceChange]>('sourceChanged');

/**
 * `parked`: a change the target refused for good waits for a person (retry or drop); later changes queue behind it.
 * `waiting_for_approval`: a change to fields that need approval waits at a gate; only this resource on this target waits.
 */
export type SyncStatus = 'syncing' | 'waiting_for_reference' | 'waiting_for_approval' | 'parked' | 'idle' | 'completed';

/** What an operator sends to a parked sync (`npm run runbook -- retry|drop`). */
export interface ParkedDecision {
  by: string;
  reason?: string;
}
/** Try the parked resource again (with the source's latest state), e.g. after the blocker was removed. */
export const retrySyncSignal = defineSignal<[ParkedDecision]>('retry');
/** Give up the parked change (a reason is required); changes queued behind it then apply. */
export const dropSyncSignal = defineSignal<[ParkedDecision]>('drop');

/** A change parked because the target refused it for good: the failure and the target's own report. */
export interface ParkedChange {
  at: string;
  error: string;
  /** The import report's errors (code, message, object). */
  errors: Array<{ code: string; message: string; uid?: string; property?: string }>;
  /** Source changes that arrived since, waiting behind it. */
  queued: number;
}

export interface SyncRecord {
  at: string;
  action: string;
  changes?: string[];
  error?: string;
  note?: string;
}

/**
 * The draft as a gate shows it: the exact import the target will receive, its field diff against
 * what the target holds now, and its fingerprint (what an approval is bound to).
 */
export interface DraftView {
  operation: 'create' | 'update' | 'delete';
  /** SHA-256 of the draft's canonical JSON (sorted keys), first 128 bits in hex. */
  fingerprint: string;
  /** The whole object as the target will receive it, as indented JSON (clipped past 6,000 characters). */
  object: string;
  /** Each field that differs from the target's copy now (values clipped). */
  changes: Array<{ field: string; old?: unknown; new?: unknown }>;
  /** The changed fields that need approval. */
  gatedFields: string[];
  /** Why the draft, as it is, cannot be applied (a reviewer's edit broke it). */
  invalid?: string;
}

/** The change an open gate holds: where its draft and its ticket are. */
export interface AwaitedChange {
  gate: string;
  operation: 'create' | 'update' | 'delete';
  /** The fields that need approval. */
  fields: string[];
  reviewLink: string;
  /** The ticket in the target's messaging, once opened. */
  ticket?: string;
  /** A reviewer edited the draft: later source changes no longer update it. */
  edited?: boolean;
  since: string;
}

/** The sync's progress; its approval part (runbook, title, approvals, decisions) is what the approval gateway reads. */
export interface SyncProgress extends ApprovalLedger {
  target: string;
  type: ResourceType;
  uid: string;
  status: SyncStatus;
  /** Change signals received, and passes made (a pass covers every change before it started). */
  changesSeen: number;
  passes: number;
  lastCommittedAt?: string;
  waitingFor?: Array<{ type: ResourceType; uid: string }>;
  error?: string;
  parked?: ParkedChange;
  awaiting?: AwaitedChange;
  /** Gates opened by this workflow so far (each opening gets the next number). */
  gates: number;
  /** The last passes, newest last. */
  recent: SyncRecord[];
}
export const syncProgressQuery = progressQueryOf<SyncProgress>();

export interface CarriedState {
  pending: boolean;
  waiters: string[];
  progress: SyncProgress;
  /** The last number the target's orgUnitBatch handed this resource over with. */
  batchSeq?: number;
}

/** The workflow type that applies one target's captured changes in batches (one per target: batchWorkflowId). */
export const batchWorkflowType = 'orgUnitBatch';

/** One captured change of one resource, for the target's orgUnitBatch. */
export interface CapturedChange {
  type: ResourceType;
  uid: string;
  lsn?: string;
  committedAt?: string;
  /** A sync waiting for this resource to exist on the target (the resource then goes to its own sync, which wakes it). */
  waiter?: string;
}
/** Changes the listener captured (or a sync asks for): at most maxCapturedPerSignal in one signal. */
export const changesCapturedSignal = defineSignal<[{ changes: CapturedChange[] }]>('changesCaptured');
export const maxCapturedPerSignal = 500;

/** A resource's sync is idle (or ended): its resource may go back to batches, unless it was handed over again since `seq`. */
export interface SyncReleased { type: ResourceType; uid: string; seq: number }
export const syncReleasedSignal = defineSignal<[SyncReleased]>('syncReleased');

export interface BatchArgs {
  target: string;
  settings: SyncSettings;
  carried?: BatchCarried;
}
export interface BatchCarried {
  /** Changes not yet applied, each with every sync waiting for its resource. */
  pending: Array<Omit<CapturedChange, 'waiter'> & { waiters: string[]; /** Batches that found a reference missing */ tries?: number }>;
  /** Resources with a sync of their own, and the number each was last handed over with. */
  withSync: Array<[string, number]>;
  seq: number;
  progress: BatchProgress;
}

export interface BatchProgress extends ApprovalLedger {
  runbook: typeof batchWorkflowType;
  title: string;
  target: string;
  status: 'applying' | 'idle' | 'completed';
  batches: number;
  /** Resources applied in batches, found already in step, or not taken by the target. */
  applied: number;
  unchanged: number;
  /** Hand-overs to a resource's own sync: it needed more (approval, a refusal, a reference), or its sync was running. */
  handedToSyncs: number;
  /** Resources with a running sync of their own now (their changes go there, in order). */
  withSync: number;
  pending: number;
  lastCommittedAt?: string;
  /** The last batches, newest last. */
  recent: Array<{ at: string; applied: number; unchanged: number; handedBack: number; forwarded: number; retried?: number; reasons?: string[] }>;
}
export const batchProgressQuery = progressQueryOf<BatchProgress>();
