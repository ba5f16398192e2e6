/**
 * Approval requests: sign one link per approver for the gate that just opened and DELIVER them
 * (e-mail, webhook; the DHIS2 ticket will be another channel). The activity returns only where
 * it sent what (link ids); the links themselves never enter the run's history or the logs.
 */
import { loadChannelConfig } from './channels';
import { signLinksForThisRun } from './links';
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
      const config = loadChannelConfig();
      // Check the recipient before signing anything.
      const email = req.channel === 'email' ? checkEmailRecipient(config.email, req.to) : undefined;
      const hook = req.channel === 'webhook' ? checkWebhook(config, req.to) : undefined;
      const { workflowId, urls } = signLinksForThisRun(req, 'sendApprovalRequest');
      const message = composeMessage(req, workflowId, urls);
      if (email) await sendEmail(email, req.to, message);
      if (hook) await postWebhook(req.to, hook, message, req, workflowId);
      return { channel: req.channel, to: req.to, links: req.links, sentAt: new Date().toISOString() };
    },
  };
}
export type ApprovalActivities = ReturnType<typeof createApprovalActivities>;
