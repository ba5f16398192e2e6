/**
 * What one simulated IRIS instance knows, kept in files under its home directory
 * (IRIS_SIM_HOME, default /var/lib/iris-sim):
 *
 *   instance.json   configuration and run-time state (see InstanceState): databases and their
 *                   mount / mirror flags, mirror membership and role, namespaces, users, tasks
 *   journal.json    on the member that is (or was last) primary: the mirror journal, i.e. the
 *                   newest content of every mirrored database, which a backup catches up from
 *   faults.json     fault knobs set by tests (see faults.ts)
 *   run/            the mirror_status.cxw server's pid and port
 *
 * A database's content (its globals, a write generation and its mirror label) lives in its
 * IRIS.DAT, a real file of a few MB in the database directory, as in IRIS: copying the file copies
 * the data and the label that makes a backup see it as a mirrored database needing activation.
 * Every write rewrites the file in place (owner and mode kept), so its checksum changes.
 */
import { createHash } from 'node:crypto';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface MirrorFlags {
  set: string;
  dbName: string;
  activationRequired: boolean;
  /** Needs catch-up (MirrorDBCatchup): set when a copied file is mounted on a backup, cleared by CatchupDB. */
  catchup: boolean;
  download: boolean;
  /** The DAT generation this member last saw, to tell a remount from a newly placed file. */
  generation: number;
}

export interface DatabaseState {
  name: string;
  directory: string;
  sfn: number;
  /** The IRIS.DAT write generation this instance last wrote or mounted (a file replaced under it is caught). */
  generation: number;
  mounted: boolean;
  readOnly: boolean;
  mirror: MirrorFlags | null;
}

export interface MirrorMembership {
  name: string;
  role: 'Primary' | 'Backup';
  /** This member's name in the mirror, e.g. HEALTHCONNECT_A. */
  memberName: string;
  address: string;
  peer: { memberName: string; address: string; home: string };
  /**
   * The mirror's arbiter as this member's [Mirrors] section has it (Config.Mirrors ArbiterNode,
   * 'address|port'; absent or '' when none is configured) and whether this member is connected to
   * it now. Absent in older state files (no arbiter).
   */
  arbiter?: { node: string; connected: boolean };
}

export interface UserState { enabled: boolean; changePassword: boolean; passwordHash: string }

export interface InstanceState {
  instance: string;
  node: string;
  /** Where IRIS.DAT directories are created (the instance's mgr/ directory). */
  mgrDir: string;
  statusPort: number;
  /** The instance owner: IRIS.DAT files must belong to this uid and be readable and writable by it. */
  owner: { uid: number; gid: number } | null;
  running: boolean;
  since: string;
  mirror: MirrorMembership | null;
  databases: Record<string, DatabaseState>;
  namespaces: Record<string, { database: string; interoperability: boolean }>;
  users: Record<string, UserState>;
  tasks: { id: number; name: string; taskClass: string; namespace: string; schedule: string }[];
  productions: Record<string, { autoStart: string; running: boolean }>;
  /** Interoperability credentials, per namespace (Ens.Config.Credentials): `<NAMESPACE>/<id>`. Absent in older state files. */
  credentials?: Record<string, { username: string; passwordHash: string }>;
}

export interface JournalEntry { generation: number; globals: Record<string, string>; directory: string; createdMirrored: boolean }

export const simHome = (env = process.env) => env.IRIS_SIM_HOME || '/var/lib/iris-sim';
const stateFile = (home: string) => path.join(home, 'instance.json');
const journalFile = (home: string) => path.join(home, 'journal.json');

export const loadState = (home: string): InstanceState => JSON.parse(readFileSync(stateFile(home), 'utf8'));
export const saveState = (home: string, s: InstanceState) => writeJsonAtomic(stateFile(home), s);
export const loadJournal = (home: string): Record<string, JournalEntry> =>
  existsSync(journalFile(home)) ? JSON.parse(readFileSync(journalFile(home), 'utf8')) : {};
export const saveJournal = (home: string, j: Record<string, JournalEntry>) => writeJsonAtomic(journalFile(home), j);

export function writeJsonAtomic(file: string, data: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`);
  renameSync(tmp, file);
}

const sleepMs = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Runs fn holding the lock of every home given (taken in path order, so two members never deadlock). */
export function withLocks<T>(homes: string[], fn: () => T): T {
  const locks = [...new Set(homes.map((h) => path.resolve(h, '.lock')))].sort();
  const held: string[] = [];
  try {
    for (const lock of locks) {
      for (let waited = 0; ; waited += 5) {
        try { closeSync(openSync(lock, 'wx')); held.push(lock); break; } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          // A lock older than 10 s belongs to a process that died holding it.
          try { if (Date.now() - statSync(lock).mtimeMs > 10_000) unlinkSync(lock); } catch { /* gone */ }
          sleepMs(5);
        }
      }
    }
    return fn();
  } finally {
    for (const l of held) try { unlinkSync(l); } catch { /* already gone */ }
  }
}

// ---------------------------------------------------------------------------------------------
// IRIS.DAT: "IRISSIM1", a 4-byte header length, the header (JSON), then a body of BODY_SIZE bytes
// derived from the database name and write generation. The header records the body's sha256, so a
// file changed in transit (a corrupted copy) is refused at mount.

export interface DatContent {
  name: string;
  generation: number;
  /** The mirror label written by AddDatabase: a backup mounting this file sees a mirrored database. */
  mirror: { set: string; dbName: string } | null;
  globals: Record<string, string>;
}

const MAGIC = 'IRISSIM1';
const BODY_SIZE = 3 * 1024 * 1024;
export const datPath = (dir: string) => path.join(dir, 'IRIS.DAT');

function body(name: string, generation: number): Buffer {
  const block = createHash('sha256').update(`${name}:${generation}`).digest();
  const buf = Buffer.allocUnsafe(BODY_SIZE);
  for (let i = 0; i < BODY_SIZE; i += block.length) block.copy(buf, i);
  return buf;
}

export function writeDat(dir: string, content: DatContent, owner: InstanceState['owner']): void {
  const b = body(content.name, content.generation);
  const header = Buffer.from(JSON.stringify({ ...content, bodySha256: createHash('sha256').update(b).digest('hex') }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  const file = datPath(dir);
  const existed = existsSync(file);
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, Buffer.concat([Buffer.from(MAGIC), len, header, b]));
  if (!existed && owner && process.getuid?.() === 0) chownSync(file, owner.uid, owner.gid);
}

export type DatRead = { ok: true; content: DatContent } | { ok: false; why: string };

export function readDat(dir: string, owner: InstanceState['owner']): DatRead {
  const file = datPath(dir);
  if (!existsSync(file)) return { ok: false, why: `cannot open ${file}: no such file` };
  const st = statSync(file);
  if (owner && (st.uid !== owner.uid || (st.mode & 0o600) !== 0o600)) {
    return { ok: false, why: `cannot open ${file}: permission denied (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}; the instance runs as uid ${owner.uid})` };
  }
  const buf = readFileSync(file);
  if (buf.subarray(0, 8).toString() !== MAGIC) return { ok: false, why: `${file} is not a database file` };
  const len = buf.readUInt32BE(8);
  let header: DatContent & { bodySha256: string };
  try { header = JSON.parse(buf.subarray(12, 12 + len).toString()); } catch { return { ok: false, why: `${file} is corrupt (bad label)` }; }
  const b = buf.subarray(12 + len);
  if (createHash('sha256').update(b).digest('hex') !== header.bodySha256) return { ok: false, why: `${file} is corrupt (block checksum mismatch)` };
  const { bodySha256: _sum, ...content } = header;
  return { ok: true, content };
}

/** Normalizes a database directory as IRIS does: absolute, with a trailing slash. */
export const normDir = (dir: string) => (dir.endsWith('/') ? dir : `${dir}/`);

export function databaseByDir(s: InstanceState, dir: string): DatabaseState | undefined {
  const d = normDir(dir);
  return Object.values(s.databases).find((db) => db.directory === d);
}
