/**
 * The messages every runbook understands, defined once and imported by the workflows, the CLI,
 * the approval gateway and the tests.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';

/** What an approver sends: which gate, who, and why. */
export interface Decision {
  gate: string;
  by: string;
  reason?: string;
  /** Set by the approval gateway: the id of the signed link, so a link counts once. */
  linkId?: string;
  /** Where the decision came from: cli, ui, link. */
  via?: string;
}

export const approveSignal = defineSignal<[Decision]>('approve');
export const rejectSignal = defineSignal<[Decision]>('reject');
export const progressQuery = defineQuery<Progress>('progress');

export const signalDescriptions = {
  approve: 'Approve a gate: {"gate": "<gate>", "by": "<your name>", "reason": "<optional>"}',
  reject: 'Reject a gate, ending it at once: {"gate": "<gate>", "by": "<your name>", "reason": "<why>"}',
  progress: 'The run: current step, every step with its state and times, approvals, decisions, compensations',
} as const;

export type RunStatus = 'running' | 'waiting_for_approval' | 'compensating' | 'completed' | 'rolled_back' | 'failed' | 'cancelled' | 'planned';
export type StepState = 'pending' | 'running' | 'done' | 'skipped' | 'failed' | 'compensated';
export type GateState = 'open' | 'approved' | 'rejected' | 'timedOut';
export type CompensationState = 'registered' | 'running' | 'done' | 'failed' | 'released';

export interface StepProgress {
  name: string;
  title: string;
  state: StepState;
  startedAt?: string;
  endedAt?: string;
  /** What the step did, or in a dry-run what it would do. */
  actions: string[];
  note?: string;
  error?: string;
}

export interface GateProgress {
  gate: string;
  step?: string;
  summary: string;
  state: GateState;
  approvers?: string[];
  quorum: number;
  fourEyes: boolean;
  approvedBy: string[];
  rejectedBy?: string;
  reason?: string;
  openedAt: string;
  deadline: string;
  closedAt?: string;
  onTimeout: 'fail' | 'return';
}

export interface DecisionRecord {
  gate: string;
  decision: 'approve' | 'reject';
  by: string;
  reason?: string;
  via?: string;
  linkId?: string;
  receivedAt: string;
  /** accepted: counted; ignored: recorded but not counted (see note); pending: its gate is not open yet. */
  outcome: 'accepted' | 'ignored' | 'pending';
  note?: string;
}

export interface CompensationProgress {
  title: string;
  step: string;
  state: CompensationState;
  registeredAt: string;
  endedAt?: string;
  error?: string;
}

export interface Progress {
  runbook: string;
  title: string;
  status: RunStatus;
  dryRun: boolean;
  requestedBy?: string;
  currentStep?: string;
  steps: StepProgress[];
  approvals: GateProgress[];
  decisions: DecisionRecord[];
  compensations: CompensationProgress[];
  error?: string;
}

/** What a dry-run returns instead of acting. */
export interface RunbookPlan {
  runbook: string;
  dryRun: true;
  steps: Array<{ name: string; title: string; state: StepState; actions: string[] }>;
  approvals: Array<{ gate: string; summary: string; quorum: number }>;
}
