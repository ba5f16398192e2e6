/** The webhook channel: a JSON POST in the Slack, Teams or plain JSON shape (undici). */
import { ApplicationFailure } from '@temporalio/common';
import { request } from 'undici';
import { parseHttpUrl } from '../../contracts/endpoints';
import { resolveSecret } from '../lib/secrets';
import { configError, type ChannelConfig, type WebhookChannel } from './channels';
import type { ApprovalMessage, ApprovalRequest } from './message';

export function checkWebhook(config: ChannelConfig, name: string): WebhookChannel {
  const hook = config.webhooks[name];
  if (!hook) {
    const known = Object.keys(config.webhooks);
    throw configError(`No webhook "${name}" in the worker's RUNBOOKS_APPROVAL_CHANNELS (known: ${known.join(', ') || 'none'})`);
  }
  return hook;
}

function body(hook: WebhookChannel, message: ApprovalMessage, req: ApprovalRequest, workflowId: string): unknown {
  if (hook.format === 'slack') return { text: message.text };
  if (hook.format === 'teams') {
    return { '@type': 'MessageCard', '@context': 'https://schema.org/extensions', summary: message.subject, title: message.subject, text: message.text.replace(/\n/g, '\n\n') };
  }
  return {
    subject: message.subject, text: message.text, runbook: req.runbook, workflowId, gate: req.gate, summary: req.summary,
    requestedBy: req.requestedBy, deadline: req.deadline, expiresAt: new Date(req.expiresAt * 1000).toISOString(), links: message.links,
  };
}

export async function postWebhook(name: string, hook: WebhookChannel, message: ApprovalMessage, req: ApprovalRequest, workflowId: string): Promise<void> {
  // The input names the webhook, never its URL: the scope's "host" of a webhook URL is the webhook's name.
  const url = typeof hook.url === 'string' ? hook.url : resolveSecret(hook.url.secret, { host: name, purpose: 'webhook-url' });
  // The URL may carry the webhook's credential: errors name the webhook, never its URL.
  const fail = (text: string, retry: boolean) =>
    (retry ? ApplicationFailure.retryable : ApplicationFailure.nonRetryable)(`Webhook "${name}" ${text}`, 'WebhookFailed');
  // A URL from a secret met no schema: the same rule as a URL in the file (the problem is named, never the URL).
  const parsed = parseHttpUrl(url);
  if (!parsed.ok) throw fail(`has a URL that is refused: ${parsed.problem}`, false);
  let status: number;
  try {
    const res = await request(url, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(hook, message, req, workflowId)),
      headersTimeout: 15_000, bodyTimeout: 15_000,
    });
    status = res.statusCode;
    await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
  } catch (err) {
    throw fail(`could not be reached: ${(err as { code?: string }).code ?? (err as Error).name}`, true);
  }
  if (status >= 200 && status < 300) return;
  // 408, 429 and 5xx may pass on a later attempt; any other answer will not.
  throw fail(`answered HTTP ${status}`, status === 408 || status === 429 || status >= 500);
}
