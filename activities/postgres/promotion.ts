/**
 * Promotion moves: stop the old primary cleanly and read where its WAL ended, wait for the standby
 * to have it, fence the old primary, check and promote the standby, prove the new primary writable.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { PgHost } from '../../contracts/postgres/schema';
import type { SshSession } from '../lib/ssh';
import { onHost, profileOf, withSql } from './hosts';
import { inspectOn, lsnToBigInt, type ServerState } from './inspect';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Stops the database for good: a fast shutdown, then an immediate one, then SIGKILL of the
 * postmaster, until the process is gone. Returns what it had to do.
 */
export async function stopEscalating(s: SshSession, host: PgHost, fastSeconds: number): Promise<string[]> {
  const profile = profileOf(host);
  const running = async () => (await s.exec(profile.dbRunning)).code === 0;
  if (!(await running())) return [];
  await s.exec(profile.stopDb('fast', fastSeconds));
  if (!(await running())) return [`stopped the database on ${host.name} (fast shutdown)`];
  await s.exec(profile.stopDb('immediate', 15));
  if (!(await running())) return [`the fast shutdown of ${host.name} did not finish in ${fastSeconds}s; stopped it with an immediate shutdown`];
  await s.exec(profile.killDb);
  if (await running()) throw new Error(`The database on ${host.name} is still running after a fast shutdown, an immediate one and SIGKILL of its postmaster`);
  return [`neither a fast (${fastSeconds}s) nor an immediate shutdown stopped ${host.name}: killed its postmaster (SIGKILL); it will run crash recovery when started`];
}

/** Failover's first try (the documented one): restart the old primary, and say whether it came back healthy. */
export async function restartOldPrimary(req: { host: PgHost; dryRun: boolean; stopSeconds?: number }): Promise<ServerState & { restarted: boolean }> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    if (req.dryRun) return { ...(await inspectOn(s, req.host)), restarted: false };
    await stopEscalating(s, req.host, req.stopSeconds ?? 60);
    const started = await s.exec(profile.startDb);
    return { ...(await inspectOn(s, req.host)), restarted: started.code === 0 };
  });
}

/** Switchover: a clean shutdown writes a shutdown checkpoint and sends all WAL to connected standbys. */
export async function stopPrimaryCleanly(req: { host: PgHost; dryRun: boolean }): Promise<ChangeReport & { finalLsn?: string }> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    const running = (await s.exec(profile.dbRunning)).code === 0;
    if (req.dryRun) return { changed: false, actions: running ? [`would stop the database on ${req.host.name} cleanly and read its final WAL position`] : [] };
    const actions: string[] = [];
    if (running) {
      if (profile.stopApp) await s.run(profile.stopApp, { what: 'stopping the application' });
      await s.run(profile.stopDb('fast'), { what: 'stopping the old primary' });
      actions.push(`stopped the application and the database on ${req.host.name} cleanly`);
    }
    const control = await s.run(profile.tool('pg_controldata', [profile.dataDirForDb], { LC_ALL: 'C' }), { what: 'pg_controldata' });
    const state = /Database cluster state:\s+(.+)/.exec(control)?.[1]?.trim();
    const lsn = /Latest checkpoint location:\s+(\S+)/.exec(control)?.[1];
    if (state !== 'shut down' || !lsn) {
      throw ApplicationFailure.nonRetryable(`${req.host.name} did not shut down cleanly (cluster state "${state}"): its last WAL may not have reached the standby. Use failover mode.`, 'NotCleanShutdown');
    }
    return { changed: running, actions: [...actions, `final checkpoint of ${req.host.name} at ${lsn}`], finalLsn: lsn };
  });
}

/** Waits until the standby has received and replayed WAL up to `lsn` (nothing the old primary committed is lost). */
export async function waitForCatchup(req: { standby: PgHost; lsn: string; withinSeconds: number }): Promise<{ receiveLsn: string; replayLsn: string }> {
  const target = lsnToBigInt(req.lsn);
  const deadline = Date.now() + req.withinSeconds * 1000;
  return onHost(req.standby, (s) => withSql(req.standby, s, async (db) => {
    for (;;) {
      const r = (await db.query('SELECT pg_last_wal_receive_lsn()::text AS recv, pg_last_wal_replay_lsn()::text AS replay')).rows[0];
      if (r.recv && r.replay && lsnToBigInt(r.recv) >= target && lsnToBigInt(r.replay) >= target) return { receiveLsn: r.recv, replayLsn: r.replay };
      if (Date.now() > deadline) {
        throw ApplicationFailure.nonRetryable(`${req.standby.name} has received ${r.recv} and replayed ${r.replay}, short of the old primary's final ${req.lsn}, after ${req.withinSeconds}s. ` +
          'Promoting now would lose committed transactions: check replication, then run again.', 'CatchupTimeout');
      }
      Context.current().heartbeat();
      await sleep(200);
    }
  }));
}

/**
 * Fences a host: the application stopped, every automatic restart disabled, the database stopped
 * (escalating until its process is gone), and its data directory made to start read-only in
 * recovery whatever starts it. Verified before it returns.
 */
export async function fenceHost(req: { host: PgHost; dryRun: boolean; stopSeconds?: number }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    const state = await inspectOn(s, req.host);
    if (state.fenced && !state.running) return { changed: false, actions: [`${req.host.name} is already fenced`] };
    if (req.dryRun) {
      return { changed: false, actions: [`would fence ${req.host.name}: stop the application, disable every automatic restart, stop the database (fast, then immediate, then SIGKILL) and write standby.signal into its data directory`] };
    }
    const actions: string[] = [];
    if (profile.stopApp) { await s.run(profile.stopApp, { what: 'stopping the application' }); actions.push(`stopped the application on ${req.host.name}`); }
    await s.run(profile.disableRestart, { what: 'disabling automatic restarts' });
    actions.push(`disabled every automatic restart of ${req.host.name}`);
    actions.push(...await stopEscalating(s, req.host, req.stopSeconds ?? 60));
    await s.run(profile.asDbOwner(profile.fenceDataDir), { what: 'fencing the data directory' });
    actions.push(`wrote standby.signal (and no upstream) into ${profile.dataDir}: started by anything, it comes up read-only`);
    const after = await inspectOn(s, req.host);
    if (after.running || !after.fenced) throw new Error(`Fencing ${req.host.name} did not hold: the database ${after.running ? 'still runs' : 'could start writable or restart on its own'}`);
    return { changed: true, actions };
  });
}

/** Compensation for a fence when the promotion did not happen: the old primary serves again. */
export async function unfenceAndStart(req: { host: PgHost }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    await s.run(profile.enableRestart, { what: 'lifting the fence' });
    await s.run(profile.asDbOwner(profile.liftDataDirFence), { what: 'lifting the fence of the data directory' });
    if ((await s.exec(profile.dbRunning)).code !== 0) await s.run(profile.startDb, { what: 'starting the database' });
    if (profile.startApp) await s.run(profile.startApp, { what: 'starting the application' });
    return { changed: true, actions: [`lifted the fence of ${req.host.name} and started it again`] };
  });
}

export interface StandbyCheck {
  alreadyPromoted: boolean;
  timeline: number;
  receiveLsn?: string;
  replayLsn?: string;
  lagBytes: number;
  lastReplayAt?: string;
  walReceiver?: string;
}

/** In recovery, replay not paused, replay caught up with what was received, lag within bounds. */
export async function checkStandby(req: { standby: PgHost; maxLagBytes: number; withinSeconds: number }): Promise<StandbyCheck> {
  const deadline = Date.now() + req.withinSeconds * 1000;
  return onHost(req.standby, async (s) => {
    for (;;) {
      const st = await inspectOn(s, req.standby);
      if (!st.running) throw ApplicationFailure.nonRetryable(`The database on ${req.standby.name} is not running: nothing to promote`, 'StandbyDown');
      if (!st.inRecovery) return { alreadyPromoted: true, timeline: st.timeline ?? 0, lagBytes: 0 };
      if (st.replayPaused) throw ApplicationFailure.nonRetryable(`WAL replay on ${req.standby.name} is paused: find out why, resume it with pg_wal_replay_resume(), then run again`, 'ReplayPaused');
      const lag = st.receiveLsn && st.replayLsn ? Number(lsnToBigInt(st.receiveLsn) - lsnToBigInt(st.replayLsn)) : 0;
      const result = { alreadyPromoted: false, timeline: st.timeline ?? 0, receiveLsn: st.receiveLsn, replayLsn: st.replayLsn, lagBytes: lag, lastReplayAt: st.lastReplayAt, walReceiver: st.walReceiver?.status ?? 'none' };
      if (lag === 0) return result;
      if (Date.now() > deadline) {
        if (lag <= req.maxLagBytes) return result;
        throw ApplicationFailure.nonRetryable(`${req.standby.name} has ${lag} bytes of WAL not yet replayed (limit ${req.maxLagBytes}) after ${req.withinSeconds}s`, 'LagTooHigh');
      }
      Context.current().heartbeat();
      await sleep(250);
    }
  });
}

/** pg_promote(wait => true); a standby that is already a primary is not promoted again. */
export async function promoteStandby(req: { standby: PgHost; dryRun: boolean }): Promise<ChangeReport> {
  if (req.dryRun) return { changed: false, actions: [`would promote ${req.standby.name} with pg_promote(wait => true)`] };
  return onHost(req.standby, (s) => withSql(req.standby, s, async (db) => {
    // One statement on the session checkStandby kept: pg_promote refuses (55000) a server not in recovery.
    const promoted = await db.query('SELECT pg_promote(true, 120) AS ok').then((r) => r.rows[0].ok as boolean, (err) => {
      if ((err as { code?: string }).code === '55000') return 'already' as const;
      throw err;
    });
    if (promoted === 'already') return { changed: false, actions: [`${req.standby.name} is already a primary`] };
    if (!promoted) throw new Error(`pg_promote on ${req.standby.name} did not finish within 120s`);
    return { changed: true, actions: [`promoted ${req.standby.name}`] };
  }, { keep: true }));
}

/** Not in recovery, not read-only, a real write, a new timeline, then CHECKPOINT. */
export async function verifyWritable(req: { host: PgHost; canaryId: string; timelineBefore: number; dryRun: boolean }): Promise<ChangeReport & { timeline?: number }> {
  if (req.dryRun) return { changed: false, actions: [`would check that ${req.host.name} takes writes on a new timeline, then CHECKPOINT`] };
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const r = (await db.query(`SELECT pg_is_in_recovery() AS rec, current_setting('transaction_read_only') AS ro,
      ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tli`)).rows[0];
    if (r.rec || r.ro === 'on') throw new Error(`${req.host.name} is not writable yet (in recovery: ${r.rec}, read only: ${r.ro})`);
    if (r.tli <= req.timelineBefore) throw ApplicationFailure.nonRetryable(`${req.host.name} is on timeline ${r.tli}, not past ${req.timelineBefore}: it was not promoted by pg_promote`, 'NoNewTimeline');
    await db.query('CREATE TABLE IF NOT EXISTS runbooks_canary (id text PRIMARY KEY, written_at timestamptz NOT NULL)');
    await db.query(`INSERT INTO runbooks_canary (id, written_at) VALUES ($1, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`, [req.canaryId]);
    await db.query('CHECKPOINT');
    return { changed: true, actions: [`${req.host.name} takes writes on timeline ${r.tli}; checkpoint done`], timeline: r.tli };
  }, { keep: true }));
}

export async function startApplication(req: { host: PgHost; dryRun: boolean }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  if (!profile.startApp) return { changed: false, actions: [] };
  return onHost(req.host, async (s) => {
    if (profile.appRunning && (await s.exec(profile.appRunning)).code === 0) return { changed: false, actions: [] };
    if (req.dryRun) return { changed: false, actions: [`would start the application on ${req.host.name}`] };
    await s.run(profile.startApp!, { what: 'starting the application' });
    return { changed: true, actions: [`started the application on ${req.host.name}`] };
  });
}
