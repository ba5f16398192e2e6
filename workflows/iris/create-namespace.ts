/**
 * Creates a mirrored Foundation namespace (the procedure's "Creating a Namespace"): installed on
 * the primary with Mirror=1, its production set to start with the instance, and verified on the
 * backup, where its database must be mirrored, active and caught up. Safe to run again.
 */
import type { IrisActivities } from '../../activities/iris';
import { runbookActivities } from '../kit/activities';
import { defineRunbook } from '../kit/runbook';
import { checkSecretScopes } from './secret-scopes';
import { createMirroredNamespaceInput, irisSecretUses, memberLocks } from '../../contracts/iris/schema';

const check = runbookActivities<IrisActivities>('check');
const act = runbookActivities<IrisActivities>('act', { startToCloseTimeout: '45 minutes' });
const long = runbookActivities<IrisActivities>('long');

export const createMirroredNamespace = defineRunbook({
  name: 'createMirroredNamespace',
  title: 'Create a mirrored Foundation namespace on Health Connect',
  schema: createMirroredNamespaceInput,
  steps: {
    preflight: 'Check the mirror, HSSYS on the backup, HS_Services and the name',
    install: 'Install the Foundation namespace on the primary (Mirror=1)',
    autoStart: 'Set its production to start automatically',
    databaseOnBackup: 'Wait until its database is active and caught up on the backup',
    namespaceOnBackup: 'Wait until the namespace exists on the backup',
  },
  lockKeys: (input) => memberLocks(input.primary, input.backup),
}, async (rb, input) => {
  const { primary, backup, mirror, namespace, dryRun } = input;
  const plan = await rb.step('preflight', async () => {
    await checkSecretScopes(irisSecretUses([primary, backup]));
    return check.preflightMirroredNamespace({ primary, backup, mirror, namespace });
  });
  await rb.step('install', () => act.installFoundationNamespace({ node: primary, namespace, dryRun }));
  if (input.autoStartProduction) {
    await rb.step('autoStart', () => act.enableProductionAutoStart({ node: primary, namespace, dryRun }));
  } else {
    rb.skip('autoStart', 'autoStartProduction is off');
  }
  if (dryRun) {
    rb.skip('databaseOnBackup', 'dry-run: nothing was installed to wait for');
    rb.skip('namespaceOnBackup', 'dry-run: nothing was installed to wait for');
    return { namespace, created: false };
  }
  await rb.step('databaseOnBackup', () => long.waitUntilCaughtUp({ node: backup, mirror, database: namespace, dryRun, withinSeconds: input.catchUpWithinSeconds }));
  await rb.step('namespaceOnBackup', () => long.waitForNamespace({ node: backup, namespace, withinSeconds: input.catchUpWithinSeconds, dryRun }));
  return { namespace, created: !plan.exists };
});
