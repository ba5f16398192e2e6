/**
 * The crash matrix of promotePostgresStandby (failover of a SIGKILLed primary) against a real lab:
 * the worker SIGKILLed at every activity boundary; at the end there is exactly one primary with
 * every committed row, and the old primary stays fenced.
 */
import { expectCrashMatrixPasses } from './support/crash-matrix';
import { useLabs } from './lab/suite';
import { promoteScenario } from './lab/crash-scenarios';

const suite = useLabs('crash-promote');

test('promotePostgresStandby survives a worker killed at every activity boundary', async () => {
  await expectCrashMatrixPasses(suite.client, promoteScenario(suite.client, suite.queue, suite.secretsDir), ['fenceHost', 'promoteStandby', 'verifyWritable']);
}, 15 * 60_000);
