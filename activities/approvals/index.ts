/**
 * Approval requests: sign one link per approver for the gate that just opened and DELIVER them
 * (e-mail, webhook; the DHIS2 ticket will be another channel). The activity returns only where
 * it sent what (link ids); the links themselves never enter the run's history or the logs.
 */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { approvalSecret, approvalUrl } from '../lib/approval-token';
import { loadChannelConfig } from './channels';
import { checkEmailRecipient, sendEmail } from './email';
import { composeMessage, type ApprovalRequest } from './message';
import { checkWebhook, postWebhook } from './webhook';

export type { ApprovalRequest } from './message';

export interface ApprovalRequestReceipt {
  channel: ApprovalRequest['channel'];
  to: string;
  links: Array<{ approver: string; linkId: string }>;
  sentAt: string;
}

export function createApprovalActivities() {
  return {
    async sendApprovalRequest(req: ApprovalRequest): Promise<ApprovalRequestReceipt> {
      const secret = approvalSecret();
      if (!secret) throw ApplicationFailure.nonRetryable('APPROVAL_SECRET (32+ characters) is not set on the worker: approval links cannot be signed', 'ConfigMissing');
      const run = Context.current().info.workflowExecution;
      if (!run?.runId) throw ApplicationFailure.nonRetryable('sendApprovalRequest must be called from a workflow', 'RunbookBug');
      const config = loadChannelConfig();
      // Check the recipient before signing anything.
      const email = req.channel === 'email' ? checkEmailRecipient(config.email, req.to) : undefined;
      const hook = req.channel === 'webhook' ? checkWebhook(config, req.to) : undefined;

      const urls = req.links.map((l) => ({
        approver: l.approver,
        url: approvalUrl({ workflowId: run.workflowId, runId: run.runId, gate: req.gate, nonce: req.nonce, approver: l.approver, exp: req.expiresAt, linkId: l.linkId }, secret),
      }));
      const message = composeMessage(req, run.workflowId, urls);
      if (email) await sendEmail(email, req.to, message);
      if (hook) await postWebhook(req.to, hook, message, req, run.workflowId);
      return { channel: req.channel, to: req.to, links: req.links, sentAt: new Date().toISOString() };
    },
  };
}
export type ApprovalActivities = ReturnType<typeof createApprovalActivities>;
