/**
 * No secret on any command line (issue 24, finding 6): `ps` shows every process's argv to every
 * user of the machine, for as long as it runs. Two watchers:
 *
 * - traceExecs runs a command under strace, which the kernel stops at every execve of the command
 *   and of everything it starts: a psql that lives 30 ms is seen as surely as a daemon.
 * - watchCommandLines samples /proc during a test file. Sampling can miss a process that lives
 *   a few milliseconds; what it is for are the long-lived ones of a runbook's run (fsi, ssh,
 *   iris sessions, servers), which live far longer than its 50 ms period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Secret values worth looking for: long enough not to match by chance, not public keys. */
export function secretsIn(dirs: Array<string | undefined>, env: NodeJS.ProcessEnv = process.env): string[] {
  const values: string[] = [];
  for (const dir of dirs.filter((d): d is string => Boolean(d && existsSync(d)))) {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      if (name.endsWith('.pub') || !statSync(file).isFile()) continue;
      values.push(...readFileSync(file, 'utf8').split('\n'));
    }
  }
  for (const [k, v] of Object.entries(env)) if (k.startsWith('RUNBOOKS_SECRET_') && k !== 'RUNBOOKS_SECRET_SCOPES' && v) values.push(v);
  // SSH private keys are split into lines above: their base64 lines are secrets too, their armour is not.
  return [...new Set(values.map((v) => v.trim()).filter((v) => v.length >= 8 && !v.startsWith('-----')))];
}

/** The command lines among `lines` that show one of `secrets` (each shortened, the secret masked). */
export function showingSecrets(lines: Iterable<string>, secrets: string[]): string[] {
  const found: string[] = [];
  for (const line of lines) {
    const secret = secrets.find((s) => line.includes(s));
    if (secret) found.push(line.split(secret).join('<SECRET>').slice(0, 500));
  }
  return found;
}

export interface Traced { code: number; stdout: string; stderr: string; /** Every execve the command and its descendants made, as strace printed it (argv, not the environment). */ execs: string[] }

/**
 * Runs `file args` under `strace -f -e trace=execve`; once it has exited, strace is detached
 * (SIGINT) from whatever it left running (servers). Bounded by `timeoutMs`.
 */
export async function traceExecs(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 15 * 60_000): Promise<Traced> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trace-'));
  const [trace, done] = ['execve.trace', 'exit-code'].map((f) => path.join(dir, f));
  // The command's output goes to files: a daemon it leaves running must not hold our pipes open.
  // -I 1: SIGINT detaches strace (with -o FILE it otherwise blocks it). The tracees keep its seccomp
  // filter, so an execve of theirs would fail after that: the daemons the script leaves (PostgreSQL
  // forking its backends, the Temporal server) never exec.
  const strace = spawn('strace', ['-I', '1', '-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '--seccomp-bpf', '-s', '4096', '-o', trace, '--',
    'sh', '-c', '"$@" >"$0.out" 2>"$0.err" </dev/null; echo $? >"$0.tmp" && mv "$0.tmp" "$0"', done, file, ...args], { env, stdio: 'ignore' });
  const straceExit = new Promise<void>((resolve) => strace.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(done)) {
      if (strace.exitCode !== null) throw new Error(`strace exited (${strace.exitCode}) before ${file} did: is strace installed (scripts/test.sh)?`);
      if (Date.now() > deadline) throw new Error(`${file} ${args.join(' ')} did not exit within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    strace.kill('SIGINT');
    await Promise.race([straceExit, new Promise((r) => setTimeout(r, 10_000))]);
    return {
      code: Number(readFileSync(done, 'utf8').trim()),
      stdout: readFileSync(`${done}.out`, 'utf8'),
      stderr: readFileSync(`${done}.err`, 'utf8'),
      execs: readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes('execve(')),
    };
  } finally {
    if (strace.exitCode === null) strace.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A process that samples every command line in /proc every 50 ms; at the end of its stdin it prints them all (JSON). */
const sampler = `
const fs = require('fs'); const seen = new Set();
const sample = () => { for (const p of fs.readdirSync('/proc')) { if (!/^[0-9]+$/.test(p) || seen.size >= 200000) continue;
  try { seen.add(fs.readFileSync('/proc/' + p + '/cmdline', 'utf8').split(String.fromCharCode(0)).join(' ').trim()); } catch {} } };
const timer = setInterval(sample, 50); sample();
process.stdin.on('end', () => { clearInterval(timer); sample(); process.stdout.write(JSON.stringify([...seen]), () => process.exit(0)); });
process.stdin.resume();`;

/**
 * Samples every process's command line every 50 ms from beforeAll to afterAll of a test file, and
 * fails the file if one showed a secret `secrets()` names. The sampler is a process of its own (a
 * test blocking this one's event loop must not pause it). The secrets are read every second: labs
 * make theirs after the watch starts, and may remove them before it ends.
 */
export function watchCommandLines(secrets: () => string[]): void {
  const known = new Set<string>();
  const learn = () => { try { for (const s of secrets()) known.add(s); } catch { /* not there yet */ } };
  let child: ChildProcess | undefined;
  let learner: NodeJS.Timeout | undefined;
  let out = '';
  beforeAll(() => {
    child = spawn(process.execPath, ['-e', sampler], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdout!.on('data', (d) => { out += d; });
    learner = setInterval(learn, 1_000);
  });
  afterAll(async () => {
    clearInterval(learner);
    learn();
    const exited = new Promise((r) => child!.once('exit', r));
    child!.stdin!.end();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    child!.kill('SIGKILL');
    expect(known.size ? 'secrets known' : 'no secret to look for: the secrets dirs given are empty').toBe('secrets known');
    expect(showingSecrets(JSON.parse(out || '[]') as string[], [...known])).toEqual([]);
  });
}
