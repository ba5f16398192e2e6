/** An IRIS preflight as runs before patch 'one-secret-scope-check' recorded it: the IRIS-named activity. */
import type { IrisActivities } from '../../../activities/iris';
import { runbookActivities } from '../../../workflows/kit/activities';

const check = runbookActivities<IrisActivities>('check');

export async function irisSecretScopeCheck(): Promise<number> {
  return (await check.checkIrisSecretScopes([{ secret: 'healthconnect-ssh', host: 'healthconnect-0', purpose: 'ssh-key' }])).checked;
}
