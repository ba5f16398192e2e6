/**
 * Mirrors HSSYS across a Health Connect mirror pair (the procedure's "Mirror HSSYS", "Network Host
 * Name", "HS_Services" and "Mirror Monitor Launch Task" sections), safe to run again at any time.
 *
 * HSSYS is unavailable on the primary only from its dismount to its mount, which follows the copy at
 * once; the mount is registered as the undo before the dismount, so whatever fails, the primary
 * gets HSSYS back. The backup's HSSYS likewise.
 */
import type { IrisActivities } from '../../activities/iris';
import { runbookActivities } from '../kit/activities';
import { defineRunbook, type Undo } from '../kit/runbook';
import { checkSecretScopes } from './secret-scopes';
import { irisSecretUses, memberLocks, mirrorHssysInput } from '../../contracts/iris/schema';

const check = runbookActivities<IrisActivities>('check');
const act = runbookActivities<IrisActivities>('act', { startToCloseTimeout: '5 minutes' });
const long = runbookActivities<IrisActivities>('long');
/** Bringing HSSYS back: retried for as long as a day (a member unreachable for a while must not leave it dismounted). */
const undo = runbookActivities<IrisActivities>('undo');

const HSSYS = 'HSSYS';

export const mirrorHssys = defineRunbook({
  name: 'mirrorHssys',
  title: 'Mirror HSSYS across a Health Connect mirror pair',
  schema: mirrorHssysInput,
  steps: {
    preflight: 'Check both members and their roles',
    remountPrimary: 'Mount HSSYS on the primary (found dismounted)',
    hsServices: 'Enable HS_Services with its password on both members',
    networkHostName: 'Set the network host name to the load balancer',
    addToMirror: 'Add HSSYS to the mirror on the primary',
    dismountPrimary: 'Dismount HSSYS on the primary',
    copy: 'Copy IRIS.DAT to the backup (checksummed)',
    mountPrimary: 'Mount HSSYS on the primary again',
    dismountBackup: 'Dismount HSSYS on the backup',
    placeCopy: 'Move the copy into place on the backup',
    mountBackup: 'Mount HSSYS on the backup',
    activate: 'Activate HSSYS on the backup',
    catchUp: 'Catch HSSYS up on the backup',
    waitCaughtUp: 'Wait until HSSYS is active and caught up',
    mirrorTask: 'Schedule the mirror monitor task on the backup',
    verify: 'Verify: nothing missing on the backup',
  },
  lockKeys: (input) => memberLocks(input.primary, input.backup),
}, async (rb, input) => {
  const { primary, backup, mirror, dryRun } = input;
  const on = (node: typeof primary) => ({ node, mirror, database: HSSYS, dryRun });

  const plan = await rb.step('preflight', async () => {
    await checkSecretScopes(irisSecretUses([primary, backup], input.hsServices.password));
    return check.preflightMirrorHssys({ primary, backup, mirror });
  });
  if (!plan.primaryMounted) {
    // Left dismounted by an earlier attempt or by hand: serving it again comes first.
    await rb.step('remountPrimary', () => undo.mountDatabase(on(primary)));
  } else {
    rb.skip('remountPrimary', 'HSSYS is mounted on the primary');
  }
  await rb.step('hsServices', () => Promise.all([primary, backup].map((node) => act.ensureHsServices({ node, mirror, password: input.hsServices.password, dryRun }))));
  await rb.step('networkHostName', () => act.ensureNetworkHostName({ node: primary, mirror, name: input.networkHostName, dryRun }));
  await rb.step('addToMirror', () => act.addDatabaseToMirror(on(primary)));

  if (plan.backupNeeds === 'copy') {
    const primaryDown = await rb.step('dismountPrimary', async (step) => {
      const remount = step.undo(`Mount HSSYS on ${primary.name} again`, () => undo.mountDatabase(on(primary)));
      step.report(await act.dismountDatabase(on(primary)));
      return remount;
    });
    const copied = await rb.step('copy', () => long.copyDatabaseFile({ from: primary, to: backup, mirror, database: HSSYS, attempts: input.copyAttempts, dryRun }));
    await rb.step('mountPrimary', async () => {
      const mounted = await act.mountDatabase(on(primary));
      primaryDown.release();
      return mounted;
    });
    let backupDown: Undo | undefined;
    await rb.step('dismountBackup', async (step) => {
      // If the placed copy cannot be mounted, the backup's own IRIS.DAT (kept aside by placeCopy) comes back.
      backupDown = step.undo(`Mount HSSYS on ${backup.name} again (with its own IRIS.DAT if the copy is not mounted yet)`, () => undo.restoreDatabaseFile({ ...on(backup), placedSha256: copied.sha256 }));
      return act.dismountDatabase(on(backup));
    });
    await rb.step('placeCopy', () => act.placeDatabaseFile({ node: backup, mirror, database: HSSYS, sha256: copied.sha256, dryRun }));
    await rb.step('mountBackup', async () => {
      const mounted = await act.mountDatabase(on(backup));
      backupDown?.release();
      return mounted;
    });
  } else {
    for (const name of ['dismountPrimary', 'copy', 'mountPrimary', 'dismountBackup', 'placeCopy', 'mountBackup']) {
      rb.skip(name, `the backup already has the mirrored HSSYS${plan.backupNeeds === 'nothing' ? ', active and caught up' : ''}`);
    }
  }

  await rb.step('activate', () => act.activateDatabase(on(backup)));
  await rb.step('catchUp', () => act.catchUpDatabase(on(backup)));
  await rb.step('waitCaughtUp', () => long.waitUntilCaughtUp({ ...on(backup), withinSeconds: input.catchUpWithinSeconds }));
  await rb.step('mirrorTask', () => act.scheduleMirrorTask({ node: backup, mirror, namespace: HSSYS, dryRun }));
  if (dryRun) {
    rb.skip('verify', 'dry-run: nothing was changed to verify');
    return { mirrored: false };
  }
  await rb.step('verify', () => check.verifyHssysMirror({ primary, backup, mirror, networkHostName: input.networkHostName }));
  return { mirrored: true, primary: primary.name, backup: backup.name, copied: plan.backupNeeds === 'copy' };
});
