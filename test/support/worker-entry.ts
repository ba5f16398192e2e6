/** The worker the tests start as a separate process (so they can SIGKILL it): real runbooks + test subjects. */
import { createActivities } from '../../activities';
import { runWorker } from '../../workers/worker';
import { crashInterceptors } from './crash-injection';
import { createFakeTargetActivities } from './fake-target';

// Each test worker makes its build current, as start.sh does (the deploy tests turn it off).
process.env.RUNBOOKS_SET_CURRENT ??= 'true';

runWorker({
  workflowsPath: require.resolve('../workflows'),
  activities: { ...createActivities(), ...createFakeTargetActivities() },
  activityInterceptors: crashInterceptors(),
}).then(() => process.exit(0), (err) => {
  process.stderr.write(`Test worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
