/**
 * How the PostgreSQL activities reach a host: SSH (pinned key, one pooled connection per host),
 * and SQL through that connection. The layout's commands are in profile.ts.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import type { SshSession, SshTarget } from '../lib/ssh';
import { withSsh } from '../lib/ssh-pool';
import { resolveSecret } from '../lib/secrets';
export { profileOf, writeFileCommand, type HostProfile } from './profile';
import type { PgHost } from '../../workflows/postgres/schema';

export function sshTarget(host: PgHost): SshTarget {
  return { label: `${host.name} (${host.address})`, host: host.address, port: host.ssh.port, user: host.ssh.user, hostKey: host.ssh.hostKey, privateKey: host.ssh.privateKey };
}

/**
 * Runs `fn` with an SSH session to the host. While it runs the activity heartbeats, so a worker
 * that dies mid-command is noticed within the heartbeat timeout, not the whole start-to-close timeout.
 */
export async function onHost<T>(host: PgHost, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const context = Context.current();
  const beat = setInterval(() => context.heartbeat(), 2_000);
  try {
    return await withSsh(sshTarget(host), fn);
  } finally {
    clearInterval(beat);
  }
}

export interface SqlOptions {
  /** How long to wait for the server to accept the connection: a hung server must not hang the activity. */
  connectTimeoutMs?: number;
  /** How long one statement may take before the client gives up on it. */
  queryTimeoutMs?: number;
}

/** SQL on the host's cluster, carried by the SSH connection (Unix socket with peer auth, or TCP on the host). */
export async function withSql<T>(host: PgHost, session: SshSession, fn: (db: PgClient) => Promise<T>, opts: SqlOptions = {}): Promise<T> {
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
    ...(opts.queryTimeoutMs ? { query_timeout: opts.queryTimeoutMs } : {}),
  });
  // A server that goes away mid-session also emits 'error' on the client; the pending query reports it.
  db.on('error', () => undefined);
  try {
    await db.connect();
  } catch (err) {
    channel.destroy();
    throw err;
  }
  try {
    return await fn(db);
  } finally {
    await Promise.race([db.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
    channel.destroy();
  }
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
