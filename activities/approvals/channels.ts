/**
 * Where approval requests can go: the worker's channel configuration, a JSON file named by
 * RUNBOOKS_APPROVAL_CHANNELS. The SMTP relay and the webhooks are the worker's (with their
 * credentials as secret references); a runbook's input only names a recipient: an e-mail address
 * (within `allowedDomains` when set) or the name of a configured webhook.
 *
 *   {
 *     "email": { "host": "smtp.hospital.org", "port": 587, "requireTLS": true,
 *                "from": "Runbooks <runbooks@hospital.org>", "user": "runbooks",
 *                "password": { "secret": "smtp-password" }, "allowedDomains": ["hospital.org"] },
 *     "webhooks": { "ops-slack": { "url": { "secret": "slack-ops-webhook" }, "format": "slack" } }
 *   }
 */
import { readFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { httpUrl } from '../../contracts/endpoints';
import { describeIssues, secretRef } from '../../contracts/input';

const emailChannel = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(587),
  /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
  secure: z.boolean().default(false),
  /** Refuse to send when the server does not offer STARTTLS. */
  requireTLS: z.boolean().default(true),
  from: z.string().min(3),
  user: z.string().min(1).optional(),
  password: secretRef.optional(),
  /** A CA bundle (PEM) for a relay with an internal certificate. */
  caFile: z.string().startsWith('/', 'an absolute path').optional(),
  allowedDomains: z.array(z.string().regex(/^[a-z0-9.-]+$/i, 'a domain such as hospital.org')).optional(),
}).refine((e) => !e.password || e.user, { message: 'a password needs a user', path: ['user'] });

const webhookChannel = z.strictObject({
  /** Slack and Teams webhook URLs carry their own credential: give them as a secret reference. */
  url: z.union([httpUrl, secretRef]),
  /** slack: {"text"}; teams: a MessageCard; json: every field, for a ticketing system's own hook. */
  format: z.enum(['slack', 'teams', 'json']).default('json'),
});

export const channelConfig = z.strictObject({
  email: emailChannel.optional(),
  webhooks: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a webhook name: letters, digits, _ . -'), webhookChannel).default({}),
});
export type ChannelConfig = z.infer<typeof channelConfig>;
export type EmailChannel = NonNullable<ChannelConfig['email']>;
export type WebhookChannel = ChannelConfig['webhooks'][string];

export const channelConfigEnv = 'RUNBOOKS_APPROVAL_CHANNELS';

/** Reads and checks the channel configuration; throws an error naming every bad field. */
export function loadChannelConfig(file = process.env[channelConfigEnv]): ChannelConfig {
  if (!file) return { webhooks: {} };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw configError(`${channelConfigEnv}=${file} cannot be read as JSON: ${(err as Error).message}`);
  }
  const parsed = channelConfig.safeParse(raw);
  if (!parsed.success) throw configError(`${channelConfigEnv}=${file} is not a valid channel configuration:\n${describeIssues(parsed.error).map((p) => `  - ${p}`).join('\n')}`);
  return parsed.data;
}

export const configError = (message: string) => ApplicationFailure.nonRetryable(message, 'ChannelConfig');
