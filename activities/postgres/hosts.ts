/**
 * How the PostgreSQL activities reach a host: SSH (pinned key, one pooled connection per host),
 * and SQL through that connection. The layout's commands are in profile.ts.
 */
import path from 'node:path';
import { whileHeartbeating } from '../lib/heartbeat';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import type { SshSession, SshTarget } from '../lib/ssh';
import { sshTargetOf, withSsh } from '../lib/ssh-pool';
import { resolveSecret } from '../lib/secrets';
export { profileOf, writeFileCommand, type HostProfile } from './profile';
import type { PgHost } from '../../contracts/postgres/schema';

export const sshTarget = (host: PgHost): SshTarget => sshTargetOf(host);

/**
 * Runs `fn` with an SSH session to the host. While it runs the activity heartbeats, so a worker
 * that dies mid-command is noticed within the heartbeat timeout, not the whole start-to-close timeout.
 */
export async function onHost<T>(host: PgHost, fn: (s: SshSession) => Promise<T>): Promise<T> {
  return whileHeartbeating(() => withSsh(sshTarget(host), fn));
}

export interface SqlOptions {
  /** How long to wait for the server to accept the connection: a hung server must not hang the activity. */
  connectTimeoutMs?: number;
  /** How long one statement may take before the client gives up on it. */
  queryTimeoutMs?: number;
  /**
   * Keep the session open for the next activity on this host (inspection, promotion, verification):
   * a promotion then costs one statement, not a new connection. A session the server ends is dropped.
   */
  keep?: boolean;
}

interface KeptClient { db: PgClient; alive: boolean; idle?: NodeJS.Timeout }
/** Kept sessions, per pooled SSH connection (they live inside it) and per role and database. */
const keptClients = new WeakMap<SshSession, Map<string, KeptClient>>();
const keepIdleMs = 30_000;

/** SQL on the host's cluster, carried by the SSH connection (Unix socket with peer auth, or TCP on the host). */
export async function withSql<T>(host: PgHost, session: SshSession, fn: (db: PgClient) => Promise<T>, opts: SqlOptions = {}): Promise<T> {
  if (!opts.keep) return withNewSql(host, session, fn, opts);
  const pg = host.postgres;
  const key = [pg.user, pg.database, pg.socketDir ?? '', pg.port].join('\0');
  const clients = keptClients.get(session) ?? new Map<string, KeptClient>();
  keptClients.set(session, clients);
  let kept = clients.get(key);
  if (!kept?.alive) {
    const db = await connectSql(host, session, opts);
    const entry: KeptClient = { db, alive: true };
    const drop = () => { entry.alive = false; if (clients.get(key) === entry) clients.delete(key); };
    db.on('end', drop);
    db.on('error', drop);
    clients.set(key, entry);
    kept = entry;
  }
  const entry = kept;
  if (entry.idle) clearTimeout(entry.idle);
  try {
    return await fn(entry.db);
  } catch (err) {
    // After a failed statement the session's state is unknown: do not hand it on.
    entry.alive = false;
    clients.delete(key);
    await entry.db.end().catch(() => undefined);
    throw err;
  } finally {
    if (entry.alive) {
      entry.idle = setTimeout(() => { entry.alive = false; clients.delete(key); entry.db.end().catch(() => undefined); }, keepIdleMs);
      entry.idle.unref();
    }
  }
}

async function withNewSql<T>(host: PgHost, session: SshSession, fn: (db: PgClient) => Promise<T>, opts: SqlOptions): Promise<T> {
  const db = await connectSql(host, session, opts);
  try {
    return await fn(db);
  } finally {
    await Promise.race([db.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
  }
}

async function connectSql(host: PgHost, session: SshSession, opts: SqlOptions): Promise<PgClient> {
  const pg = host.postgres;
  const channel = pg.socketDir
    ? await session.openSocket(path.posix.join(pg.socketDir, `.s.PGSQL.${pg.port}`))
    : await session.openTcp('127.0.0.1', pg.port);
  // pg drives a net.Socket; the SSH channel is already connected.
  Object.assign(channel, { setNoDelay: () => channel, setKeepAlive: () => channel, connect: () => { process.nextTick(() => channel.emit('connect')); return channel; } });
  const db = new PgClient({
    user: pg.user, database: pg.database,
    password: pg.password ? resolveSecret(pg.password.secret, { host: host.address, purpose: 'db-password' }) : undefined,
    stream: () => channel as never, connectionTimeoutMillis: opts.connectTimeoutMs ?? 15_000, application_name: 'runbooks',
    // A kept session serves other activities: their statements set their own time limits.
    ...(opts.queryTimeoutMs && !opts.keep ? { query_timeout: opts.queryTimeoutMs } : {}),
  });
  // A server that goes away mid-session also emits 'error' on the client; the pending query reports it.
  db.on('error', () => undefined);
  db.on('end', () => channel.destroy());
  try {
    await db.connect();
  } catch (err) {
    channel.destroy();
    throw err;
  }
  return db;
}

/** A libpq connection string value, quoted: paths and names with spaces or quotes cannot break it. */
export const conninfoValue = (v: string | number): string => `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
export const conninfo = (fields: Record<string, string | number>): string =>
  Object.entries(fields).map(([k, v]) => `${k}=${conninfoValue(v)}`).join(' ');

/** Runs a file write built by writeFileCommand: its refusal (exit 4: a symlink, a foreign directory) is final, not retried. */
export async function writeChecked(s: SshSession, command: string, opts: { stdin: string; what: string }): Promise<void> {
  const r = await s.exec(command, { stdin: opts.stdin });
  if (r.code === 4) throw ApplicationFailure.nonRetryable(`${opts.what} on ${s.target.label}: ${r.stderr.trim()}. Nothing was written.`, 'UnsafePath');
  if (r.code !== 0) throw new Error(`${opts.what} failed on ${s.target.label} (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
}
