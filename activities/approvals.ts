import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { approvalLink, approvalSecret } from './lib/approval-token';

export function createApprovalActivities() {
  return {
    /**
     * A signed link for one approver of one gate of the calling run, to put in a message or a ticket.
     * The link is a credential: send it on, do not keep it in the run's result.
     */
    async createApprovalLink(req: { gate: string; approver: string; ttlSeconds?: number }): Promise<string> {
      const secret = approvalSecret();
      if (!secret) throw ApplicationFailure.nonRetryable('APPROVAL_SECRET (32+ characters) is not set on the worker: approval links cannot be signed', 'ConfigMissing');
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      if (!workflowId) throw ApplicationFailure.nonRetryable('createApprovalLink must be called from a workflow', 'RunbookBug');
      return approvalLink({ workflowId, gate: req.gate, approver: req.approver, ttlSeconds: req.ttlSeconds ?? 24 * 3600 }, secret);
    },
  };
}
