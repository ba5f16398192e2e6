/**
 * Lab hosts for any runbook that reaches its servers over SSH: each host is a network namespace
 * with its own address on a bridge the worker reaches, its own mount namespace (the same paths as
 * on a real server, different files behind them) and its own sshd with a pinned host key. The
 * PostgreSQL lab (hosts.ts) and the IRIS lab (iris.ts) add their servers on top.
 *
 * Needs root (network namespaces, sshd). Namespaces, bridges and /etc/hosts lines carry the test
 * process's lab owner number (claims.ts: unique on the machine while the process lives, which a
 * pid is not), so a lab whose process died is cleaned up by the next one (cleanStaleLabs). Subnets
 * are chosen and claimed under one machine-wide lock: two labs started at once never share one.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { cmd } from '../../activities/lib/shell';
import { isClaimed, ownerNumber, withLabLock } from './claims';

export interface ShResult { code: number; stdout: string; stderr: string }

export interface HostSpec {
  /** One lower-case letter: the host's name in the lab and the last letter of its namespace. */
  name: string;
  /** The last octet of its address on the lab subnet (the bridge is .1). */
  octet: number;
  /** The only user sshd lets in (the worker's key is authorized for it). */
  user: string;
  /** Directories bound into the host's mount namespace: [outside, inside]. */
  mounts?: Array<[string, string]>;
  /** PATH and other variables of SSH sessions (sshd SetEnv). */
  env: Record<string, string>;
}

export interface ShOptions {
  /** Default: the SSH user. */
  user?: string;
  /** Added to the sessions' environment (HostSpec.env). */
  env?: Record<string, string>;
  input?: string;
}

export interface NetnsHost {
  name: string;
  ns: string;
  address: string;
  /** The host's own files as the test sees them (sshd config, host keys, whatever the lab adds). */
  dir: string;
  /** SHA256 fingerprints of its ed25519 and RSA host keys (sshd offers ed25519 first). */
  hostKey: string;
  rsaHostKey: string;
  /** Runs a shell command inside the host (its network and mount namespaces) as `user` (default: the SSH user). */
  sh(cmd: string, opts?: ShOptions): ShResult;
  /** What sshd logged (for failures). */
  sshdLog(): string;
}

export interface LabNetwork {
  id: string;
  subnet: string;
  bridgeAddress: string;
  addHost(spec: HostSpec): NetnsHost;
  /** Resolves once every host's sshd accepts connections. */
  waitForSsh(): Promise<void>;
  stop(): void;
}

const run = (cmd: string, args: string[], input?: string) => execFileSync(cmd, args, { encoding: 'utf8', input, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
export const tryRun = (cmd: string, args: string[]) => { try { run(cmd, args); } catch { /* already gone */ } };

const HOSTS_FILE = '/etc/hosts';
/** Names of this lab family: "rbo<owner>x<n>" (namespaces add the host's letter, the bridge "br"). */
const PREFIX = 'rbo';
const hostsTag = (owner: string) => `# runbooks-lab owner-${owner}`;
const ownedBy = (owner: string) => (line: string) => line.endsWith(hostsTag(owner));

/**
 * A host name for a lab address, resolvable by the worker and by the lab hosts alike (they share
 * /etc/hosts). Tagged with this process's owner number, removed by the returned function, and by
 * cleanStaleLabs if this process died.
 */
export function addHostName(name: string, address: string): () => void {
  const owner = withLabLock(() => {
    const o = claimOwner();
    writeFileSync(HOSTS_FILE, `${readFileSync(HOSTS_FILE, 'utf8').replace(/\n?$/, '\n')}${address} ${name} ${hostsTag(o)}\n`);
    return o;
  });
  return () => withLabLock(() => writeHostsWithout((l) => l.includes(` ${name} `) && ownedBy(owner)(l)));
}

function writeHostsWithout(drop: (line: string) => boolean): void {
  const lines = readFileSync(HOSTS_FILE, 'utf8').split('\n');
  const kept = lines.filter((l) => !drop(l));
  if (kept.length !== lines.length) writeFileSync(HOSTS_FILE, kept.join('\n'));
}

/** A local user for lab hosts' SSH logins (created once on this machine). */
export function ensureUser(name: string, uid: number): void {
  try { run('id', ['-u', name]); return; } catch { /* create it */ }
  try { run('groupadd', ['-g', String(uid), name]); } catch { /* exists */ }
  run('useradd', ['-u', String(uid), '-g', String(uid), '-M', '-d', `/home/${name}`, '-s', '/bin/bash', name]);
}

let owner: string | undefined;

/** This process's owner number; the first time (or when it changed: ownerNumber), what a dead process with the same number left is removed. Under the lab lock. */
function claimOwner(): string {
  const o = ownerNumber();
  if (owner === o) return owner;
  removeLabsOf((k) => k === o);
  owner = o;
  return o;
}

/** Removes namespaces, bridges and host names of labs whose process died (its owner claim is free). Under the lab lock. */
function cleanStaleLabs(): void {
  const dead = new Map<string, boolean>();
  removeLabsOf((k) => k !== owner && (dead.get(k) ?? dead.set(k, !isClaimed(`owner-${k}`)).get(k)!));
}

/** Removes every lab this process started (a benchmark past its deadline, before it exits). */
export function removeOwnLabs(): void {
  if (owner) withLabLock(() => removeLabsOf((k) => k === owner));
}

function removeLabsOf(stale: (owner: string) => boolean): void {
  writeHostsWithout((l) => { const m = /# runbooks-lab owner-(\d+)$/.exec(l); return Boolean(m && stale(m[1])); });
  for (const ns of run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0])) {
    const m = new RegExp(`^${PREFIX}(\\d+)x(\\d+)[a-z]$`).exec(ns);
    if (m && stale(m[1])) killNamespace(ns);
  }
  for (const line of run('ip', ['-o', 'link', 'show', 'type', 'bridge']).split('\n')) {
    const m = new RegExp(`^\\d+: (${PREFIX}(\\d+)x\\d+br)[:@]`).exec(line);
    if (m && stale(m[2])) tryRun('ip', ['link', 'del', m[1]]);
  }
  // A namespace is destroyed by the kernel after its last user is gone, in the background: its
  // veth's outer end can outlive `ip netns del` and take the name a later lab of the same owner
  // number wants ("RTNETLINK answers: File exists"). Deleting that end removes both at once.
  for (const line of run('ip', ['-o', 'link', 'show', 'type', 'veth']).split('\n')) {
    const m = new RegExp(`^\\d+: (${PREFIX}(\\d+)x\\d+[a-z]0)[:@]`).exec(line);
    if (m && stale(m[2])) tryRun('ip', ['link', 'del', m[1]]);
  }
}

export function killNamespace(ns: string): void {
  try {
    for (const pid of run('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) tryRun('kill', ['-9', pid]);
  } catch { /* gone */ }
  tryRun('ip', ['netns', 'del', ns]);
  // The outer end of its veth, now: the namespace itself may be torn down later (removeLabsOf).
  tryRun('ip', ['link', 'del', `${ns}0`]);
}

let networkCount = 0;

/**
 * A bridge and a subnet for one lab. `authorizedKeys` is the worker's public key file; `dir` holds
 * each host's files (one sub-directory per host).
 */
export function startNetwork(dir: string, authorizedKeys: string): LabNetwork {
  if (process.getuid?.() !== 0) throw new Error('The lab needs root (network namespaces, sshd): run the suite through ./scripts/test.sh as root');
  // Labs that run at once (parallel jest workers, another test run, a benchmark) get distinct
  // names and subnets: the subnet is one no interface of this machine has, and its bridge holds
  // it before the lock is released, so the next lab's look sees it taken.
  const { id, subnet, bridge } = withLabLock(() => {
    cleanStaleLabs();
    const labId = `${claimOwner()}x${networkCount++}`;
    const inUse = run('ip', ['-o', '-4', 'addr', 'show']);
    // From 10.224: clear of the 10.212-10.215 that labs named by pid took (other clones may run them meanwhile).
    const free = Array.from({ length: 250 * 28 }, (_, i) => `10.${224 + Math.floor(i / 250)}.${i % 250}`).find((net) => !inUse.includes(` ${net}.`));
    if (!free) throw new Error(`No free /24 in 10.224.0.0-10.251.249.0 for a lab: every one is on an interface (ip -4 addr); remove stale lab bridges (${PREFIX}*br)`);
    const br = `${PREFIX}${labId}br`;
    run('ip', ['link', 'add', br, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${free}.1/24`, 'dev', br]);
    return { id: labId, subnet: free, bridge: br };
  });
  run('ip', ['link', 'set', bridge, 'up']);
  mkdirSync('/run/sshd', { recursive: true });

  const hosts: NetnsHost[] = [];
  const sshds: ChildProcess[] = [];
  return {
    id, subnet, bridgeAddress: `${subnet}.1`,
    addHost(spec) {
      const { host, sshd } = makeHost(spec, { id, subnet, bridge, dir, authorizedKeys });
      hosts.push(host);
      sshds.push(sshd);
      return host;
    },
    async waitForSsh() {
      for (const h of hosts) await waitForPort(h.address, 22, () => `sshd on lab host ${h.name} (${h.address}) did not start: ${h.sshdLog().trim().slice(-2000)}`);
    },
    stop() {
      for (const s of sshds) s.kill('SIGKILL');
      for (const h of hosts) killNamespace(h.ns);
      tryRun('ip', ['link', 'del', bridge]);
    },
  };
}

function makeHost(spec: HostSpec, net: { id: string; subnet: string; bridge: string; dir: string; authorizedKeys: string }): { host: NetnsHost; sshd: ChildProcess } {
  const ns = `${PREFIX}${net.id}${spec.name}`;
  const address = `${net.subnet}.${spec.octet}`;
  // The name is this process's (its owner number): anything by it is a dead predecessor's leftover.
  tryRun('ip', ['link', 'del', `${ns}0`]);
  run('ip', ['netns', 'add', ns]);
  run('ip', ['link', 'add', `${ns}0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  run('ip', ['link', 'set', `${ns}0`, 'master', net.bridge, 'up']);
  const inNs = (...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
  inNs('ip', 'link', 'set', 'lo', 'up');
  inNs('ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0');
  inNs('ip', 'link', 'set', 'eth0', 'up');

  const hostDir = path.join(net.dir, spec.name);
  const mounts = spec.mounts ?? [];
  for (const d of [hostDir, ...mounts.flatMap(([outside, inside]) => [outside, inside])]) mkdirSync(d, { recursive: true });

  const hostKeyFile = path.join(hostDir, 'ssh_host_ed25519_key');
  const rsaKeyFile = path.join(hostDir, 'ssh_host_rsa_key');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKeyFile]);
  run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsaKeyFile]);
  const fingerprintOf = (f: string) => run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${f}.pub`]).split(' ')[1];
  const sshdConfig = path.join(hostDir, 'sshd_config');
  const setEnv = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`).join(' ');
  writeFileSync(sshdConfig, [
    `ListenAddress ${address}`, 'Port 22', `HostKey ${hostKeyFile}`, `HostKey ${rsaKeyFile}`, `PidFile ${path.join(hostDir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${net.authorizedKeys}`, 'StrictModes no', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'UsePAM yes', 'PermitRootLogin no', `AllowUsers ${spec.user}`, 'AllowStreamLocalForwarding yes',
    'AllowTcpForwarding yes', 'MaxSessions 50', 'MaxStartups 50:30:100',
    ...(setEnv ? [`SetEnv ${setEnv}`] : []),
  ].join('\n') + '\n');
  // Its own mount namespace too. tini as a subreaper, as init is on a real host: a killed server
  // process is reaped at once, not left a zombie.
  const binds = mounts.map(([outside, inside]) => cmd('mount', '--bind', outside, inside)).join(' && ');
  const sshd = spawn('ip', ['netns', 'exec', ns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c',
    `${binds ? `${binds} && ` : ''}exec /usr/bin/tini -s -- /usr/sbin/sshd -D -e -f ${sshdConfig}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let sshdLog = '';
  sshd.stderr!.on('data', (d: Buffer) => { if (sshdLog.length < 20_000) sshdLog += d; });
  untilExecd(sshd, '/usr/bin/tini', () => sshdLog);

  const sh = (cmd: string, opts: ShOptions = {}): ShResult => {
    try {
      const stdout = execFileSync('nsenter', ['-t', String(sshd.pid), '-m', '-n', '/usr/sbin/runuser', '-u', opts.user ?? spec.user, '--', 'bash', '-c', cmd], {
        encoding: 'utf8', input: opts.input, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...spec.env, ...opts.env },
      });
      return { code: 0, stdout, stderr: '' };
    } catch (err) {
      const e = err as { status: number; stdout: string; stderr: string };
      return { code: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
  const host: NetnsHost = {
    name: spec.name, ns, address, dir: hostDir, hostKey: fingerprintOf(hostKeyFile), rsaHostKey: fingerprintOf(rsaKeyFile), sh, sshdLog: () => sshdLog,
  };
  return { host, sshd };
}

/**
 * Waits until the spawned process has become `exe`: `ip netns exec` → `unshare` → `sh` (the bind
 * mounts) → tini execs in one process, so before that its namespaces are not yet the host's, and a
 * command entered into them (nsenter) would run in the machine's: files meant for a bind mount land
 * in the real directory. Synchronous, as the callers that follow (host.sh) are.
 */
function untilExecd(child: ChildProcess, exe: string, log: () => string, timeoutMs = 30_000): void {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let now = '';
    try { now = readlinkSync(`/proc/${child.pid}/exe`); } catch { /* not started yet, or gone */ }
    if (now === exe) return;
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`the lab host's sshd did not start (${child.exitCode !== null ? `exit code ${child.exitCode}` : child.signalCode ?? `still ${now || 'starting'} after ${timeoutMs / 1000} s`}): ${log()}`);
    }
    Atomics.wait(pause, 0, 0, 5);
  }
}

/** Waits until host:port accepts a TCP connection; `why` explains a timeout. */
export async function waitForPort(host: string, port: number, why: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(why());
    await new Promise((r) => setTimeout(r, 100));
  }
}
