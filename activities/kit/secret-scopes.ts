import { checkSecretUse, type SecretUse } from '../lib/secrets';

/** A secret the run's input names, and where and what for it would be sent. */
export type SecretCheck = SecretUse & { secret: string };

/** Refuses, before anything connects, a run whose input would send a secret where the worker's scopes do not allow it. */
export async function checkSecretScopes(uses: SecretCheck[]): Promise<{ checked: number }> {
  for (const { secret, ...use } of uses) checkSecretUse(secret, use);
  return { checked: uses.length };
}
