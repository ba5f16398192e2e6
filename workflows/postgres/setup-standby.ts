/**
 * Makes `standby` a streaming standby of `primary`; safe to run again at any time.
 * Replaces OpenELIS's configurePrimary.sh / configureSecondary.sh.
 */
import { workflowInfo } from '@temporalio/workflow';
import type { KitActivities } from '../../activities/kit';
import type { PostgresActivities } from '../../activities/postgres';
import { runbookActivities } from '../kit/activities';
import { defineRunbook, type Undo } from '../kit/runbook';
import { secretUses, serverLocks, setupStandbyInput } from '../../contracts/postgres/schema';

const kit = runbookActivities<KitActivities>('check');
const check = runbookActivities<PostgresActivities>('check');
const act = runbookActivities<PostgresActivities>('act', { startToCloseTimeout: '15 minutes' });
const long = runbookActivities<PostgresActivities>('long');

/** 2026-11-23T04:48:36.123Z -> 20261123T044836Z: names the kept-aside data directory. */
const stampOf = (iso: string) => iso.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');

export const setupPostgresStandby = defineRunbook({
  name: 'setupPostgresStandby',
  title: 'Set up a PostgreSQL streaming standby',
  schema: setupStandbyInput,
  steps: {
    preflight: 'Check both hosts',
    replicationRole: 'Replication role on the primary',
    allowStandby: 'pg_hba entry for the standby',
    walSettings: 'Replication settings on the primary',
    restartPrimary: 'Restart the primary to apply them',
    replicationSlot: 'Replication slot on the primary',
    stopStandby: 'Stop the standby',
    keepOldData: 'Keep the old data directory aside',
    copyData: 'Copy the data from the primary',
    startStandby: 'Start the standby',
    copyAppDir: 'Copy the application directory',
    verify: 'Verify streaming with a canary row',
  },
  lockKeys: (input) => serverLocks(input.primary, input.standby),
}, async (rb, input) => {
  const { primary, standby, replication: repl, dryRun } = input;
  const stamp = stampOf(workflowInfo().startTime.toISOString());
  const backup = { primary, standby, user: repl.user, password: repl.password, slot: repl.slot, maxRate: repl.baseBackupMaxRate, dryRun };

  const found = await rb.step('preflight', async () => {
    await kit.checkSecretScopes(secretUses([primary, standby], { password: repl.password, between: [primary, standby] }));
    return check.preflightStandbySetup({
      primary, standby, slot: repl.slot, replaceStandbyData: input.replaceStandbyData, rewind: input.rewind, certificates: input.appDir?.certificates,
    });
  });

  await rb.step('replicationRole', () => act.ensureReplicationRole({ host: primary, user: repl.user, password: repl.password, dryRun, rewind: input.rewind }));
  await rb.step('allowStandby', () => act.ensureReplicationHba({ host: primary, user: repl.user, standbyAddress: standby.address, dryRun, rewind: input.rewind }));
  const settings = await rb.step('walSettings', () => act.ensureReplicationSettings({ host: primary, maxWalSenders: repl.maxWalSenders, maxSlotWalKeepSize: repl.maxSlotWalKeepSize, dryRun }));
  if (settings.restartNeeded) {
    await rb.step('restartPrimary', async (step) => {
      await rb.requireApproval('restart-primary', {
        summary: `Restart the primary ${primary.name} to apply ${settings.actions.join('; ') || 'pending settings'}: its database is DOWN for the restart (downtime)`,
        ...input.restartApproval,
      });
      step.undo(`Start the database on ${primary.name} again`, () => act.startDatabase({ host: primary, dryRun }));
      return act.restartDatabase({ host: primary, dryRun });
    });
  } else {
    rb.skip('restartPrimary', 'no setting needs a restart');
  }
  await rb.step('replicationSlot', () => act.ensureReplicationSlot({ host: primary, slot: repl.slot, dryRun }));

  if (found.alreadyStreaming) {
    for (const name of ['stopStandby', 'keepOldData', 'copyData', 'startStandby']) rb.skip(name, `${standby.name} already streams from ${primary.name} through slot ${repl.slot}`);
  } else {
    const undo: Undo[] = [];
    await rb.step('stopStandby', async (step) => {
      if (found.standbyRunning) undo.push(step.undo(`Start the database on ${standby.name} again`, () => act.startDatabase({ host: standby, dryRun })));
      return act.stopDatabase({ host: standby, dryRun });
    });
    let rewound = false;
    // A standby whose slot was invalidated is on the primary's timeline but missing WAL: pg_rewind cannot help, a copy can.
    if (input.rewind && found.standbyData === 'cluster' && !found.slotInvalidated) {
      const r = await rb.step('copyData', () => long.rewindDataDir(backup));
      rewound = r.rewound;
    }
    if (!rewound) {
      await rb.step('keepOldData', async (step) => {
        const moved = await act.setDataDirAside({ host: standby, stamp, dryRun });
        if (moved.asideDir) undo.push(step.undo(`Put the old data directory of ${standby.name} back`, () => act.restoreDataDir({ host: standby, asideDir: moved.asideDir!, stamp })));
        return moved;
      });
      await rb.step('copyData', () => long.baseBackup(backup));
    } else {
      rb.skip('keepOldData', 'pg_rewind kept the data directory in place');
    }
    await rb.step('startStandby', () => act.startDatabase({ host: standby, dryRun, unfence: true }));
    // From here the new standby is the state we want: a later failure must not undo it.
    undo.forEach((u) => u.release());
  }

  if (input.appDir) {
    const appDir = input.appDir;
    await rb.step('copyAppDir', () => act.copyAppDir({ primary, standby, path: appDir.path, includeSecrets: appDir.includeSecrets, exclude: appDir.exclude, dryRun }));
  } else {
    rb.skip('copyAppDir', 'no application directory given');
  }

  const verified = await rb.step('verify', () => long.verifyStreaming({
    primary, standby, canaryId: `setup:${workflowInfo().workflowId}`, withinSeconds: input.verifyWithinSeconds, dryRun,
  }));
  return {
    primary: primary.name, standby: standby.name, streaming: verified.streaming, canaryLagMs: verified.canaryLagMs,
    ...(found.slotInvalidated ? { slotWasInvalidated: `slot ${repl.slot} had been invalidated (${standby.name} fell more than max_slot_wal_keep_size behind): made again, with a fresh copy` } : {}),
  };
});
