/**
 * A planned switchover of a Health Connect mirror pair: the backup becomes the primary, the old
 * primary comes back as the backup. Refused unless both members are healthy and the backup is
 * caught up on every mirrored database; a person approves the moment.
 *
 * Until the backup has taken over, a failure starts the old primary again (its undo, registered
 * before the stop); after that the run goes forward only.
 */
import { patched } from '@temporalio/workflow';
import type { IrisActivities } from '../../activities/iris';
import { runbookActivities } from '../kit/activities';
import { defineRunbook } from '../kit/runbook';
import { checkSecretScopes } from './secret-scopes';
import { irisSecretUses, memberLocks, statusUrlOf, switchIrisMirrorInput } from '../../contracts/iris/schema';

const check = runbookActivities<IrisActivities>('check');
const act = runbookActivities<IrisActivities>('act', { startToCloseTimeout: '15 minutes' });
const long = runbookActivities<IrisActivities>('long');

export const switchIrisMirror = defineRunbook({
  name: 'switchIrisMirror',
  title: 'Switch a Health Connect mirror over to its backup (planned)',
  schema: switchIrisMirrorInput,
  steps: {
    preflight: 'Check both members are healthy and the backup is caught up',
    approve: 'Approval to switch over',
    stopPrimary: 'Stop the primary gracefully',
    takeOver: 'Wait until the backup is the active primary',
    verifyNewPrimary: 'Check mirror_status.cxw and the application through the load balancer',
    startOldPrimary: 'Start the old primary again',
    rejoin: 'Wait until the old primary is the caught-up backup',
    verify: 'Check mirror_status.cxw on both members',
  },
  lockKeys: (input) => memberLocks(input.primary, input.backup),
}, async (rb, input) => {
  const { primary, backup, mirror, dryRun } = input;
  const found = await rb.step('preflight', async () => {
    await checkSecretScopes(irisSecretUses([primary, backup], undefined, input.loadBalancer));
    return check.preflightSwitchover({ primary, backup, mirror, loadBalancer: input.loadBalancer });
  });
  // Since the arbiter check: what the checks found about the mirror's protection is in the summary.
  const protection = patched('iris-switch-arbiter')
    ? `. Arbiter: ${found.arbiter ?? 'none'}${(found.risks ?? []).map((risk) => `. Risk: ${risk}`).join('')}` +
      (input.loadBalancer ? `. HAProxy backend ${input.loadBalancer.backend} on ${input.loadBalancer.host.name} sends clients to ${input.loadBalancer.primaryServer} only` : '') +
      '. Check by hand first (the runbook cannot read them): each Web Gateway in front of the application is mirror-aware for this mirror (Mirror_Aware=1 in its CSP.ini server section)'
    : '';
  await rb.step('approve', () => rb.requireApproval('switchover', {
    summary: `Switch mirror ${mirror} over: stop ${primary.name} (primary) so that ${backup.name} takes over; ` +
      `clients through the load balancer see a short interruption. Mirrored databases: ${found.databases.join(', ')}${protection}`,
    ...input.switchApproval,
  }));
  await rb.step('stopPrimary', async (step) => {
    // The gate may have been open for hours: look again before taking the primary down.
    if (!dryRun) await check.preflightSwitchover({ primary, backup, mirror, loadBalancer: input.loadBalancer });
    step.undo(`Start ${primary.name} again`, () => act.startInstance({ node: primary, dryRun }));
    return act.stopInstance({ node: primary, dryRun });
  });
  await rb.step('takeOver', () => long.waitForRole({ node: backup, mirror, role: 'Primary', databases: [], withinSeconds: input.takeOverWithinSeconds, dryRun }));
  // The backup is the primary now: starting the old one again is the way forward, not an undo.
  rb.releaseUndos();
  const within = input.takeOverWithinSeconds;
  // Whatever the clients see, the old primary comes back as the backup: a mirror without one is worse.
  const lb = input.loadBalancer;
  const haproxy = lb && { lb, to: lb.backupServer, notTo: lb.primaryServer };
  const seen = await rb.step('verifyNewPrimary', () => long.verifyFromOutside({ primary: backup, others: [], applicationUrl: input.applicationUrl, haproxy, withinSeconds: within, dryRun }))
    .then(() => undefined, (err: unknown) => err);
  await rb.step('startOldPrimary', () => act.startInstance({ node: primary, dryRun }));
  await rb.step('rejoin', () => long.waitForRole({ node: primary, mirror, role: 'Backup', databases: found.databases, withinSeconds: input.rejoinWithinSeconds, dryRun }));
  if (seen) throw seen;
  await rb.step('verify', () => long.verifyFromOutside({ primary: backup, others: [primary], applicationUrl: input.applicationUrl, haproxy, withinSeconds: within, dryRun }));
  return { primary: backup.name, backup: primary.name, statusUrl: statusUrlOf(backup) };
});
