/** The PostgreSQL activities: one factory, as every system's. */
import { copyAppDir } from './app-dir';
import { checkApplicationHealth, checkCertificates } from './app-health';
import { inspectServer } from './inspect';
import { preflightStandbySetup } from './preflight';
import { ensureReplicationHba, ensureReplicationRole, ensureReplicationSettings, ensureReplicationSlot, restartDatabase } from './primary';
import { checkStandby, fenceHost, promoteStandby, restartOldPrimary, startApplication, stopPrimaryCleanly, unfenceAndStart, verifyWritable, waitForCatchup } from './promotion';
import { baseBackup, restoreDataDir, rewindDataDir, setDataDirAside, startDatabase, stopDatabase } from './standby';
import { verifyStreaming } from './verify';

export function createPostgresActivities() {
  return {
    inspectServer, preflightStandbySetup,
    ensureReplicationRole, ensureReplicationHba, ensureReplicationSettings, ensureReplicationSlot, restartDatabase,
    stopDatabase, startDatabase, setDataDirAside, restoreDataDir, baseBackup, rewindDataDir, copyAppDir, verifyStreaming,
    restartOldPrimary, stopPrimaryCleanly, waitForCatchup, fenceHost, unfenceAndStart, checkStandby, promoteStandby, verifyWritable, startApplication,
    checkCertificates, checkApplicationHealth,
  };
}
export type PostgresActivities = ReturnType<typeof createPostgresActivities>;
