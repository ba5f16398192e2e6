/**
 * The messages every runbook understands, defined once and imported by the workflows, the CLI,
 * the approval gateway and the tests.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';

/** How a decision reached the run: a signed link (through the gateway), the runbook CLI, or a plain signal (Temporal UI, `temporal workflow signal`). */
export type DecisionVia = 'link' | 'cli' | 'ui';

/** What an approver sends: which gate, who, and why. */
export interface Decision {
  gate: string;
  by: string;
  reason?: string;
  /** Where the decision came from; a signal without it is taken as `ui`. */
  via?: DecisionVia;
  /** Set by the approval gateway: the id of the signed link, so a link counts once. */
  linkId?: string;
  /** Set by the approval gateway: the nonce of the gate opening the link was made for. */
  nonce?: string;
  /** Who sent it, as the sender saw itself: the CLI sends `<OS user>@<host>`. */
  origin?: string;
}

export const approveSignal = defineSignal<[Decision]>('approve');
export const rejectSignal = defineSignal<[Decision]>('reject');
export const progressQuery = defineQuery<Progress>('progress');

export const signalDescriptions = {
  approve: 'Approve a gate: {"gate": "<gate>", "by": "<your name>", "reason": "<optional>"}',
  reject: 'Reject a gate, ending it at once: {"gate": "<gate>", "by": "<your name>", "reason": "<why>"}',
  progress: 'The run: current step, every step with its state and times, approvals, decisions, compensations',
} as const;

export type RunStatus = 'running' | 'waiting_for_lock' | 'waiting_for_approval' | 'compensating' | 'completed' | 'rolled_back' | 'failed' | 'cancelled' | 'planned';
export type StepState = 'pending' | 'running' | 'done' | 'skipped' | 'failed' | 'compensated';
export type GateState = 'open' | 'approved' | 'rejected' | 'timedOut';
export type CompensationState = 'registered' | 'running' | 'done' | 'failed' | 'released';
export type RequestState = 'sending' | 'sent' | 'failed' | 'cancelled';

/** An approval request the gate sent: to whom, through which channel, and the id of the link (never the link). */
export interface ApprovalRequestProgress {
  approver: string;
  channel: 'email' | 'webhook';
  to: string;
  linkId: string;
  state: RequestState;
  sentAt?: string;
  error?: string;
}

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
  /** Drawn when the gate opened: links are bound to this opening, so no link can exist before it. */
  nonce: string;
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
  /** Approval requests sent when the gate opened. */
  requests: ApprovalRequestProgress[];
}

export interface DecisionRecord {
  gate: string;
  decision: 'approve' | 'reject';
  by: string;
  reason?: string;
  via: DecisionVia;
  origin?: string;
  linkId?: string;
  receivedAt: string;
  /** accepted: counted; ignored: recorded but not counted (see note). */
  outcome: 'accepted' | 'ignored';
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
  /** The targets this run holds (one run at a time per target). */
  locks?: string[];
  /** Set while another run holds a target this run needs. */
  waitingForLock?: { key: string; heldBy: string };
  /** Ignored decisions past the per-gate cap: counted, not recorded, so a flood cannot grow the run. */
  droppedDecisions: number;
  error?: string;
}

/** What a dry-run returns instead of acting. */
export interface RunbookPlan {
  runbook: string;
  dryRun: true;
  steps: Array<{ name: string; title: string; state: StepState; actions: string[] }>;
  approvals: Array<{ gate: string; summary: string; quorum: number }>;
}
