/** The e-mail channel: one message per recipient through the worker's SMTP relay (nodemailer). */
import { readFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import nodemailer from 'nodemailer';
import { resolveSecret } from '../lib/secrets';
import { configError, type EmailChannel } from './channels';
import type { ApprovalMessage } from './message';

export function checkEmailRecipient(config: EmailChannel | undefined, to: string): EmailChannel {
  if (!config) throw configError(`Cannot e-mail ${to}: the worker has no "email" channel in RUNBOOKS_APPROVAL_CHANNELS`);
  const domain = to.slice(to.lastIndexOf('@') + 1).toLowerCase();
  if (config.allowedDomains && !config.allowedDomains.some((d) => d.toLowerCase() === domain)) {
    throw configError(`Cannot e-mail ${to}: the worker sends approval requests only to ${config.allowedDomains.join(', ')}`);
  }
  return config;
}

export async function sendEmail(config: EmailChannel, to: string, message: ApprovalMessage): Promise<void> {
  const transport = nodemailer.createTransport({
    host: config.host, port: config.port, secure: config.secure, requireTLS: config.requireTLS,
    auth: config.user ? { user: config.user, pass: config.password ? resolveSecret(config.password.secret, { host: config.host, purpose: 'smtp-password' }) : undefined } : undefined,
    tls: config.caFile ? { ca: readFileSync(config.caFile) } : undefined,
    connectionTimeout: 15_000, greetingTimeout: 15_000, socketTimeout: 30_000,
    logger: false, debug: false,
  });
  try {
    const info = await transport.sendMail({ from: config.from, to, subject: message.subject, text: message.text });
    if (info.rejected.length) throw ApplicationFailure.nonRetryable(`The SMTP relay ${config.host} refused ${to}: ${info.response}`, 'EmailRejected');
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    const e = err as { responseCode?: number; code?: string; message?: string };
    // 5xx and authentication failures are permanent: retrying would not help.
    const permanent = (e.responseCode ?? 0) >= 500 || e.code === 'EAUTH' || e.code === 'ETLS';
    const text = `E-mail to ${to} through ${config.host}:${config.port} failed: ${e.message ?? String(err)}`;
    throw permanent ? ApplicationFailure.nonRetryable(text, 'EmailFailed') : ApplicationFailure.retryable(text, 'EmailFailed');
  } finally {
    transport.close();
  }
}
