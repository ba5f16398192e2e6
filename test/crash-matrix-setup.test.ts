/**
 * The crash matrix of setupPostgresStandby against a real lab: the worker SIGKILLed at every
 * activity boundary (at its start, and after its work before its completion is reported), a new
 * worker finishes the run, and B streams from A with nothing done twice.
 */
import { expectCrashMatrixPasses } from './support/crash-matrix';
import { useLabs } from './lab/suite';
import { setupScenario } from './lab/crash-scenarios';

const suite = useLabs('crash-setup');

test('setupPostgresStandby survives a worker killed at every activity boundary', async () => {
  await expectCrashMatrixPasses(suite.client, setupScenario(suite.secretsDir), ['preflightStandbySetup', 'baseBackup', 'verifyStreaming']);
}, 15 * 60_000);
