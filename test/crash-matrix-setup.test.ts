/**
 * The crash matrix of setupPostgresStandby against a real lab: the worker SIGKILLed at every
 * activity boundary (at its start, and after its work before its completion is reported), a new
 * worker finishes the run, and B streams from A with nothing done twice.
 */
import { learnBoundaries, runCrashMatrix } from './support/crash-matrix';
import { useLabs } from './lab/suite';
import { setupScenario } from './lab/crash-scenarios';

const suite = useLabs('crash-setup');

test('setupPostgresStandby survives a worker killed at every activity boundary', async () => {
  const scenario = setupScenario(suite.secretsDir);
  const boundaries = await learnBoundaries(suite.client, scenario);
  expect(boundaries.map((b) => b.activityType)).toEqual(expect.arrayContaining(['preflightStandbySetup', 'baseBackup', 'verifyStreaming']));
  const outcomes = await runCrashMatrix(suite.client, scenario, boundaries);
  const failed = outcomes.filter((o) => !o.ok).map((o) => o.error);
  expect(failed).toEqual([]);
  if (!process.env.CRASH_MATRIX_ONLY) expect(outcomes).toHaveLength(boundaries.length * 2);
}, 15 * 60_000);
