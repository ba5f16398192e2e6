/**
 * orgUnitSyncSetup: prepares the source DHIS2 database for change capture; safe to run again at
 * any time (a second run changes nothing). The listener then reads the slot it creates.
 */
import type { Dhis2SetupActivities } from '../../activities/dhis2';
import { runbookActivities } from '../kit/activities';
import { defineRunbook } from '../kit/runbook';
import { databaseLock, syncSetupInput } from '../../contracts/dhis2/schema';

const act = runbookActivities<Dhis2SetupActivities>('act', { startToCloseTimeout: '2 minutes' });

export const orgUnitSyncSetup = defineRunbook({
  name: 'orgUnitSyncSetup',
  title: 'Set up change capture of DHIS2 org units (logical replication)',
  schema: syncSetupInput,
  steps: {
    preflight: 'Check the source database',
    walLevel: 'wal_level = logical',
    restart: 'Wait for a restart of PostgreSQL',
    captureRole: 'The listener\'s replication role',
    replicaIdentity: 'REPLICA IDENTITY FULL on the five tables',
    publication: 'The publication',
    slot: 'The logical replication slot',
    verify: 'Log in as the listener',
  },
  lockKeys: (input) => [databaseLock(input.database)],
}, async (rb, input) => {
  const { database, capture, dryRun } = input;
  const facts = await rb.step('preflight', () => act.inspectSyncSource({ database }));
  const wal = await rb.step('walLevel', () => act.setLogicalWal({ database, dryRun }));
  if (wal.restartNeeded) {
    await rb.step('restart', async () => {
      await rb.requireApproval('restart-for-logical-wal', {
        summary: `wal_level on ${database.host} is "${facts.walLevel}"; logical replication needs "logical" (now set in postgresql.auto.conf), ` +
          'which takes effect only when PostgreSQL RESTARTS (DHIS2 is briefly down). Restart it, then approve to continue.',
        ...input.restartApproval,
      });
      if (!dryRun) await act.checkLogicalWal({ database });
    });
  } else {
    rb.skip('restart', 'wal_level is already logical');
  }
  await rb.step('captureRole', () => act.ensureCaptureRole({ database, capture, dryRun }));
  await rb.step('replicaIdentity', () => act.ensureReplicaIdentity({ database, dryRun }));
  await rb.step('publication', () => act.ensurePublication({ database, publication: capture.publication, dryRun }));
  await rb.step('slot', () => act.ensureSlot({ database, slot: capture.slot, dryRun }));
  if (dryRun) {
    rb.skip('verify', 'dry-run: nothing to verify yet');
    return { database: `${database.host}:${database.port}/${database.database}`, slot: capture.slot, publication: capture.publication };
  }
  const verified = await rb.step('verify', () => act.verifyCaptureLogin({ database, capture }));
  return { database: `${database.host}:${database.port}/${database.database}`, slot: capture.slot, publication: capture.publication, systemId: verified.systemId };
});
