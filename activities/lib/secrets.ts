/**
 * Secrets stay with the worker: inputs name a secret ({ "secret": "pg-replication" }) and the
 * worker resolves it here, from RUNBOOKS_SECRET_<NAME> or from a file <name> in RUNBOOKS_SECRETS_DIR.
 *
 * Whoever can start a run chooses the hosts, so a secret is released only for the hosts and the
 * purposes the worker's scope file (RUNBOOKS_SECRET_SCOPES) allows it:
 *
 *   { "pg-replication": { "purposes": ["replication-password"], "hosts": ["10.20.0.5", "10.20.0.6"] },
 *     "ssh-openelis":   { "purposes": ["ssh-key"], "hosts": ["*"] } }
 *
 * Without a scope file every secret may go anywhere (development); with RUNBOOKS_ENV=production
 * the worker refuses to start without one.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { describeIssues } from '../../contracts/input';

export const secretPurposes = ['ssh-key', 'db-password', 'replication-password', 'smtp-password', 'webhook-url', 'api-token', 'api-password', 'iris-password'] as const;
export type SecretPurpose = typeof secretPurposes[number];

/** What a secret is about to be used for: where it goes (the address connected to or written on) and why. */
export interface SecretUse { host: string; purpose: SecretPurpose }

const scopeFile = z.record(z.string(), z.strictObject({
  purposes: z.array(z.enum(secretPurposes)).min(1),
  hosts: z.array(z.string().min(1)).min(1).describe('addresses or host names as the inputs give them; "*" for any'),
}));
type Scopes = z.infer<typeof scopeFile>;

export const secretScopesEnv = 'RUNBOOKS_SECRET_SCOPES';
export const secretEnvName = (name: string): string => `RUNBOOKS_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

/** The scope file, checked; undefined when none is configured. Throws naming every bad field. */
export function loadSecretScopes(file = process.env[secretScopesEnv]): Scopes | undefined {
  if (!file) {
    if (process.env.RUNBOOKS_ENV === 'production') {
      throw ApplicationFailure.nonRetryable(`${secretScopesEnv} is not set: in production every secret must say which hosts it may go to`, 'SecretScopes');
    }
    return undefined;
  }
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(file, 'utf8')); } catch (err) {
    throw ApplicationFailure.nonRetryable(`${secretScopesEnv}=${file} cannot be read as JSON: ${(err as Error).message}`, 'SecretScopes');
  }
  const parsed = scopeFile.safeParse(raw);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`${secretScopesEnv}=${file} is not valid:\n${describeIssues(parsed.error).map((p) => `  - ${p}`).join('\n')}`, 'SecretScopes');
  }
  return parsed.data;
}

/** Refuses, before anything connects, a secret that the scope file does not allow for this host and purpose. */
export function checkSecretUse(name: string, use: SecretUse): void {
  const scopes = loadSecretScopes();
  if (!scopes) return;
  const scope = scopes[name];
  const host = use.host.toLowerCase();
  const hostOk = scope?.hosts.some((h) => h === '*' || h.toLowerCase() === host);
  if (scope && hostOk && scope.purposes.includes(use.purpose)) return;
  const allowed = scope ? `it may go to ${scope.hosts.join(', ')} for ${scope.purposes.join(', ')}` : `it is not in ${secretScopesEnv}`;
  throw ApplicationFailure.nonRetryable(
    `Secret "${name}" may not be used as ${use.purpose} for ${use.host}: ${allowed}. ` +
    'Fix the input, or widen the secret\'s scope in the worker\'s configuration. Nothing was changed.', 'SecretRefused');
}

/** The secret's value, for this use only (checked against the scopes first). */
export function resolveSecret(name: string, use: SecretUse): string {
  checkSecretUse(name, use);
  const fromEnv = process.env[secretEnvName(name)];
  if (fromEnv) return fromEnv;
  const dir = process.env.RUNBOOKS_SECRETS_DIR;
  if (dir) {
    try {
      return readFileSync(path.join(dir, path.basename(name)), 'utf8').replace(/\r?\n$/, '');
    } catch { /* fall through to the error below */ }
  }
  throw ApplicationFailure.nonRetryable(
    `Secret "${name}" is not known to the worker: set ${secretEnvName(name)} in the worker's environment` +
    `${dir ? ` or put it in ${path.join(dir, name)}` : ' or a file in RUNBOOKS_SECRETS_DIR'}, then retry the run.`,
    'SecretMissing');
}
