/**
 * A worker of build A or B of the deploy test (RUNBOOKS_TEST_BUILD=a|b): the same worker as in
 * production (workers/worker.ts, versioned), with that build's workflows (test/workflows/deploy/).
 */
import { createActivities } from '../../activities';
import { runWorker } from '../../workers/worker';
import { createFakeTargetActivities } from './fake-target';

const build = process.env.RUNBOOKS_TEST_BUILD;
if (build !== 'a' && build !== 'b') throw new Error(`RUNBOOKS_TEST_BUILD must be a or b (got "${build}")`);

runWorker({
  workflowsPath: require.resolve(`../workflows/deploy/build-${build}`),
  workflowBundlePath: '', // bundle this build's workflows, not the suite's shared bundle
  activities: { ...createActivities(), ...createFakeTargetActivities() },
}).then(() => process.exit(0), (err) => {
  process.stderr.write(`Build ${build} worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
