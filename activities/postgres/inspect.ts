/** What a PostgreSQL host looks like right now: reachable, running, primary or standby, where its WAL is. */
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { cmd } from '../lib/shell';
import type { Client as PgClient } from 'pg';
import type { SshSession } from '../lib/ssh';
import type { PgHost } from '../../contracts/postgres/schema';
import { onHost, profileOf, withSql } from './hosts';

export interface ServerState {
  host: string;
  reachable: boolean;
  unreachableReason?: string;
  running: boolean;
  /** The database process runs but does not answer SQL (hung, too many clients, starting up): see notAnsweringReason. */
  answering: boolean;
  notAnsweringReason?: string;
  /** Automatic restart disabled, and the data directory fenced (it would start read-only in recovery). */
  fenced: boolean;
  dataDir: 'missing' | 'empty' | 'cluster' | 'other';
  freeBytes?: number;
  inRecovery?: boolean;
  versionNum?: number;
  timeline?: number;
  /** Primary: pg_current_wal_lsn(); standby: the replay LSN. */
  lsn?: string;
  receiveLsn?: string;
  replayLsn?: string;
  replayPaused?: boolean;
  lastReplayAt?: string;
  walReceiver?: { status: string; slot: string | null; senderHost: string | null };
  databaseBytes?: number;
}

export async function dataDirState(s: SshSession, host: PgHost): Promise<Pick<ServerState, 'dataDir' | 'freeBytes'>> {
  const dir = profileOf(host).dataDir;
  const probe = profileOf(host).asAdmin(`if [ ! -e ${cmd(dir)} ]; then echo missing; elif [ -f ${cmd(path.posix.join(dir, 'PG_VERSION'))} ]; then echo cluster; ` +
    `elif [ -z "$(ls -A ${cmd(dir)})" ]; then echo empty; else echo other; fi; df -Pk ${cmd(path.posix.dirname(dir))} | awk 'NR==2 {print $4}'`);
  const [state, freeKb] = (await s.run(probe, { what: 'looking at the data directory' })).trim().split('\n');
  return { dataDir: state as ServerState['dataDir'], freeBytes: Number(freeKb) * 1024 };
}

/** How long inspection waits for SQL: a database that does not answer by then is reported as such, not waited for. */
const inspectSql = { connectTimeoutMs: 5_000, keep: true };
/** Each inspection statement gives up after this: a server that stops answering mid-inspection is reported, not waited for. */
const inspectQueryMs = 10_000;

export async function inspectOn(s: SshSession, host: PgHost): Promise<ServerState> {
  const profile = profileOf(host);
  const [running, restartOff, dataDirOff, dir] = await Promise.all([
    s.exec(profile.dbRunning), s.exec(profile.restartDisabled), s.exec(profile.asDbOwner(profile.dataDirFenced)), dataDirState(s, host),
  ]);
  const state: ServerState = {
    host: host.name, reachable: true, running: running.code === 0, answering: false,
    fenced: restartOff.code === 0 && dataDirOff.code === 0, ...dir,
  };
  if (!state.running) return state;
  try {
    await withSql(host, s, (db) => readServer(db, state), inspectSql);
    state.answering = true;
  } catch (err) {
    state.notAnsweringReason = `its database runs but does not answer SQL: ${err instanceof Error ? err.message : String(err)}`;
  }
  return state;
}

async function readServer(db: PgClient, state: ServerState): Promise<void> {
  const q = (text: string) => db.query({ text, query_timeout: inspectQueryMs } as never) as unknown as Promise<{ rows: Record<string, any>[] }>;
  const r = (await q(`SELECT pg_is_in_recovery() AS rec, current_setting('server_version_num')::int AS ver,
    (SELECT timeline_id FROM pg_control_checkpoint()) AS tli,
    (SELECT sum(pg_database_size(oid))::bigint FROM pg_database) AS size`)).rows[0];
  Object.assign(state, { inRecovery: r.rec, versionNum: r.ver, timeline: r.tli, databaseBytes: Number(r.size) });
  if (!r.rec) {
    state.lsn = (await q('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn;
    // The timeline in pg_control_checkpoint lags until the first checkpoint after promotion.
    state.timeline = Number.parseInt((await q('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0].f.slice(0, 8), 16);
    return;
  }
  const st = (await q(`SELECT pg_last_wal_receive_lsn()::text AS recv, pg_last_wal_replay_lsn()::text AS replay,
    pg_get_wal_replay_pause_state() <> 'not paused' AS paused, pg_last_xact_replay_timestamp() AS at`)).rows[0];
  const wr = (await q('SELECT status, slot_name, sender_host FROM pg_stat_wal_receiver')).rows[0];
  Object.assign(state, {
    receiveLsn: st.recv ?? undefined, replayLsn: st.replay ?? undefined, lsn: st.replay ?? undefined, replayPaused: st.paused,
    lastReplayAt: st.at ? new Date(st.at).toISOString() : undefined,
    walReceiver: wr ? { status: wr.status, slot: wr.slot_name, senderHost: wr.sender_host } : undefined,
  });
}

/** Inspects a host; one that cannot be reached over SSH is reported as such (a wrong host key still fails). */
export async function inspectServer(host: PgHost): Promise<ServerState> {
  try {
    return await onHost(host, (s) => inspectOn(s, host));
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    if (/Cannot reach/.test(reason)) return { host: host.name, reachable: false, unreachableReason: reason, running: false, answering: false, fenced: false, dataDir: 'other' };
    throw err;
  }
}

/** "0/3000148" -> bytes. */
export function lsnToBigInt(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}
