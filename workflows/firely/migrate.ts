/**
 * Moves a Firely Server to a new v6 instance on a new MongoDB database while clients keep working
 * through the reverse proxy (../shared/procedures/firely-zero-downtime-migration.rst, as the current
 * documentation orders it): ingest continuously, verify the new server, switch the proxy, drain,
 * decommission.
 *
 * Until the decommission gate, a rollback (a rejected gate, a cancelled run, a failure) switches
 * the proxy back to the old server and stops the ingest tool (their undos are registered before
 * each acts), and names the writes made on the new server since the switch: those would need
 * re-applying on the old one. After the gate there is no way back.
 */
import { patched, workflowInfo } from '@temporalio/workflow';
import type { FirelyActivities } from '../../activities/firely';
import type { KitActivities } from '../../activities/kit';
import { runbookActivities } from '../kit/activities';
import { durationSeconds } from '../../contracts/input';
import { defineRunbook, type Runbook } from '../kit/runbook';
import { ingestJobId, migrateFirelyServerInput, migrationLocks, migrationSecretUses, type MigrateFirelyServerInput } from '../../contracts/firely/schema';

const check = runbookActivities<FirelyActivities>('check', { startToCloseTimeout: '5 minutes', heartbeatTimeout: undefined });
const act = runbookActivities<FirelyActivities>('act', { heartbeatTimeout: '15s' });
/** Following the ingest: as long as the input allows; a worker that dies is noticed within the heartbeat timeout. */
const long = runbookActivities<FirelyActivities>('long', { startToCloseTimeout: '2 days', heartbeatTimeout: '15s', retry: { maximumAttempts: 20 } });
/** Counts that differ while the ingest catches the last writes up are retried a while. */
const verify = runbookActivities<FirelyActivities>('check', { startToCloseTimeout: '30 minutes', heartbeatTimeout: '15s', retry: { maximumAttempts: 10, maximumInterval: '10s' } });
/** The way back: retried for as long as a day (a proxy unreachable for a while must not leave clients on a half-migrated server). */
const undo = runbookActivities<FirelyActivities>('undo', { heartbeatTimeout: '15s' });
const secrets = runbookActivities<KitActivities>('check', { startToCloseTimeout: '1 minute', heartbeatTimeout: undefined });

/** Clock skew between the worker and the servers: writes this much before the switch count as after it (the lists compare versions, so none is counted twice). */
const SKEW_MS = 60_000;

export const migrateFirelyServer = defineRunbook({
  name: 'migrateFirelyServer',
  title: 'Migrate Firely Server to a new instance and database with zero downtime',
  schema: migrateFirelyServerInput,
  steps: {
    preflight: 'Check the license, the old server, both databases, the journal and the disk',
    shard: 'Provision the target schema and shard its entries collection',
    startIngest: 'Start the ingest tool (continuous, recovery journal, OnlyIfNewer)',
    catchUp: 'Wait until the ingest has caught up',
    verifyNewServer: 'Check the new server: ready, version, smoke test, counts, sample',
    conformance: 'The new server\'s own administration database, with the old server\'s custom conformance resources',
    approveCutover: 'Approval to cut clients over',
    cutover: 'Switch the proxy to the new server',
    drain: 'Drain: the old server idle, one more ingest cycle, late writes on the new server',
    approveDecommission: 'Approval to decommission (no rollback after it)',
    decommission: 'Stop the ingest tool and the old server',
  },
  lockKeys: (input) => migrationLocks(input),
}, async (rb, input) => {
  const { oldServer, newServer, dryRun } = input;
  // One job per run: a later run with the same workflow id starts its own, never adopting this one's.
  // Runs started before keep the job they have (named by the workflow id only).
  const { workflowId, firstExecutionRunId } = workflowInfo();
  const jobId = patched('firely-ingest-job-per-run') ? ingestJobId(workflowId, firstExecutionRunId) : ingestJobId(workflowId);
  // oldUrl: the ingest tool's start gives it the old server's custom SearchParameters (--extraParameters).
  const ingest = { host: input.migrationHost, ingest: input.ingest, source: oldServer.database, target: newServer.database, jobId, oldUrl: oldServer.baseUrl };
  const servers = { oldUrl: oldServer.baseUrl, newUrl: newServer.baseUrl, types: input.resourceTypes };
  const caughtUp = { caughtUp: { ...servers, tolerance: input.countTolerance } };
  const catchUpSeconds = durationSeconds(input.ingest.catchUpWithin);

  const found = await rb.step('preflight', async () => {
    await secrets.checkSecretScopes(migrationSecretUses(input));
    const old = await check.checkOldServer({ baseUrl: oldServer.baseUrl });
    const host = await check.preflightMigrationHost({ ...ingest, sharding: input.sharding.enabled });
    const dbs = await check.checkDatabases({ source: oldServer.database, target: newServer.database, resuming: host.resuming });
    return { oldVersion: old.version, resuming: host.resuming, sourceEntries: dbs.sourceResources };
  });

  if (input.sharding.enabled && !found.resuming) {
    await rb.step('shard', async () => [await act.provisionTarget({ ...ingest, dryRun }), await act.shardTarget({ target: newServer.database, dryRun })]);
  } else {
    rb.skip('shard', input.sharding.enabled ? 'this run is resuming: the target is provisioned' : 'sharding not asked');
  }

  const started = await rb.step('startIngest', async (step) => {
    step.undo('Stop the ingest tool', () => undo.stopIngest({ host: input.migrationHost, jobId, dryRun }));
    return act.startIngest({ ...ingest, dryRun });
  });

  await rb.step('catchUp', async (step) => {
    const s = await long.waitForIngest({ ...ingest, until: caughtUp, withinSeconds: catchUpSeconds, dryRun });
    step.progress(`${s.processed} items in ${s.batches} batches, ${s.errors} errors, ${s.restarts} restarts; ${s.atEndInARow} checks in a row found the new server caught up`);
    return s;
  });

  const report = await rb.step('verifyNewServer', () => verify.verifyNewServer({
    ...servers, expectedVersion: newServer.expectedVersion, tolerance: input.countTolerance, sampleSize: input.sampleSize, readyWithinSeconds: 1800, dryRun,
  }));

  // The administration database (vonkadmin) is not migrated by the ingest tool: the new server has its own,
  // and the old server's custom conformance resources are created on it through /administration.
  let conformance = '';
  if (patched('firely-admin-conformance')) {
    const admin = await rb.step('conformance', () => verify.syncConformance({
      oldUrl: oldServer.baseUrl, newUrl: newServer.baseUrl, types: input.admin.types, importMissing: input.admin.importMissing, withinSeconds: 1500, dryRun,
      indexedAtLoad: started.extraParameters ?? [],
    }));
    conformance = ` Administration API: ${admin.custom} custom resources on the old server, ${admin.imported.length} created on the new one` +
      `${admin.searchParameters.length ? `; custom SearchParameters (${admin.searchParameters.length}) need a $reindex on the new server` : ''}.`;
  } else {
    rb.skip('conformance', 'this run started before the step existed');
  }

  const decision = await rb.step('approveCutover', () => rb.approval('cutover', {
    summary: `Cut clients over from Firely Server ${found.oldVersion} (${oldServer.upstream}) to ${report.version} (${newServer.upstream}) ` +
      `on ${input.proxy.host.name}. Counts old -> new: ${report.counts.map((c) => `${c.type} ${c.old} -> ${c.new}`).join(', ')}; ` +
      `sample: ${report.sample.compared} compared, ${report.sample.differing.length} differing, ${report.sample.inFlight} in flight; smoke test ${report.smokeTest}. ` +
      'The ingest tool keeps copying until the decommission; a rollback is possible until then.' + conformance,
    ...input.cutoverApproval,
  }));
  if (decision.outcome !== 'approved') return rollBack(rb, `the cutover was ${describe(decision)}`);

  let switchedAt = 0;
  await rb.step('cutover', async (step) => {
    // The gate may have been open for hours: the ingest must still be running and caught up.
    await long.waitForIngest({ ...ingest, until: caughtUp, withinSeconds: catchUpSeconds, dryRun });
    switchedAt = Date.now();
    step.undo('Switch the proxy back to the old server and list the writes made on the new one', () => switchBack(rb, input, switchedAt));
    return act.switchProxyUpstream({ proxy: input.proxy, to: newServer.upstream, dryRun });
  });

  const drained = await rb.step('drain', async (step) => {
    const idle = await long.waitUntilOldServerIdle({ oldUrl: oldServer.baseUrl, types: input.resourceTypes, idleSeconds: input.oldServerIdleSeconds, withinSeconds: 3600, dryRun });
    // The old server is quiet: the new one must have its newest writes (clients write to the new one now, so the counts part ways).
    await long.waitForIngest({ ...ingest, until: { caughtUp: { ...caughtUp.caughtUp, afterSwitch: true } }, withinSeconds: catchUpSeconds, dryRun });
    const since = new Date(switchedAt - SKEW_MS).toISOString();
    const late = dryRun ? { checked: 0 } : await verify.checkLateWritesArrived({ ...servers, since });
    const counts = await check.countBoth(servers);
    step.progress(`last write on the old server ${idle.lastWrite || 'none'}; ${late.checked} writes since the switch checked on the new one`);
    return { counts, lateWrites: late.checked };
  });

  const last = await rb.step('approveDecommission', () => rb.approval('decommission', {
    summary: `Decommission the old Firely Server (${oldServer.upstream}): stop the ingest tool and the old server. AFTER THIS, ROLLBACK IS NO LONGER POSSIBLE. ` +
      `Clients are on ${newServer.upstream}; ${drained.lateWrites} late writes reached the new server; counts old -> new: ${drained.counts.map((c) => `${c.type} ${c.old} -> ${c.new}`).join(', ')}.`,
    ...input.decommissionApproval,
  }));
  if (last.outcome !== 'approved') return rollBack(rb, `the decommission was ${describe(last)}`);

  rb.releaseUndos();
  await rb.step('decommission', async () => [
    await act.stopIngest({ host: input.migrationHost, jobId, dryRun }),
    await act.stopOldServer({ oldUrl: oldServer.baseUrl, stop: oldServer.stop, dryRun }),
  ]);
  return { migrated: true, switchedAt: new Date(switchedAt).toISOString(), counts: drained.counts, lateWrites: drained.lateWrites };
});

type Decision = Exclude<Awaited<ReturnType<Runbook['approval']>>, { outcome: 'approved' }>;
const describe = (d: Decision) => d.outcome === 'rejected' ? `rejected by ${d.by}: ${d.reason}` : d.outcome === 'timedOut' ? 'not approved in time' : `withdrawn: ${d.reason}`;

async function rollBack(rb: Runbook, reason: string) {
  await rb.rollBack(reason);
  return { migrated: false, rolledBack: reason };
}

/** The undo of the cutover: clients back on the old server, then what the new server took meanwhile. */
async function switchBack(rb: Runbook, input: MigrateFirelyServerInput, switchedAt: number): Promise<void> {
  await undo.switchProxyUpstream({ proxy: input.proxy, to: input.oldServer.upstream, dryRun: input.dryRun });
  const since = new Date(switchedAt - SKEW_MS).toISOString();
  const written = await undo.writesOnNewServerSince({ oldUrl: input.oldServer.baseUrl, newUrl: input.newServer.baseUrl, types: input.resourceTypes, since });
  rb.state.step('cutover').actions.push(written.count
    ? `switched back to ${input.oldServer.upstream}; ${written.count} writes made on the new server since the switch need re-applying on the old one: ${written.resources.slice(0, 50).join(', ')}${written.count > 50 ? ', ...' : ''}`
    : `switched back to ${input.oldServer.upstream}; no writes were made on the new server since the switch`);
}
