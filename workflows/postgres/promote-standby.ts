/**
 * Promotes a standby without ever leaving two primaries: the old primary is fenced (or a human
 * confirms it cannot come back) before the standby is promoted. Safe to run again.
 */
import { ApplicationFailure, executeChild, patched, workflowInfo } from '@temporalio/workflow';
import type { KitActivities } from '../../activities/kit';
import type { PostgresActivities } from '../../activities/postgres';
import { runbookActivities } from '../kit/activities';
import { approvalFailure } from '../kit/approval';
import { defineRunbook, type Runbook } from '../kit/runbook';
import { promoteStandbyInput, secretUses, serverLocks, type PromoteStandbyInput } from '../../contracts/postgres/schema';
import { refuse } from '../../contracts/refuse';
import { setupPostgresStandby } from './setup-standby';

const kit = runbookActivities<KitActivities>('check');
const check = runbookActivities<PostgresActivities>('check');
const act = runbookActivities<PostgresActivities>('act');
const long = runbookActivities<PostgresActivities>('long', { startToCloseTimeout: '2 hours' });

/** Fences the old primary, or, when it cannot be reached, asks a human to confirm it is gone. */
async function fenceOldPrimary(rb: Runbook, input: PromoteStandbyInput, reachable: boolean, why?: string) {
  const { oldPrimary, dryRun } = input;
  if (reachable) return act.fenceHost({ host: oldPrimary, dryRun, stopSeconds: input.fenceStopSeconds });
  const decision = await rb.approval('unfenced-old-primary', {
    summary: `The old primary ${oldPrimary.name} cannot be reached (${why ?? 'no answer'}): fencing it CANNOT BE VERIFIED. ` +
      'If it comes back it may accept writes (split brain). Approve only if you know it is down for good (powered off or isolated).',
    ...input.fencingApproval, onTimeout: 'fail',
  });
  if (decision.outcome !== 'approved') throw approvalFailure(decision);
  return { changed: false, actions: [`${oldPrimary.name} unreachable; ${decision.by.join(', ')} confirmed it is down`] };
}

export const promotePostgresStandby = defineRunbook({
  name: 'promotePostgresStandby',
  title: 'Promote a PostgreSQL standby',
  schema: promoteStandbyInput,
  steps: {
    assess: 'Assess the old primary and the standby',
    restartOldPrimary: 'Try restarting the old primary',
    stopOldPrimary: 'Stop the old primary cleanly',
    waitForCatchup: 'Wait until the standby has all of its WAL',
    fence: 'Fence the old primary',
    checkStandby: 'Check the standby',
    promote: 'Promote the standby',
    verify: 'Verify the new primary takes writes',
    startApp: 'Start the application on the new primary',
    appHealth: "Wait for the application's own health answer",
    rejoin: 'Make the old primary a standby of the new one',
  },
  lockKeys: (input) => serverLocks(input.oldPrimary, input.standby),
}, async (rb, input) => {
  const { oldPrimary, standby, mode, dryRun } = input;
  const { old, sb } = await rb.step('assess', async () => {
    await kit.checkSecretScopes(secretUses([oldPrimary, standby], input.rejoin && { password: input.rejoin.replication.password, between: [standby, oldPrimary] }));
    const [o, s] = await Promise.all([check.inspectServer(oldPrimary), check.inspectServer(standby)]);
    if (!s.reachable) throw refuse(`Cannot reach the standby ${standby.name}: ${s.unreachableReason}.`);
    if (!s.running) throw refuse(`The database on the standby ${standby.name} is not running.`);
    if (!s.answering) throw refuse(`The standby ${standby.name}: ${s.notAnsweringReason}.`);
    const oldIsPrimary = o.reachable && o.answering && o.inRecovery === false;
    if (s.inRecovery === false && oldIsPrimary) {
      throw refuse(`Both ${oldPrimary.name} and ${standby.name} are primaries (split brain). Decide by hand which one keeps the data, fence the other, then run again.`);
    }
    if (s.inRecovery && o.answering && o.inRecovery) throw refuse(`${oldPrimary.name} and ${standby.name} are both standbys: there is no primary to replace.`);
    if (mode === 'switchover' && s.inRecovery && !oldIsPrimary) {
      const why = !o.reachable ? o.unreachableReason : o.running ? o.notAnsweringReason : 'its database is down';
      throw refuse(`Switchover needs the old primary ${oldPrimary.name} running as primary (${why}). Use failover mode.`);
    }
    return { old: o, sb: s };
  });
  const alreadyPromoted = sb.inRecovery === false;
  const oldIsPrimary = old.reachable && old.answering && old.inRecovery === false;
  // Up but not answering SQL (hung, too many clients, starting up): exactly what failover is for; it is fenced.
  const oldHung = old.reachable && old.running && !old.answering;
  // A run after a finished promotion and rejoin: the old primary already follows the new one. Change nothing.
  const oldFollowsNew = alreadyPromoted && old.answering && old.inRecovery === true;
  const rejoinedAlready = oldFollowsNew && old.walReceiver?.senderHost === standby.address;

  if (alreadyPromoted) {
    // A run after a successful one, or after a crash right after pg_promote: finish, do not promote again.
    for (const name of ['restartOldPrimary', 'stopOldPrimary', 'waitForCatchup']) rb.skip(name, `${standby.name} is already the primary`);
  } else if (mode === 'failover') {
    rb.skip('stopOldPrimary', 'failover: the old primary is not stopped cleanly');
    rb.skip('waitForCatchup', 'failover: the old primary cannot send more WAL');
    if (input.tryRestartFirst && old.reachable && !oldIsPrimary) {
      const back = await rb.step('restartOldPrimary', () => act.restartOldPrimary({ host: oldPrimary, dryRun }));
      if (back.running && back.inRecovery === false && !dryRun) {
        rb.skip('fence', `${oldPrimary.name} came back healthy after a restart`);
        return { mode, promoted: false, newPrimary: oldPrimary.name, note: `${oldPrimary.name} came back healthy after a restart; nothing was promoted` };
      }
    } else {
      rb.skip('restartOldPrimary', input.tryRestartFirst ? `${oldPrimary.name} cannot be restarted (${old.reachable ? 'it runs as primary' : 'unreachable'})` : 'not asked for');
    }
    if (oldIsPrimary) {
      // The old primary is alive and taking writes: failing over needs it fenced, and a human to say so.
      const decision = await rb.approval('fence-running-primary', {
        summary: `The old primary ${oldPrimary.name} is UP and accepting writes. Approve to fence it (stop, disable restart) and fail over anyway; ` +
          `writes it took after ${standby.name} last received WAL (${sb.receiveLsn ?? 'unknown'}) will be lost. Otherwise reject and use switchover.`,
        ...input.fencingApproval, onTimeout: 'fail',
      });
      if (decision.outcome !== 'approved') throw ApplicationFailure.nonRetryable(`Failover refused: ${oldPrimary.name} is still up and primary, and fencing it was not approved (${decision.outcome}). Nothing was changed.`, 'FailoverRefused');
    }
  } else {
    rb.skip('restartOldPrimary', 'switchover');
    const stopped = await rb.step('stopOldPrimary', async (step) => {
      step.undo(`Start ${oldPrimary.name} again as the primary`, () => act.unfenceAndStart({ host: oldPrimary }));
      return act.stopPrimaryCleanly({ host: oldPrimary, dryRun });
    });
    if (stopped.finalLsn) {
      const finalLsn = stopped.finalLsn;
      await rb.step('waitForCatchup', () => long.waitForCatchup({ standby, lsn: finalLsn, withinSeconds: input.catchupWithinSeconds }));
    } else {
      rb.skip('waitForCatchup', 'dry-run: the old primary was not stopped');
    }
  }

  if (oldFollowsNew) {
    rb.skip('fence', `${oldPrimary.name} is already a standby${rejoinedAlready ? ` of ${standby.name}` : ''}: it cannot take writes`);
  } else {
    await rb.step('fence', async (step) => {
      // Fencing a live (or hung) primary takes the service down: if the promotion does not happen, bring it back.
      if ((oldIsPrimary || oldHung) && mode === 'failover' && !alreadyPromoted) {
        step.undo(`Lift the fence and start ${oldPrimary.name} again as the primary`, () => act.unfenceAndStart({ host: oldPrimary }));
      }
      if (oldHung) step.record(`${oldPrimary.name} ${old.notAnsweringReason}`);
      return fenceOldPrimary(rb, input, old.reachable, old.unreachableReason);
    });
  }

  let timelineBefore = old.timeline ?? 0;
  if (alreadyPromoted) {
    rb.skip('checkStandby', `${standby.name} is already the primary`);
    rb.skip('promote', `${standby.name} is already the primary`);
  } else {
    const check = await rb.step('checkStandby', () => long.checkStandby({ standby, maxLagBytes: input.maxLagBytes, withinSeconds: input.catchupWithinSeconds }));
    timelineBefore = check.timeline;
    await rb.step('promote', async () => {
      const lossWindow = mode === 'switchover' ? 'none (the standby has every WAL record of the old primary)'
        : check.lastReplayAt ? `up to ${Math.round((Date.now() - Date.parse(check.lastReplayAt)) / 1000)}s of transactions since ${check.lastReplayAt}` : 'unknown (no transaction replayed yet)';
      if (input.promotionApproval.required ?? mode === 'failover') {
        await rb.requireApproval('promote', {
          summary: `Promote ${standby.name} to primary (${mode}). Last replayed transaction: ${check.lastReplayAt ?? 'none'}; ` +
            `replayed up to ${check.replayLsn}, ${check.lagBytes} bytes received but not replayed; estimated data loss: ${lossWindow}.`,
          ...input.promotionApproval,
        });
      }
      // From here on, starting the old primary again would make two primaries: its undo must not run.
      rb.releaseUndos();
      return act.promoteStandby({ standby, dryRun });
    });
  }

  const verified = rejoinedAlready
    ? (rb.skip('verify', `${standby.name} was verified when it was promoted; ${oldPrimary.name} already streams from it`), { timeline: sb.timeline })
    : await rb.step('verify', () => act.verifyWritable({ host: standby, canaryId: `promote:${workflowInfo().workflowId}`, timelineBefore, dryRun }));
  await rb.step('startApp', () => act.startApplication({ host: standby, dryRun }));
  // A promoted database under a webapp that cannot use it is no success (e.g. secrets/ not copied).
  if (patched('postgres-app-health-after-promotion')) {
    await rb.step('appHealth', () => long.checkApplicationHealth({ host: standby, dryRun }));
  } else {
    rb.skip('appHealth', 'the run started before the health check existed');
  }

  let rejoined = false;
  if (rejoinedAlready) {
    rb.skip('rejoin', `${oldPrimary.name} already streams from ${standby.name}`);
    rejoined = true;
  } else if (input.rejoin && old.reachable) {
    const rejoin = input.rejoin;
    await rb.step('rejoin', () => executeChild(setupPostgresStandby, {
      workflowId: `${workflowInfo().workflowId}-rejoin`,
      args: [{ primary: standby, standby: oldPrimary, replication: rejoin.replication, replaceStandbyData: true, rewind: true, dryRun, requestedBy: input.requestedBy }],
    }));
    rejoined = true;
  } else {
    rb.skip('rejoin', input.rejoin ? `${oldPrimary.name} cannot be reached` : 'not asked for');
  }
  return { mode, promoted: !alreadyPromoted, newPrimary: standby.name, timeline: verified.timeline, rejoined };
});
