/**
 * Secrets stay with the worker: inputs name a secret ({ "secret": "pg-replication" }) and the
 * worker resolves it here, from RUNBOOKS_SECRET_<NAME> or from a file <name> in RUNBOOKS_SECRETS_DIR.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';

export const secretEnvName = (name: string): string => `RUNBOOKS_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

export function resolveSecret(name: string): string {
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
