/** Child processes of start.ts: their output is prefixed and passed through; they stop on SIGTERM. */
import { spawn } from 'node:child_process';

export interface Proc {
  exited: Promise<number | null>;
  ready(pattern: RegExp, timeoutMs: number): Promise<void>;
  stop(graceMs: number): Promise<void>;
}

export function startProcess(name: string, script: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let seen = '';
  const waiters: Array<() => void> = [];
  const relay = (stream: NodeJS.WritableStream) => (data: Buffer) => {
    const text = data.toString();
    seen = (seen + text).slice(-65_536);
    for (const line of text.split('\n').filter(Boolean)) stream.write(`[${name}] ${line}\n`);
    waiters.forEach((w) => w());
  };
  child.stdout.on('data', relay(process.stdout));
  child.stderr.on('data', relay(process.stderr));
  return {
    exited,
    ready: (pattern, timeoutMs) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready after ${timeoutMs} ms`)), timeoutMs);
      const check = () => { if (pattern.test(seen)) { clearTimeout(timer); resolve(); } };
      waiters.push(check);
      exited.then((code) => { clearTimeout(timer); reject(new Error(`${name} exited (code ${code}) before it was ready`)); });
      check();
    }),
    async stop(graceMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
