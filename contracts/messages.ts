/**
 * The messages every runbook understands, defined once and imported by the workflows, the CLI,
 * the approval gateway and the tests.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

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
  /** The fingerprint of the content the approver saw (GateProgress.fingerprint): a gate that has one counts an approval only for it. */
  fingerprint?: string;
}

export const approveSignal = defineSignal<[Decision]>('approve');
export const rejectSignal = defineSignal<[Decision]>('reject');

/** Which opening of a gate a look is for (the approval gateway sends the link's gate and nonce). */
export interface GateLook { gate: string; nonce: string }
/**
 * "Look at what this gate decides again, and show me": a gate bound to content (a draft a reviewer
 * may edit elsewhere) reads it anew, and answers with the gate as it is now. Refused without a
 * trace in history when the gate is not open, the nonce is another opening's, or the run's looks
 * are used up.
 */
export const reviewGateUpdate = defineUpdate<GateProgress, [GateLook]>('reviewGate');

/** A decision sent as a Workflow Update (the approval gateway's way): the decision, and approve or reject. */
export interface GateDecision extends Decision { decision: 'approve' | 'reject' }
/** What the run answers a decision with: counted, or why not, and the gate as it is now. */
export interface DecisionAnswer { outcome: 'accepted' | 'ignored'; note?: string; gate?: GateProgress }
/**
 * A decision as a Workflow Update: the run judges it at once and answers with the outcome, so the
 * gateway needs no second look. Refused without a trace in history when it could not count anyway
 * (the gate is not open, another opening's nonce, not an approver, four-eyes, a version that is not
 * the gate's, a link already used for this version). A gate bound to content reads the content
 * again before counting: an approval of a version that is no longer the draft is answered `ignored`
 * with the new version. Signals (`approve`, `reject`) stay for the UI and the CLI, held to the same rules.
 */
export const decideGateUpdate = defineUpdate<DecisionAnswer, [GateDecision]>('decideGate');

export const signalDescriptions = {
  approve: 'Approve a gate: {"gate": "<gate>", "by": "<your name>", "reason": "<optional>"}',
  reject: 'Reject a gate, ending it at once: {"gate": "<gate>", "by": "<your name>", "reason": "<why>"}',
  progress: 'The run: current step, every step with its state and times, approvals, decisions, compensations',
} as const;

export type RunStatus = 'running' | 'waiting_for_lock' | 'waiting_for_approval' | 'compensating' | 'completed' | 'rolled_back' | 'failed' | 'cancelled' | 'planned';
export type StepState = 'pending' | 'running' | 'done' | 'skipped' | 'failed' | 'compensated';
/** withdrawn: the run closed the gate itself because what it asked about no longer needs a decision. */
export type GateState = 'open' | 'approved' | 'rejected' | 'timedOut' | 'withdrawn';
export type CompensationState = 'registered' | 'running' | 'done' | 'failed' | 'released';
export type RequestState = 'sending' | 'sent' | 'failed' | 'cancelled';

/** An approval request the gate sent: to whom, through which channel, and the id of the link (never the link). */
export interface ApprovalRequestProgress {
  approver: string;
  /** email, webhook, or a runbook's own channel (e.g. dhis2-message: a DHIS2 private message). */
  channel: string;
  to: string;
  linkId: string;
  state: RequestState;
  sentAt?: string;
  /** What the channel made of it, e.g. the ticket's id. */
  ref?: string;
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
  /** What exactly is being decided, one line each (e.g. "code: OU_1 -> OU_2"), shown on the approval page. */
  details?: string[];
  state: GateState;
  /** Drawn when the gate opened: links are bound to this opening, so no link can exist before it. */
  nonce: string;
  approvers?: string[];
  quorum: number;
  fourEyes: boolean;
  /** Who asked for what this gate decides, when it is not the run's requestedBy (e.g. the author of a source change): with four-eyes they may not approve. */
  requestedBy?: string;
  /** Others whose changes the content came to hold while the gate waited (later source changes): with four-eyes they may not approve either. */
  alsoBy?: string[];
  approvedBy: string[];
  rejectedBy?: string;
  reason?: string;
  openedAt: string;
  deadline: string;
  closedAt?: string;
  onTimeout: 'fail' | 'return';
  /** Approval requests sent when the gate opened. */
  requests: ApprovalRequestProgress[];
  /**
   * SHA-256 (of canonical JSON, first 128 bits in hex) of the exact content this gate decides, when
   * it decides content (a DHIS2 draft): only approvals carrying it count, and when the content
   * changes the approvals given so far no longer count.
   */
  fingerprint?: string;
}

export interface DecisionRecord {
  gate: string;
  decision: 'approve' | 'reject';
  by: string;
  reason?: string;
  via: DecisionVia;
  origin?: string;
  linkId?: string;
  /** The fingerprint the decision carried (of the content the approver saw). */
  fingerprint?: string;
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

/**
 * The approval side of a run's `progress`, the same in every workflow that has gates (runbooks and
 * the per-resource sync workflows alike): what the approval gateway and the CLI read.
 */
export interface ApprovalLedger {
  runbook: string;
  title: string;
  requestedBy?: string;
  approvals: GateProgress[];
  decisions: DecisionRecord[];
  /** Ignored decisions past the per-run cap, and every decision for a gate that never existed: counted, not recorded, so a flood cannot grow the run. */
  droppedDecisions: number;
}

export interface Progress extends ApprovalLedger {
  status: RunStatus;
  dryRun: boolean;
  currentStep?: string;
  steps: StepProgress[];
  compensations: CompensationProgress[];
  /** The targets this run holds (one run at a time per target). */
  locks?: string[];
  /** Set while another run holds a target this run needs. */
  waitingForLock?: { key: string; heldBy: string };
  error?: string;
}

/**
 * The `progress` query, one name for every workflow with gates. A runbook answers `Progress`; a
 * workflow with a progress of its own (the DHIS2 sync) or a reader of several kinds (the approval
 * gateway) names the shape it answers or reads, which always carries the approval ledger.
 */
export const progressQueryOf = <P extends ApprovalLedger>() => defineQuery<P>('progress');
export const progressQuery = progressQueryOf<Progress>();

/** What activities that change something return: whether they did, and what (or, in a dry-run, what they would do). */
export interface ChangeReport {
  changed: boolean;
  actions: string[];
}

/** What a dry-run returns instead of acting. */
export interface RunbookPlan {
  runbook: string;
  dryRun: true;
  steps: Array<{ name: string; title: string; state: StepState; actions: string[] }>;
  approvals: Array<{ gate: string; summary: string; quorum: number }>;
}
