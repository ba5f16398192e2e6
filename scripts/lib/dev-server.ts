/**
 * Starts a Temporal dev server (`temporal server start-dev`) with the runbooks' search attributes,
 * and waits until it answers. Used by start.sh (persistent SQLite file, UI) and by the test suite.
 * Without a CLI it falls back to the SDK's own download of the dev server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { runbookSearchAttributes } from '../../contracts/search-attributes';

export interface DevServerOptions {
  /** Path of the `temporal` CLI; when absent the SDK downloads a dev server (needs internet). */
  cliPath?: string;
  /** SQLite file for persistence; in memory when absent. */
  dbFile?: string;
  ip?: string;
  port: number;
  uiPort?: number;
  namespace?: string;
  /** Where the server's own log goes. */
  logFile?: string;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  via: 'cli' | 'sdk-download';
  stop(): Promise<void>;
}

export function findTemporalCli(repoRoot: string): string | undefined {
  const found = spawnSync(path.join(repoRoot, 'scripts/lib/temporal-cli.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const cli = found.stdout.trim();
  return found.status === 0 && cli ? cli : undefined;
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const ip = opts.ip ?? '127.0.0.1';
  const namespace = opts.namespace ?? 'default';
  const address = `${ip}:${opts.port}`;
  if (opts.dbFile) mkdirSync(path.dirname(opts.dbFile), { recursive: true });
  if (!opts.cliPath) return startDownloadedServer(opts, ip, namespace, address);

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(opts.port), '--namespace', namespace,
    '--log-format', 'json', '--log-level', 'warn',
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
    // Worker Versioning is on by default in server 1.29 (system.enableDeploymentVersions). A version
    // counts every task queue it ever polled (100 at most by default; the tests start workers of
    // one build on hundreds), and a version no longer current is found drained after 3 + 3 minutes
    // by default: here within seconds, so `npm run runbook -- versions` says so at once.
    '--dynamic-config-value', 'matching.maxTaskQueuesInDeploymentVersion=10000',
    '--dynamic-config-value', 'matching.wv.VersionDrainageStatusRefreshInterval="5s"',
    '--dynamic-config-value', 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"'];
  if (opts.dbFile) args.push('--db-filename', opts.dbFile);
  if (opts.uiPort) args.push('--ui-port', String(opts.uiPort), '--ui-ip', ip);
  else args.push('--headless');
  for (const key of runbookSearchAttributes) args.push('--search-attribute', `${key.name}=Keyword`);

  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  const child = spawn(opts.cliPath, args, { stdio: ['ignore', out, out], detached: true });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await Promise.race([
      waitForNamespace(address, namespace, 60_000),
      exited.then((code) => { throw new Error(`temporal server start-dev exited with code ${code} (log: ${opts.logFile ?? 'none'})`); }),
    ]);
  } catch (err) {
    await stopChild(child, exited);
    throw err;
  }
  return {
    address,
    uiUrl: opts.uiPort ? `http://${ip}:${opts.uiPort}` : undefined,
    via: 'cli',
    stop: () => stopChild(child, exited),
  };
}

async function startDownloadedServer(opts: DevServerOptions, ip: string, namespace: string, address: string): Promise<DevServer> {
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'cached-download' },
      ip, port: opts.port, namespace, dbFilename: opts.dbFile,
      ui: Boolean(opts.uiPort), uiPort: opts.uiPort,
      searchAttributes: runbookSearchAttributes,
    },
  });
  return { address, uiUrl: opts.uiPort ? `http://${ip}:${opts.uiPort}` : undefined, via: 'sdk-download', stop: () => env.teardown() };
}

/** The frontend accepts connections before the namespace exists; wait for both. */
async function waitForNamespace(address: string, namespace: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`Temporal at ${address} did not become ready within ${timeoutMs} ms: ${String(lastError)}`);
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const group = -(child.pid as number);
  try { process.kill(group, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(group, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
  await exited;
  clearTimeout(timer);
}
