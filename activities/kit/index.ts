/**
 * The kit's activities: what every runbook calls whatever its system (the secret-scope check at
 * its preflight, the lock holder's name while it waits for a target).
 */
import { createLockActivities } from './locks';
import { checkSecretScopes } from './secret-scopes';

export function createKitActivities() {
  return { ...createLockActivities(), checkSecretScopes };
}
export type KitActivities = ReturnType<typeof createKitActivities>;
