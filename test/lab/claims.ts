/**
 * Machine-wide claims for labs, safe between processes started at the same moment. A pid is no
 * such claim: two processes in two containers (pid namespaces) share pid numbers, and "a subnet
 * no interface has yet" is a check another process can pass at the same moment.
 *
 * A claim is an flock held by a small `flock` process whose stdin is a pipe from this one: when
 * this process ends, however it ends, the pipe closes, the holder exits and the claim is free.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';

const claimsDir = '/run/runbooks-lab';
const pause = new Int32Array(new SharedArrayBuffer(4));

/** The holder's process state from /proc ('Z' once it exited: flock gave up). */
const stateOf = (pid: number) => { try { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3); } catch { return 'gone'; } };

/**
 * Takes the flock on `name` (waiting up to `waitMs`; 0: only if free now). Returns its release,
 * or undefined if another holds it. Synchronous, as the lab's set-up is.
 */
export function claim(name: string, waitMs: number): (() => void) | undefined {
  return take(name, waitMs)?.release;
}

interface Held { release: () => void; holder: ChildProcess }

/** Whether the claim's holder still runs: a stray kill (a stale pid file naming a reused pid) can end it. */
const stillHeld = ({ holder }: Held) => holder.exitCode === null && holder.signalCode === null && !['Z', 'gone'].includes(stateOf(holder.pid!));

function take(name: string, waitMs: number): Held | undefined {
  mkdirSync(claimsDir, { recursive: true });
  const file = path.join(claimsDir, `${name}.lock`);
  const ready = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.held`;
  const wait = waitMs > 0 ? ['-w', String(Math.ceil(waitMs / 1000))] : ['-n'];
  // -o: only flock itself holds the lock; it exits (freeing it) when `read` sees our end of the pipe close.
  const holder = spawn('flock', ['-o', ...wait, file, 'sh', '-c', ': > "$0"; read _', ready], { stdio: ['pipe', 'ignore', 'ignore'] });
  holder.unref();
  (holder.stdin as unknown as Socket).unref();
  const deadline = Date.now() + waitMs + 5_000;
  for (;;) {
    if (existsSync(ready)) {
      rmSync(ready, { force: true });
      return { holder, release: () => { holder.stdin!.destroy(); holder.kill('SIGKILL'); } };
    }
    const state = stateOf(holder.pid!);
    if (state === 'Z' || state === 'gone' || Date.now() > deadline) {
      holder.kill('SIGKILL');
      if (waitMs > 0) throw new Error(`Could not take the lab lock ${file} within ${waitMs / 1000} s: another lab set-up holds it (see: fuser ${file})`);
      return undefined;
    }
    Atomics.wait(pause, 0, 0, 5);
  }
}

/** Whether some live process holds the claim `name` (probed by taking it for an instant). */
export function isClaimed(name: string): boolean {
  const release = claim(name, 0);
  release?.();
  return !release;
}

/** Runs `fn` holding the machine-wide lab lock: choosing a subnet, editing /etc/hosts. */
export function withLabLock<T>(fn: () => T): T {
  const release = claim('lock', 30_000)!;
  try { return fn(); } finally { release(); }
}

let owner: { k: string; held: Held } | undefined;

/**
 * This process's lab owner number, unique on the machine while the process lives: the first
 * `owner-<k>` claim free. Lab names carry it (not the pid), and a lab whose owner's claim is free
 * is a dead process's leftover. Should the claim's holder have been killed meanwhile (another
 * process may then take the number, or clean our labs as stale), a new number is taken: new labs
 * never share names with another process's.
 */
export function ownerNumber(): string {
  if (owner && !stillHeld(owner.held)) {
    process.stderr.write(`lab: the claim owner-${owner.k} was lost (its holder, pid ${owner.held.holder.pid}, was ended by something else on this machine); taking a new owner number\n`);
    owner = undefined;
  }
  for (let k = 0; !owner && k < 1000; k++) {
    const held = take(`owner-${k}`, 0);
    if (held) owner = { k: String(k), held };
  }
  if (!owner) throw new Error(`No free lab owner number in ${claimsDir} (1000 labs at once?): remove stale *.lock files there`);
  return owner.k;
}
