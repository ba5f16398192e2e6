/**
 * The crash matrix of promotePostgresStandby (failover of a SIGKILLed primary) against a real lab:
 * the worker SIGKILLed at every activity boundary; at the end there is exactly one primary with
 * every committed row, and the old primary stays fenced.
 */
import { learnBoundaries, runCrashMatrix } from './support/crash-matrix';
import { useLabs } from './lab/suite';
import { promoteScenario } from './lab/crash-scenarios';

const suite = useLabs('crash-promote');

test('promotePostgresStandby survives a worker killed at every activity boundary', async () => {
  const scenario = promoteScenario(suite.client, suite.queue, suite.secretsDir);
  const boundaries = await learnBoundaries(suite.client, scenario);
  expect(boundaries.map((b) => b.activityType)).toEqual(expect.arrayContaining(['fenceHost', 'promoteStandby', 'verifyWritable']));
  const outcomes = await runCrashMatrix(suite.client, scenario, boundaries);
  const failed = outcomes.filter((o) => !o.ok).map((o) => o.error);
  expect(failed).toEqual([]);
  if (!process.env.CRASH_MATRIX_ONLY) expect(outcomes).toHaveLength(boundaries.length * 2);
}, 15 * 60_000);
