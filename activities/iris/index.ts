/** The Health Connect (IRIS) mirroring activities: one factory, as every system's. */
import { copyDatabaseFile, placeDatabaseFile, restoreDatabaseFile } from './copy';
import { activateDatabase, addDatabaseToMirror, catchUpDatabase, dismountDatabase, mountDatabase, waitUntilCaughtUp } from './databases';
import { checkSecretScopes } from '../kit/secret-scopes';
import { preflightMirrorHssys, verifyHssysMirror } from './preflight';
import { enableProductionAutoStart, installFoundationNamespace, preflightMirroredNamespace, waitForNamespace } from './namespace';
import { ensureHsServices, ensureNetworkHostName, scheduleMirrorTask } from './services';
import { preflightSwitchover, startInstance, stopInstance, verifyFromOutside, waitForRole } from './switchover';

export function createIrisActivities() {
  return {
    // Deprecated: the kit's checkSecretScopes under the name IRIS runs started before
    // patch 'one-secret-scope-check' scheduled; remove when no run from before remains.
    checkIrisSecretScopes: checkSecretScopes,
    preflightMirrorHssys, verifyHssysMirror,
    ensureHsServices, ensureNetworkHostName, scheduleMirrorTask,
    addDatabaseToMirror, dismountDatabase, mountDatabase, activateDatabase, catchUpDatabase, waitUntilCaughtUp,
    copyDatabaseFile, placeDatabaseFile, restoreDatabaseFile,
    preflightMirroredNamespace, installFoundationNamespace, enableProductionAutoStart, waitForNamespace,
    preflightSwitchover, stopInstance, startInstance, waitForRole, verifyFromOutside,
  };
}
export type IrisActivities = ReturnType<typeof createIrisActivities>;
