/**
 * Set-up and fault knobs for the IRIS simulator. Not IRIS commands: a lab runs them on each host
 * (`iris-sim ...`) or a test imports the functions.
 *
 *   iris-sim create --home H --instance IRIS --node NAME --mgr-dir D [--port N] [--owner UID:GID]
 *   iris-sim join-mirror --home H --mirror NAME --role Primary|Backup --member NAME --address A
 *                        --peer-member NAME --peer-address A --peer-home PATH
 *   iris-sim fault down --home H            the instance crashes: down, no failover, no health check
 *   iris-sim fault swap-roles --home H      H (the primary) becomes backup, its peer primary
 *   iris-sim fault set --home H '{"catchupFails":1}'   merge knobs into faults.json (see faults.ts)
 *   iris-sim corrupt-if-armed --home H FILE  damage FILE if the corruptCopy knob is armed (for copy shims)
 *   iris-sim password-matches --home H --user U   (password on stdin) exit 0 if it matches
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { corruptFile } from './corrupt';
import { loadFaults, saveFaults, takeCorruptCopy, type Faults } from './faults';
import { transact } from './instance';
import { stopStatusServer } from './server-control';
import { saveState, withLocks, writeDat, type InstanceState, type MirrorMembership } from './state';

export interface CreateOptions { home: string; instance?: string; node?: string; mgrDir: string; port?: number; owner?: { uid: number; gid: number } | null }

/** A stopped instance with IRISSYS, HSLIB, HSSYS and USER, HS_Services disabled without a password. */
export function createInstance(o: CreateOptions): void {
  mkdirSync(o.home, { recursive: true });
  const dbs = { IRISSYS: '', HSLIB: 'hslib', HSSYS: 'hssys', USER: 'user' };
  const s: InstanceState = {
    instance: o.instance ?? 'IRIS', node: o.node ?? 'localhost', mgrDir: o.mgrDir, statusPort: o.port ?? 0, owner: o.owner ?? null,
    running: false, since: new Date().toISOString(), mirror: null, databases: {}, namespaces: {}, tasks: [], productions: {},
    users: {
      HS_Services: { enabled: false, changePassword: false, passwordHash: '' },
      SuperUser: { enabled: true, changePassword: false, passwordHash: '' },
    },
  };
  Object.entries(dbs).forEach(([name, sub], sfn) => {
    const directory = `${path.join(o.mgrDir, sub)}/`.replace(/\/+$/, '/');
    s.databases[name] = { name, directory, sfn, generation: 1, mounted: true, readOnly: false, mirror: null };
    writeDat(directory, { name, generation: 1, mirror: null, globals: {} }, s.owner);
  });
  s.namespaces = {
    '%SYS': { database: 'IRISSYS', interoperability: false }, HSLIB: { database: 'HSLIB', interoperability: true },
    HSSYS: { database: 'HSSYS', interoperability: false }, USER: { database: 'USER', interoperability: false },
  };
  saveState(o.home, s);
}

export function joinMirror(home: string, m: MirrorMembership): void {
  withLocks([home], () => {
    const s: InstanceState = JSON.parse(readFileSync(path.join(home, 'instance.json'), 'utf8'));
    s.mirror = m;
    saveState(home, s);
  });
}

/** Two instances in one mirror (the test and both hosts see both homes at the same paths). */
export function createMirrorPair(a: CreateOptions, b: CreateOptions, mirror = 'HEALTHCONNECT'): void {
  createInstance(a);
  createInstance(b);
  const [ma, mb] = [`${mirror}_A`, `${mirror}_B`];
  joinMirror(a.home, { name: mirror, role: 'Primary', memberName: ma, address: a.node ?? 'a', peer: { memberName: mb, address: b.node ?? 'b', home: b.home } });
  joinMirror(b.home, { name: mirror, role: 'Backup', memberName: mb, address: b.node ?? 'b', peer: { memberName: ma, address: a.node ?? 'a', home: a.home } });
}

export function setFaults(home: string, f: Faults): void {
  withLocks([home], () => saveFaults(home, { ...loadFaults(home), ...f }));
}

/** The instance crashes: no graceful stop, so no failover, and its health check stops answering. */
export function crash(home: string): void {
  transact(home, (t) => { t.s.running = false; });
  stopStatusServer(home);
}

/** Roles swapped, as after an earlier failover: home (the primary) becomes the backup. */
export function swapRoles(home: string): void {
  transact(home, (t) => {
    if (!t.isPrimary || !t.peer) throw new Error(`${home} is not a running primary with a peer`);
    t.s.mirror!.role = 'Backup';
    t.peer.s.mirror!.role = 'Primary';
  });
}

/**
 * The mirror's arbiter in both members' configuration (ArbiterNode 'address|port', '' for none),
 * and whether each member is connected to it: `connected` for home, `peerConnected` for its peer.
 */
export function setArbiter(home: string, node: string, connected = true, peerConnected = connected): void {
  transact(home, (t) => {
    if (!t.s.mirror || !t.peer?.s.mirror) throw new Error(`${home} is not a mirror member with a peer`);
    t.s.mirror.arbiter = { node, connected: !!node && connected };
    t.peer.s.mirror.arbiter = { node, connected: !!node && peerConnected };
  });
}

export function corruptIfArmed(home: string, file: string): boolean {
  const armed = withLocks([home], () => takeCorruptCopy(home));
  if (armed) corruptFile(file);
  return armed;
}

export function passwordMatches(home: string, user: string, password: string): boolean {
  const u = (JSON.parse(readFileSync(path.join(home, 'instance.json'), 'utf8')) as InstanceState).users[user];
  if (!u?.passwordHash) return false;
  const [salt, h] = u.passwordHash.split('$');
  return createHash('sha256').update(salt + password).digest('hex') === h;
}

/** Whether the credential `id` of `namespace` (Ens.Config.Credentials) has this user name and password. */
export function credentialMatches(home: string, namespace: string, id: string, username: string, password: string): boolean {
  const c = (JSON.parse(readFileSync(path.join(home, 'instance.json'), 'utf8')) as InstanceState).credentials?.[`${namespace}/${id}`];
  if (!c || c.username !== username) return false;
  const [salt, h] = c.passwordHash.split('$');
  return createHash('sha256').update(salt + password).digest('hex') === h;
}

function flags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) if (argv[i].startsWith('--')) out[argv[i].slice(2)] = argv[++i];
  return out;
}

function main(argv: string[]): number {
  const [cmd, sub] = argv;
  const f = flags(argv);
  const need = (k: string) => f[k] ?? (() => { throw new Error(`iris-sim ${cmd}: --${k} is required`); })();
  const home = need('home');
  if (cmd === 'create') {
    const [uid, gid] = (f.owner ?? '').split(':').map(Number);
    createInstance({ home, instance: f.instance, node: f.node, mgrDir: need('mgr-dir'), port: f.port ? Number(f.port) : 0, owner: f.owner ? { uid, gid: gid ?? uid } : null });
  } else if (cmd === 'join-mirror') {
    const role = need('role');
    if (role !== 'Primary' && role !== 'Backup') throw new Error('--role is Primary or Backup');
    joinMirror(home, { name: need('mirror'), role, memberName: need('member'), address: need('address'), peer: { memberName: need('peer-member'), address: need('peer-address'), home: need('peer-home') } });
  } else if (cmd === 'fault' && sub === 'down') crash(home);
  else if (cmd === 'fault' && sub === 'swap-roles') swapRoles(home);
  else if (cmd === 'fault' && sub === 'set') setFaults(home, JSON.parse(argv[argv.length - 1]));
  else if (cmd === 'corrupt-if-armed') { if (!existsSync(argv[argv.length - 1])) throw new Error('no such file'); corruptIfArmed(home, argv[argv.length - 1]); }
  else if (cmd === 'password-matches') return passwordMatches(home, need('user'), readFileSync(0, 'utf8').replace(/\n$/, '')) ? 0 : 1;
  else throw new Error(`iris-sim: unknown command ${argv.join(' ')}`);
  return 0;
}

if (require.main === module) {
  try { process.exitCode = main(process.argv.slice(2)); } catch (e) { process.stderr.write(`${(e as Error).message}\n`); process.exitCode = 2; }
}
