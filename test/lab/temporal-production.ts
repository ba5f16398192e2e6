/**
 * The production-shaped Temporal of scripts/temporal-postgres.sh for tests and the benchmark: the
 * real server on its own PostgreSQL with mutual TLS, in a state directory of its own. Faults are
 * injected the way they happen: the server SIGKILLed, PostgreSQL shut down (fast) and started again;
 * recovery is the operator's own step, running the script again.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { repoRoot } from '../support/processes';
import { traceExecs } from '../support/process-watch';

const script = path.join(repoRoot, 'scripts/temporal-postgres.sh');
const pgBin = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';

/** The variables the script prints: what a worker, the CLI or the gateway needs to connect. */
export type TemporalEnv = Record<'TEMPORAL_ADDRESS' | 'TEMPORAL_NAMESPACE' | 'TEMPORAL_TLS_CLIENT_CERT_PATH' | 'TEMPORAL_TLS_CLIENT_KEY_PATH' | 'TEMPORAL_TLS_SERVER_CA_CERT_PATH' | 'TEMPORAL_TLS_SERVER_NAME', string>;

export interface ProductionTemporal {
  env: TemporalEnv;
  /** Where the script keeps the cluster, the certificates, the config and the log. */
  stateDir: string;
  /** Every command line the first `start` and all it started exec'd (strace): for "no secret on a command line". */
  startExecs: string[];
  /** A client of the `runbooks` namespace, over mutual TLS. */
  client(): Promise<Client>;
  serverPid(): number;
  /** SIGKILL the server and wait until it is gone. */
  killServer(): Promise<void>;
  /** PostgreSQL's fast shutdown (clients disconnected, a clean checkpoint), waiting until it is down. */
  stopPostgres(): Promise<void>;
  startPostgres(): Promise<void>;
  /** Run the script again: it starts whatever is down and changes nothing else. Resolves with what it printed. */
  start(): Promise<TemporalEnv>;
  /** Stop the server and PostgreSQL, remove the state. */
  stop(): Promise<void>;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed (${err.code ?? err.signal}):\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Parses the script's `export NAME=value` lines (values quoted by bash's printf %q). */
export function parseEnv(text: string): TemporalEnv {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^export (TEMPORAL_[A-Z_]+)=(.*)$/gm)) env[m[1]] = m[2].replace(/\\(.)/g, '$1');
  for (const key of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'TEMPORAL_TLS_SERVER_NAME']) {
    if (!env[key]) throw new Error(`scripts/temporal-postgres.sh printed no ${key}:\n${text}`);
  }
  return env as TemporalEnv;
}

export async function connectWith(env: TemporalEnv): Promise<Client> {
  const config = loadClientConnectConfig({ disableFile: true, overrideEnvVars: env });
  const connection = await Connection.connect(config.connectionOptions);
  return new Client({ connection, namespace: config.namespace });
}

/** True while the process exists and is not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Our server: the pid the script recorded, still running the server of this state directory. */
function ourServer(pid: number, stateDir: string): boolean {
  try {
    return alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(stateDir);
  } catch {
    return false;
  }
}

async function until(what: string, probe: () => boolean, timeoutMs = 60_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !probe();) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startProductionTemporal(): Promise<ProductionTemporal> {
  if (process.getuid?.() !== 0) throw new Error('The production-shaped Temporal runs PostgreSQL as the postgres user: run the suite as root (./scripts/test.sh)');
  const root = mkdtempSync(path.join(os.tmpdir(), 'temporal-prod-'));
  chmodSync(root, 0o755); // PostgreSQL runs as `postgres` and must reach its data directory inside
  const stateDir = path.join(root, 'temporal-postgres');
  const scriptEnv = { ...process.env, RUNBOOKS_STATE_DIR: root };
  const pgData = path.join(stateDir, 'pg/data');
  const pgCtl = (...args: string[]) => run('/usr/sbin/runuser', ['-u', 'postgres', '--', `${pgBin}/pg_ctl`, '-D', pgData, '-w', '-t', '60', ...args]);
  const serverPid = () => Number(readFileSync(path.join(stateDir, 'temporal.pid'), 'utf8').trim());
  const clients: Client[] = [];

  /** Stop the server and PostgreSQL with the script; then whatever it could not stop, by the pids recorded (never by name). */
  const stopAll = async () => {
    await Promise.all(clients.map((c) => c.connection.close().catch(() => undefined)));
    try {
      await run(script, ['stop'], scriptEnv);
    } finally {
      const pid = existsSync(path.join(stateDir, 'temporal.pid')) ? serverPid() : undefined;
      if (pid && ourServer(pid, stateDir)) process.kill(pid, 'SIGKILL');
      if (existsSync(path.join(pgData, 'postmaster.pid'))) {
        try { execFileSync('/usr/sbin/runuser', ['-u', 'postgres', '--', `${pgBin}/pg_ctl`, '-D', pgData, 'stop', '-m', 'immediate'], { stdio: 'ignore' }); } catch { /* not running */ }
      }
      rmSync(root, { recursive: true, force: true });
    }
  };

  let env: TemporalEnv;
  let startExecs: string[];
  try {
    const first = await traceExecs(script, ['start'], scriptEnv);
    if (first.code !== 0) throw new Error(`temporal-postgres.sh start failed (exit ${first.code}):\n${first.stderr}`);
    env = parseEnv(first.stdout);
    startExecs = first.execs;
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
  return {
    env,
    stateDir,
    startExecs,
    async client() {
      const client = await connectWith(env);
      clients.push(client);
      return client;
    },
    serverPid,
    async killServer() {
      const pid = serverPid();
      if (!ourServer(pid, stateDir)) throw new Error(`pid ${pid} is not the Temporal server of ${stateDir}`);
      process.kill(pid, 'SIGKILL');
      await until(`the Temporal server (pid ${pid}) to die`, () => !alive(pid));
    },
    async stopPostgres() {
      await pgCtl('stop', '-m', 'fast');
    },
    async startPostgres() {
      await pgCtl('start', '-l', path.join(stateDir, 'pg/postgresql.log'));
    },
    async start() {
      return parseEnv((await run(script, ['start'], scriptEnv)).stdout);
    },
    stop: stopAll,
  };
}
