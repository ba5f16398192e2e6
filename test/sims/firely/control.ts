/**
 * Starting and driving the simulators from a test or a lab: the server and the ingest tool as real
 * processes (their bin/ commands), licenses, and the server's fault knobs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setServerFaults, type ServerFaults } from './faults';
import { TOKENS } from './ingest/license';

export { TOKENS };
export const SERVER_BIN = path.join(__dirname, 'bin/firely-server');
export const FSI_BIN = path.join(__dirname, 'bin/fsi');

export interface SimProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the match when a line matching `pattern` has been printed; rejects if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** How it ended: an exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (or `signal`) and wait for the end. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function launch(bin: string, args: string[], env: Record<string, string | undefined> = {}, as?: { uid: number; gid: number }): SimProcess {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => { out += d.toString(); listeners.forEach((l) => l()); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  // 'close' (not 'exit'): all output has been read by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  let ended = false;
  void exited.then(() => { ended = true; listeners.forEach((l) => l()); });
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) { cleanup(); resolve(m); } else if (ended) { cleanup(); reject(new Error(`${path.basename(bin)} ended before printing ${pattern}:\n${out}`)); }
        };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`Timed out waiting for ${pattern} from ${path.basename(bin)}:\n${out}`)); }, timeoutMs);
        const cleanup = () => { clearTimeout(timer); listeners.delete(check); };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (!ended && child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface FirelySim {
  name: string;
  version: string;
  baseUrl: string;
  stateDir: string;
  proc: SimProcess;
  setFaults(f: ServerFaults & { lockReadinessForSeconds?: number }): void;
  stop(): Promise<void>;
}

export interface FirelySimOptions {
  name: string;
  /** e.g. 5.11.0 (old) or 6.1.0 (new). */
  version: string;
  /** With the database name: mongodb://127.0.0.1:PORT/vonkdata. */
  mongoUrl: string;
  /** Where faults.json lives. */
  stateDir: string;
  /** The administration database (vonkadmin); default: vonkadmin on the data database's server. */
  adminMongoUrl?: string;
  port?: number;
  listen?: string;
  /** Run it as this user (a lab host's user may then stop it). */
  as?: { uid: number; gid: number };
}

export async function startFirelyServer(o: FirelySimOptions): Promise<FirelySim> {
  mkdirSync(o.stateDir, { recursive: true });
  const proc = launch(SERVER_BIN, ['--name', o.name, '--version', o.version, '--mongo-url', o.mongoUrl, '--state-dir', o.stateDir,
    '--port', String(o.port ?? 0), '--listen', o.listen ?? '127.0.0.1', ...(o.adminMongoUrl ? ['--admin-mongo-url', o.adminMongoUrl] : [])], {}, o.as);
  const m = await proc.waitFor(/Now listening on: (http:\/\/\S+)/);
  return {
    name: o.name, version: o.version, baseUrl: m[1], stateDir: o.stateDir, proc,
    setFaults: (f) => setServerFaults(o.stateDir, f),
    stop: async () => { await proc.stop(); },
  };
}

/** Runs fsi to its end. */
export async function runFsi(args: string[], env: Record<string, string | undefined> = {}) {
  const proc = launch(FSI_BIN, args, env);
  const end = await proc.exited;
  return { ...end, output: proc.output() };
}

export function writeLicense(file: string, plugins: string[], opts: { licensee?: string; expires?: string } = {}): string {
  writeFileSync(file, JSON.stringify({ Licensee: opts.licensee ?? 'Runbooks test lab', Expires: opts.expires ?? '2099-12-31', Plugins: plugins }, null, 2));
  return file;
}
