/**
 * How the PostgreSQL activities reach a host: SSH (pinned key), SQL through the SSH connection,
 * and the host profile that says how services are stopped, started and fenced on that layout.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { Client as PgClient } from 'pg';
import { cmd, shq } from '../lib/shell';
import { withSsh, type SshSession, type SshTarget } from '../lib/ssh';
import { resolveSecret } from '../lib/secrets';
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

/** SQL on the host's cluster, carried by the SSH connection (Unix socket with peer auth, or TCP on the host). */
export async function withSql<T>(host: PgHost, session: SshSession, fn: (db: PgClient) => Promise<T>): Promise<T> {
  const pg = host.postgres;
  const channel = pg.socketDir
    ? await session.openSocket(path.posix.join(pg.socketDir, `.s.PGSQL.${pg.port}`))
    : await session.openTcp('127.0.0.1', pg.port);
  // pg drives a net.Socket; the SSH channel is already connected.
  Object.assign(channel, { setNoDelay: () => channel, setKeepAlive: () => channel, connect: () => { process.nextTick(() => channel.emit('connect')); return channel; } });
  const db = new PgClient({
    user: pg.user, database: pg.database, password: pg.password ? resolveSecret(pg.password.secret) : undefined,
    stream: () => channel as never, connectionTimeoutMillis: 15_000, application_name: 'runbooks',
  });
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** The commands one installation layout needs. Every command is a ready shell string. */
export interface HostProfile {
  /** Exit 0 when the database server runs. */
  dbRunning: string;
  stopDb(mode: 'fast' | 'immediate'): string;
  startDb: string;
  stopApp?: string;
  startApp?: string;
  /** Stop everything and make sure nothing restarts it on its own. */
  fence: string;
  /** Undo `fence` for the database only (the application stays down on a standby). */
  unfenceDb: string;
  /** True when the host is fenced (restart disabled). */
  isFenced: string;
  /** A PostgreSQL client tool (pg_basebackup, pg_rewind, pg_controldata), run where it sees the data directory. */
  tool(name: string, args: string[], env?: Record<string, string>): string;
  /** The data directory: on the host (for moves), and as the database and its tools see it. */
  dataDir: string;
  dataDirForDb: string;
  /** The replication passfile: on the host, and as the database sees it (primary_conninfo). */
  passfile: string;
  passfileForDb: string;
  /** Prefix for host file commands (sudo for the docker layout). */
  asAdmin(command: string): string;
}

const FENCE_MARK = 'runbooks.fenced';

export function profileOf(host: PgHost): HostProfile {
  const p = host.profile;
  if (p.kind === 'pg_ctl') {
    const pgCtl = (...args: string[]) => cmd(path.posix.join(p.binDir, 'pg_ctl'), '-D', p.dataDir, ...args);
    const mark = path.posix.join(path.posix.dirname(p.dataDir), `${path.posix.basename(p.dataDir)}.${FENCE_MARK}`);
    const passfile = path.posix.join(path.posix.dirname(p.dataDir), '.runbooks-replication.pgpass');
    return {
      dbRunning: pgCtl('status'),
      stopDb: (mode) => pgCtl('stop', '-m', mode, '-w', '-t', '300'),
      startDb: `test ! -e ${shq(mark)} || { echo ${shq(`fenced by runbooks: ${mark}`)} >&2; exit 3; }; ${pgCtl('start', '-w', '-t', '300', '-l', p.logFile ?? `${p.dataDir}.log`)}`,
      stopApp: p.appStop, startApp: p.appStart,
      fence: [p.appStop, `{ ${pgCtl('status')} >/dev/null && ${pgCtl('stop', '-m', 'fast', '-w', '-t', '300')} || true; }`, cmd('touch', mark)].filter(Boolean).join(' && '),
      unfenceDb: cmd('rm', '-f', mark),
      isFenced: cmd('test', '-e', mark),
      tool: (name, args, env = {}) => [...Object.entries(env).map(([k, v]) => `${k}=${shq(v)}`), cmd(path.posix.join(p.binDir, name), ...args)].join(' '),
      dataDir: p.dataDir, dataDirForDb: p.dataDir, passfile, passfileForDb: passfile,
      asAdmin: (c) => c,
    };
  }
  const sudo = p.sudo ? 'sudo -n ' : '';
  const docker = (...args: string[]) => `${sudo}${cmd('docker', ...args)}`;
  const db = 'openelisglobal-database';
  const app = ['openelisglobal-webapp', 'external-fhir-api', 'openelisglobal-proxy', 'openelisglobal-frontend'];
  const all = [db, ...app, 'autoheal-oe'];
  const mounts = ['-v', `${p.dataDir}:${p.containerDataDir}`, '-v', `${p.backupsDir}:${p.containerBackupsDir}`];
  return {
    dbRunning: `test "$(${docker('inspect', '-f', '{{.State.Running}}', db)})" = true`,
    stopDb: (mode) => (mode === 'fast' ? docker('stop', '-t', '300', db) : docker('kill', db)),
    startDb: `test "$(${docker('inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', db)})" != no || { echo "fenced: restart policy of ${db} is no" >&2; exit 3; }; ${docker('start', db)}`,
    // autoheal first, or it restarts what we stop.
    stopApp: docker('stop', 'autoheal-oe', ...app),
    startApp: docker('start', ...app, 'autoheal-oe'),
    fence: `${docker('update', '--restart=no', ...all)} && ${docker('stop', '-t', '300', 'autoheal-oe', ...app, db)}`,
    unfenceDb: docker('update', '--restart=always', db),
    isFenced: `test "$(${docker('inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', db)})" = no`,
    tool: (name, args, env = {}) => docker('run', '--rm', '--network', 'host', '-u', 'postgres', ...mounts,
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), p.image, name, ...args),
    dataDir: p.dataDir, dataDirForDb: p.containerDataDir,
    passfile: path.posix.join(p.backupsDir, '.runbooks-replication.pgpass'),
    passfileForDb: path.posix.join(p.containerBackupsDir, '.runbooks-replication.pgpass'),
    asAdmin: (c) => (p.sudo ? `sudo -n sh -c ${shq(c)}` : c),
  };
}
