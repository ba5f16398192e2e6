/**
 * A throwaway PostgreSQL 15 cluster on a loopback port, run as the `postgres` user (it refuses
 * root), with wal_level=logical so change capture reads real WAL. For the DHIS2 tests and bench.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client as PgClient } from 'pg';
import { freePort } from '../support/global-setup';
import { PGBIN } from './hosts';

export interface LocalPostgres {
  host: string;
  port: number;
  /** The superuser's password (user `postgres`, scram over TCP). */
  password: string;
  dir: string;
  /** Runs SQL as the superuser in `database`. */
  sql<T = Record<string, unknown>>(text: string, params?: unknown[], database?: string): Promise<T[]>;
  createDatabase(name: string): Promise<void>;
  /** pg_ctl restart with the given settings added to postgresql.conf (e.g. wal_level). */
  restart(settings?: Record<string, string>): void;
  stop(): void;
}

const asPostgres = (args: string[]) => execFileSync('/usr/sbin/runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export async function startLocalPostgres(opts: { walLevel?: 'logical' | 'replica'; maxConnections?: number } = {}): Promise<LocalPostgres> {
  if (process.getuid?.() !== 0) throw new Error('The local PostgreSQL needs root to run initdb as the postgres user: run the suite through ./scripts/test.sh');
  const dir = mkdtempSync('/tmp/rbpg-');
  chmodSync(dir, 0o755);
  execFileSync('chown', ['postgres:postgres', dir]);
  const data = path.join(dir, 'data');
  const password = `pg-${Math.random().toString(36).slice(2)}`;
  const pwfile = path.join(dir, 'pwfile');
  writeFileSync(pwfile, password);
  execFileSync('chown', ['postgres:postgres', pwfile]);
  asPostgres([`${PGBIN}/initdb`, '-D', data, '-U', 'postgres', '--auth-local=peer', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`]);
  rmSync(pwfile);
  const port = await freePort();
  const conf = path.join(data, 'postgresql.conf');
  const baseConf = readFileSync(conf, 'utf8');
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'", port: String(port), unix_socket_directories: `'${dir}'`,
    wal_level: opts.walLevel ?? 'logical', max_wal_senders: '10', max_replication_slots: '10',
    max_connections: String(opts.maxConnections ?? 200), fsync: 'off', synchronous_commit: 'on',
  };
  const writeConf = (extra: Record<string, string>) => {
    Object.assign(settings, extra);
    writeFileSync(conf, `${baseConf}\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
  };
  writeConf({});
  writeFileSync(path.join(data, 'pg_hba.conf'), [
    'local all postgres peer',
    'host all all 127.0.0.1/32 scram-sha-256',
    'host replication all 127.0.0.1/32 scram-sha-256',
  ].join('\n') + '\n');
  const pgCtl = (...args: string[]) => asPostgres([`${PGBIN}/pg_ctl`, '-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '60', ...args]);
  pgCtl('start');

  const sql = async <T>(text: string, params?: unknown[], database = 'postgres'): Promise<T[]> => {
    const client = new PgClient({ host: '127.0.0.1', port, user: 'postgres', password, database });
    client.on('error', () => undefined);
    await client.connect();
    try { return (await client.query(text, params)).rows as T[]; } finally { await client.end(); }
  };
  return {
    host: '127.0.0.1', port, password, dir,
    sql,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      await sql(`CREATE DATABASE ${name}`);
    },
    restart(extra = {}) {
      writeConf(extra);
      pgCtl('restart', '-m', 'fast');
    },
    stop() {
      spawnSync('/usr/sbin/runuser', ['-u', 'postgres', '--', `${PGBIN}/pg_ctl`, '-D', data, 'stop', '-m', 'immediate'], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
