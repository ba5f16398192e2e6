/**
 * The crash matrix of mirrorHssys against a real lab: the worker SIGKILLed at every activity
 * boundary (at its start, and after its work before its completion is reported), a new worker
 * finishes the run, and HSSYS ends mirrored, never dismounted, with nothing done twice.
 */
import { expectCrashMatrixPasses } from './support/crash-matrix';
import { useLabs } from './lab/suite';
import { mirrorHssysScenario } from './lab/crash-scenarios';
import { startIrisLab, type IrisLab } from './lab/iris';

const suite = useLabs<IrisLab>('crash-hssys', (secretsDir) => startIrisLab({ secretsDir }));

test('mirrorHssys survives a worker killed at every step boundary', async () => {
  await expectCrashMatrixPasses(suite.client, mirrorHssysScenario(suite.secretsDir), ['dismountDatabase', 'copyDatabaseFile', 'placeDatabaseFile', 'mountDatabase', 'waitUntilCaughtUp']);
}, 20 * 60_000);
