/**
 * A real MongoDB-protocol server for the tests: FerretDB v1.24.0 on its SQLite backend, built once
 * by scripts/lib/ferretdb.sh into the cache outside the clone, listening on a free loopback port,
 * with its data, state and log in a directory of its own.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { freePort } from './global-setup';

const repoRoot = path.resolve(__dirname, '../..');

export interface FerretDb {
  port: number;
  /** mongodb://127.0.0.1:PORT/ (append a database name). */
  url: string;
  dir: string;
  pid: number;
  /** The connection string of one database: mongodb://127.0.0.1:PORT/NAME. */
  uri(database: string): string;
  log(): string;
  /** SIGTERM, then wait until it has exited (SIGKILL after 10 s). Removes its directory unless kept. */
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

/** The FerretDB binary: builds it on the first call on a machine (about a minute; give the caller's timeout room). */
export function ferretdbBinary(): string {
  const out = execFileSync(path.join(repoRoot, 'scripts/lib/ferretdb.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').pop()!;
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => {
  if (child.exitCode !== null || child.signalCode !== null) resolve();
  else child.once('exit', () => resolve());
});

/** Resolves once a client can connect and ping; rejects if the process exits first or after `timeoutMs`. */
async function waitUntilAccepting(url: string, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`FerretDB exited (${child.exitCode ?? child.signalCode}) before accepting connections:\n${readFileSync(logFile, 'utf8')}`);
    const client = new MongoClient(url, { serverSelectionTimeoutMS: 300, connectTimeoutMS: 300 });
    try {
      await client.db('admin').command({ ping: 1 });
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`FerretDB did not accept connections at ${url} within ${timeoutMs} ms: ${(e as Error).message}\n${readFileSync(logFile, 'utf8')}`);
    } finally {
      await client.close().catch(() => undefined);
    }
  }
}

export async function startFerretDb(opts: { binary?: string; dir?: string; timeoutMs?: number; /** Default 127.0.0.1 (a lab bridge address lets its hosts reach it). */ listen?: string } = {}): Promise<FerretDb> {
  const binary = opts.binary ?? ferretdbBinary();
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'ferretdb-'));
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(dir, 'ferretdb.log');
  const port = await freePort();
  const logFd = openSync(logFile, 'a');
  const child = spawn(binary, [
    '--handler=sqlite', `--sqlite-url=file:${dataDir}/`, `--listen-addr=${opts.listen ?? '127.0.0.1'}:${port}`,
    `--state-dir=${dir}`, '--telemetry=disable', '--debug-addr=-', '--log-level=warn',
  ], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const url = `mongodb://${opts.listen ?? '127.0.0.1'}:${port}/`;
  const stop = async (o: { keepDir?: boolean } = {}) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited(child);
      clearTimeout(timer);
    }
    if (!o.keepDir && !opts.dir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilAccepting(url, child, logFile, opts.timeoutMs ?? 15_000);
  } catch (e) {
    await stop({ keepDir: true });
    throw e;
  }
  return { port, url, dir, pid: child.pid!, uri: (db) => `${url}${db}`, log: () => readFileSync(logFile, 'utf8'), stop };
}
