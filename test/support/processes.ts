/** Real processes the tests drive: the worker (so it can be SIGKILLed), the CLI, the gateway. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';

export const repoRoot = path.resolve(__dirname, '../..');

export function uniqueQueue(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export async function testClient(): Promise<Client> {
  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS });
  return new Client({ connection, namespace: 'default' });
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Resolves when a line matching `pattern` appears in stdout/stderr. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Processes this test file started that still run, in the file's global: the test environment
 * (test/support/environment.js) kills them after the file's own hooks, when a test that timed out left one.
 */
const live: Set<ChildProcess> = ((globalThis as { __runbooksLiveProcesses?: Set<ChildProcess> }).__runbooksLiveProcesses ??= new Set());

export function startProcess(script: string, args: string[], env: Record<string, string | undefined>, nodeArgs: string[] = []): Proc {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', path.join(repoRoot, script), ...args], {
    cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => { out += d.toString(); listeners.forEach((l) => l()); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => { if (pattern.test(out)) { cleanup(); resolve(); } };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`Timed out waiting for ${pattern} in output of ${script}:\n${out}`)); }, timeoutMs);
        const gone = () => { cleanup(); reject(new Error(`${script} exited before ${pattern}:\n${out}`)); };
        const cleanup = () => { clearTimeout(timer); listeners.delete(check); child.off('exit', gone); };
        listeners.add(check);
        child.once('exit', gone);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A worker process with the real runbooks and the test subjects, on its own task queue. */
export async function startWorker(taskQueue: string, env: Record<string, string | undefined> = {}): Promise<Proc> {
  const worker = startProcess('test/support/worker-entry.ts', [], { RUNBOOKS_TASK_QUEUE: taskQueue, RUNBOOKS_SHUTDOWN_GRACE: '5s', ...env });
  await worker.waitFor(/Worker ready/);
  return worker;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs the runbook CLI as a user would (npm run runbook -- ...), with the test catalog. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'scripts/runbook.ts'), ...args], {
      cwd: repoRoot, env: { ...process.env, RUNBOOKS_CATALOG: path.join(repoRoot, 'test/catalog.ts'), ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function eventually<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) { last = err; }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`Timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
