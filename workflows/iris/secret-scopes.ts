/**
 * The IRIS runbooks' secret-scope check: the kit's `checkSecretScopes`. Runs started before it
 * scheduled the activity `checkIrisSecretScopes`, and a run replays the commands it recorded, so
 * only new runs (patch 'one-secret-scope-check') schedule the kit's; remove the old branch, with
 * the worker's deprecated registration, when no run from before remains.
 */
import { patched } from '@temporalio/workflow';
import type { IrisActivities } from '../../activities/iris';
import type { KitActivities } from '../../activities/kit';
import type { SecretCheck } from '../../activities/kit/secret-scopes';
import { runbookActivities } from '../kit/activities';

const kit = runbookActivities<KitActivities>('check');
const iris = runbookActivities<Pick<IrisActivities, 'checkIrisSecretScopes'>>('check');

export function checkSecretScopes(uses: SecretCheck[]): Promise<{ checked: number }> {
  return patched('one-secret-scope-check') ? kit.checkSecretScopes(uses) : iris.checkIrisSecretScopes(uses);
}
