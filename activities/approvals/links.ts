import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { approvalSecret, approvalUrl } from '../lib/approval-token';

/** One gate opening's links to sign: for which gate and opening, until when, one per approver. */
export interface LinkRequest {
  gate: string;
  nonce: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  links: Array<{ approver: string; linkId: string }>;
}

/**
 * Signs one link per approver for the gate opening of the run that called this activity: every
 * channel (e-mail, webhook, the DHIS2 ticket) delivers links made here, and never returns them.
 */
export function signLinksForThisRun(req: LinkRequest, activity: string): { workflowId: string; urls: Array<{ approver: string; url: string }> } {
  const secret = approvalSecret();
  if (!secret) throw ApplicationFailure.nonRetryable('APPROVAL_SECRET (32+ characters) is not set on the worker: approval links cannot be signed', 'ConfigMissing');
  const run = Context.current().info.workflowExecution;
  if (!run?.runId) throw ApplicationFailure.nonRetryable(`${activity} must be called from a workflow`, 'RunbookBug');
  const urls = req.links.map((l) => ({
    approver: l.approver,
    url: approvalUrl({ workflowId: run.workflowId, runId: run.runId, gate: req.gate, nonce: req.nonce, approver: l.approver, exp: req.expiresAt, linkId: l.linkId }, secret),
  }));
  return { workflowId: run.workflowId, urls };
}
