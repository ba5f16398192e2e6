/** The Firely Server migration activities: one factory, as every system's. */
import { syncConformance } from './admin';
import { checkDatabases, shardTarget } from './databases';
import { preflightMigrationHost, provisionTarget, startIngest, stopIngest, waitForIngest } from './ingest';
import { switchProxyUpstream } from './proxy';
import { checkLateWritesArrived, checkOldServer, countBoth, stopOldServer, verifyNewServer, waitUntilOldServerIdle, writesOnNewServerSince } from './servers';

export function createFirelyActivities() {
  return {
    checkOldServer, checkDatabases, preflightMigrationHost, provisionTarget, shardTarget,
    startIngest, waitForIngest, stopIngest,
    verifyNewServer, countBoth, switchProxyUpstream, waitUntilOldServerIdle, checkLateWritesArrived, writesOnNewServerSince, stopOldServer,
    syncConformance,
  };
}
export type FirelyActivities = ReturnType<typeof createFirelyActivities>;
