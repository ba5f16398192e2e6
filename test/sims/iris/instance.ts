/**
 * What a simulated instance does to its databases and its mirror. This is the readable model of
 * what we believe IRIS does; classes.ts only maps ObjectScript calls onto it.
 *
 * One rule keeps it runnable on lab hosts that do not share file systems: an instance touches only
 * its own IRIS.DAT files. The two members' homes (instance.json, journal.json) are visible to both
 * (the lab mounts them), so a stopping primary can hand the role to its peer, and a backup catches
 * up from the primary's journal. Work the other member must do on its own files (take over as
 * primary, catch up after a restart) happens when that member next runs a command: settle().
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { takeCatchupFails, takeDismountInUse } from './faults';
import {
  type DatabaseState, type DatContent, type InstanceState, type JournalEntry, loadJournal, loadState, normDir, readDat,
  saveJournal, saveState, withLocks, writeDat,
} from './state';
import { IrisError, OK, statusError, type Value } from './values';

export interface Member { home: string; s: InstanceState }

/** The state of one instance and, if it is a mirror member, of its peer, both locked. */
export class Tx {
  constructor(readonly self: Member, readonly peer: Member | null) {}
  get s(): InstanceState { return this.self.s; }
  get isMember(): boolean { return !!this.s.mirror && this.s.running; }
  get isPrimary(): boolean { return this.isMember && this.s.mirror!.role === 'Primary'; }
  get isBackup(): boolean { return this.isMember && this.s.mirror!.role === 'Backup'; }
  get peerUp(): boolean { return !!this.peer?.s.running; }
  get peerIsPrimary(): boolean { return this.peerUp && this.peer!.s.mirror?.role === 'Primary'; }
}

/** Runs fn on an instance's state under the locks of it and its peer, and saves what changed. */
export function transact<T>(home: string, fn: (t: Tx) => T): T {
  const peerHome = loadState(home).mirror?.peer.home;
  const peerThere = !!peerHome && existsSync(path.join(peerHome, 'instance.json'));
  return withLocks(peerThere ? [home, peerHome!] : [home], () => {
    const t = new Tx({ home, s: loadState(home) }, peerThere ? { home: peerHome!, s: loadState(peerHome!) } : null);
    const before = [JSON.stringify(t.self.s), JSON.stringify(t.peer?.s)];
    try { return fn(t); } finally {
      if (JSON.stringify(t.self.s) !== before[0]) saveState(home, t.self.s);
      if (t.peer && JSON.stringify(t.peer.s) !== before[1]) saveState(t.peer.home, t.peer.s);
    }
  });
}

// -- errors with the codes the simulator uses (IRIS's own numbers where we know them; runbooks
//    should match "ERROR #" and the text they print, not the numbers) --------------------------
export const ERR = {
  notMember: () => statusError(2039, 'This instance is not a member of a mirror'),
  notPrimary: (what: string) => statusError(2040, `${what} is only allowed on the primary mirror member`),
  notBackup: (what: string) => statusError(2041, `${what} is only allowed on the backup mirror member`),
  noDatabase: (dir: string) => statusError(5001, `Database ${dir} does not exist`),
  notMounted: (dir: string) => statusError(5001, `Database ${dir} is not mounted`),
  alreadyMirrored: (dir: string, set: string) => statusError(2045, `Database ${dir} is already mirrored in ${set}`),
  notMirrored: (dir: string) => statusError(2046, `Database ${dir} is not a mirrored database`),
  noActivation: (dir: string) => statusError(2047, `Mirrored database ${dir} does not require activation`),
  cannotMount: (dir: string, why: string) => statusError(5033, `Cannot mount database ${dir}: ${why}`),
  inUse: (dir: string) => statusError(5034, `Cannot dismount database ${dir}: database is in use`),
};

// -- databases ---------------------------------------------------------------------------------

export const findDatabase = (s: InstanceState, name: string): DatabaseState | undefined => s.databases[name.toUpperCase()];
export const databaseAt = (s: InstanceState, dir: string) => Object.values(s.databases).find((d) => d.directory === normDir(dir));
export const databaseBySfn = (s: InstanceState, sfn: number) => Object.values(s.databases).find((d) => d.sfn === sfn);

/** The content of a mounted database; a file replaced under a mounted database is an error. */
export function readContent(t: Tx, db: DatabaseState): DatContent {
  if (!db.mounted) throw new IrisError('DIRECTORY', db.directory);
  const r = readDat(db.directory, t.s.owner);
  if (!r.ok) throw new IrisError('DATABASE', `${db.directory} ${r.why}`);
  if (r.content.generation !== db.generation) throw new IrisError('DATABASE', `${db.directory} IRIS.DAT was replaced while mounted`);
  return r.content;
}

export function readGlobal(t: Tx, db: DatabaseState, key: string): string | undefined {
  return readContent(t, db).globals[key];
}

/** A global write: refused on a read-only database (a mirrored one on the backup) with <PROTECT>. */
export function writeGlobal(t: Tx, db: DatabaseState, key: string, value: string | undefined): void {
  const c = readContent(t, db);
  if (db.readOnly) throw new IrisError('PROTECT', `${key} ${db.directory}`);
  if (value === undefined) delete c.globals[key]; else c.globals[key] = value;
  saveContent(t, db, { ...c, generation: c.generation + 1 });
}

function saveContent(t: Tx, db: DatabaseState, c: DatContent): void {
  writeDat(db.directory, c, t.s.owner);
  db.generation = c.generation;
  if (db.mirror) db.mirror.generation = c.generation;
  if (db.mirror && t.isPrimary && !db.mirror.activationRequired) journal(t, db, c);
}

/** The primary's mirror journal: every mirrored database's newest content, read by the backup. */
function journal(t: Tx, db: DatabaseState, c: DatContent, createdMirrored?: boolean): void {
  const j = loadJournal(t.self.home);
  const prev = j[db.mirror!.dbName];
  j[db.mirror!.dbName] = {
    generation: c.generation, globals: c.globals, directory: path.relative(t.s.mgrDir, db.directory),
    createdMirrored: createdMirrored ?? prev?.createdMirrored ?? false,
  };
  saveJournal(t.self.home, j);
}

export function createDatabase(t: Tx, name: string, directory: string, mirrored: boolean): DatabaseState {
  const db: DatabaseState = {
    name: name.toUpperCase(), directory: normDir(directory), mounted: true, readOnly: false, generation: 1,
    sfn: Math.max(-1, ...Object.values(t.s.databases).map((d) => d.sfn)) + 1, mirror: null,
  };
  const label = mirrored && t.s.mirror ? { set: t.s.mirror.name, dbName: db.name } : null;
  if (label) db.mirror = { ...label, activationRequired: false, catchup: false, download: false, generation: 1 };
  t.s.databases[db.name] = db;
  const c: DatContent = { name: db.name, generation: 1, mirror: label, globals: {} };
  writeDat(db.directory, c, t.s.owner);
  if (label && t.isPrimary) journal(t, db, c, true);
  return db;
}

export function mount(t: Tx, db: DatabaseState): Value {
  if (db.mounted) return OK;
  const r = readDat(db.directory, t.s.owner);
  if (!r.ok) return ERR.cannotMount(db.directory, r.why);
  const c = r.content;
  const seenBefore = db.mirror && c.mirror && db.mirror.dbName === c.mirror.dbName && db.mirror.generation === c.generation;
  db.mounted = true;
  db.generation = c.generation;
  if (!c.mirror) { db.mirror = null; db.readOnly = false; return OK; }
  const ours = t.s.mirror?.name === c.mirror.set;
  if (ours && t.isPrimary) {
    db.mirror = { ...c.mirror, activationRequired: false, catchup: false, download: false, generation: c.generation };
    if (!loadJournal(t.self.home)[c.mirror.dbName]) journal(t, db, c);
  } else if (!seenBefore) {
    // A file placed on a backup: IRIS sees the mirror label and waits for activation and catch-up.
    db.mirror = { ...c.mirror, activationRequired: true, catchup: true, download: false, generation: c.generation };
  }
  db.readOnly = !(ours && t.isPrimary);
  return OK;
}

export function dismount(t: Tx, db: DatabaseState): Value {
  if (!db.mounted) return OK;
  if (db.name === 'IRISSYS') return statusError(5035, `Cannot dismount ${db.directory}: it is the system database`);
  if (takeDismountInUse(t.self.home, db.name)) return ERR.inUse(db.directory);
  db.mounted = false;
  return OK;
}

// -- mirroring ---------------------------------------------------------------------------------

export function addToMirror(t: Tx, db: DatabaseState, mirrorDbName: string): Value {
  if (!t.isMember) return ERR.notMember();
  if (!t.isPrimary) return ERR.notPrimary('Adding a database to the mirror');
  if (!db.mounted) return ERR.notMounted(db.directory);
  if (db.mirror) return ERR.alreadyMirrored(db.directory, db.mirror.set);
  const c = readContent(t, db);
  db.mirror = { set: t.s.mirror!.name, dbName: (mirrorDbName || db.name).toUpperCase(), activationRequired: false, catchup: false, download: false, generation: 0 };
  saveContent(t, db, { ...c, generation: c.generation + 1, mirror: { set: db.mirror.set, dbName: db.mirror.dbName } });
  return OK;
}

export function activate(t: Tx, db: DatabaseState): Value {
  if (!t.isMember) return ERR.notMember();
  if (!t.isBackup) return ERR.notBackup('Activating a mirrored database');
  if (!db.mounted) return ERR.notMounted(db.directory);
  if (!db.mirror) return ERR.notMirrored(db.directory);
  if (!db.mirror.activationRequired) return ERR.noActivation(db.directory);
  db.mirror.activationRequired = false;
  return OK;
}

/** CatchupDB: brings activated databases up to the primary's journal. Returns the SFNs that failed. */
export function catchup(t: Tx, sfns: number[]): { status: Value; failed: number[] } {
  if (!t.isMember) return { status: ERR.notMember(), failed: sfns };
  if (!t.isBackup) return { status: ERR.notBackup('Catching up a mirrored database'), failed: sfns };
  if (!t.peerIsPrimary) return { status: statusError(2048, 'The primary mirror member is not connected'), failed: sfns };
  if (takeCatchupFails(t.self.home)) return { status: statusError(2049, `Catchup failed for SFN ${sfns.join(',')}: journal read error`), failed: sfns };
  const failed: number[] = [];
  let first: Value = OK;
  const entries = loadJournal(t.peer!.home);
  for (const sfn of sfns) {
    const db = databaseBySfn(t.s, sfn);
    const why = !db ? `no database with SFN ${sfn}` : !db.mounted ? `${db.directory} is not mounted`
      : !db.mirror ? `${db.directory} is not mirrored` : db.mirror.activationRequired ? `${db.directory} requires activation first`
        : !entries[db.mirror.dbName] ? `${db.mirror.dbName} is not in the primary's journal` : '';
    if (why) { failed.push(sfn); if (first === OK) first = statusError(2050, `Catchup failed: ${why}`); continue; }
    applyJournal(t, db!, entries[db!.mirror!.dbName]);
  }
  return { status: first, failed };
}

function applyJournal(t: Tx, db: DatabaseState, e: JournalEntry): void {
  if (db.generation <= e.generation) {
    writeDat(db.directory, { name: db.name, generation: e.generation, mirror: { set: db.mirror!.set, dbName: db.mirror!.dbName }, globals: e.globals }, t.s.owner);
    db.generation = e.generation;
    db.mirror!.generation = e.generation;
  }
  db.mirror!.catchup = false;
}

const activeCaughtUp = (db: DatabaseState) => db.mounted && !!db.mirror && !db.mirror.activationRequired && !db.mirror.catchup;

/**
 * What an instance does on its own before each command: a backup dejournals what the primary
 * wrote (and creates databases the primary created mirrored, and, when the mirror monitor task is
 * scheduled, the namespaces recorded in HSSYS); a member that became primary takes over.
 */
export function settle(t: Tx): void {
  if (!t.isMember) return;
  const mirrored = Object.values(t.s.databases).filter((d) => d.mirror);
  if (t.isBackup) {
    for (const db of mirrored) db.readOnly = true;
    if (!t.peerIsPrimary) return;
    const entries = loadJournal(t.peer!.home);
    for (const [dbName, e] of Object.entries(entries)) {
      const db = mirrored.find((d) => d.mirror!.dbName === dbName);
      if (db && activeCaughtUp(db) && db.generation < e.generation) applyJournal(t, db, e);
      if (!db && e.createdMirrored && !findDatabase(t.s, dbName)) createFromJournal(t, dbName, e);
    }
    syncNamespaces(t);
    return;
  }
  // Primary: take over, catching up from the old primary's journal if it is newer.
  const old = t.peer ? loadJournal(t.peer.home) : {};
  for (const db of mirrored.filter(activeCaughtUp)) {
    const e = old[db.mirror!.dbName];
    if (e && e.generation > db.generation) applyJournal(t, db, e);
    db.readOnly = false;
    const j = loadJournal(t.self.home)[db.mirror!.dbName];
    if (!j || j.generation < db.generation) journal(t, db, readContent(t, db), old[db.mirror!.dbName]?.createdMirrored);
  }
}

function createFromJournal(t: Tx, dbName: string, e: JournalEntry): void {
  const db = createDatabase(t, dbName, path.join(t.s.mgrDir, e.directory), true);
  db.readOnly = true;
  applyJournal(t, db, e);
}

/** Key of ^%SYS("HealthShare","Namespaces",ns) in HSSYS: where Foundation.Install records a namespace (sim's own bookkeeping). */
export const NAMESPACE_REGISTRY = ['%SYS', 'HealthShare', 'Namespaces'];

function syncNamespaces(t: Tx): void {
  if (!t.s.tasks.some((k) => k.taskClass === 'HS.Util.Mirror.Task')) return;
  const hssys = findDatabase(t.s, 'HSSYS');
  if (!hssys || !activeCaughtUp(hssys)) return;
  for (const [key, dbName] of Object.entries(readContent(t, hssys).globals)) {
    const k = JSON.parse(key) as string[];
    if (k.length !== 4 || NAMESPACE_REGISTRY.some((p, i) => k[i] !== p)) continue;
    if (!t.s.namespaces[k[3]] && findDatabase(t.s, dbName)) t.s.namespaces[k[3]] = { database: dbName, interoperability: true };
  }
}

// -- start and stop ------------------------------------------------------------------------------

/** A graceful stop. A primary hands the role to a running backup, which takes over at its next command. */
export function stopInstance(t: Tx, opts: { failover: boolean }): void {
  const wasPrimary = t.isPrimary;
  t.s.running = false;
  t.s.since = new Date().toISOString();
  if (opts.failover && wasPrimary && t.peerUp && t.peer!.s.mirror?.role === 'Backup') t.peer!.s.mirror.role = 'Primary';
}

/** A member starts as backup when its peer is the running primary, else as primary (as in the simplemirror notes). */
export function startInstance(t: Tx): void {
  t.s.running = true;
  t.s.since = new Date().toISOString();
  if (t.s.mirror) t.s.mirror.role = t.peerIsPrimary ? 'Backup' : 'Primary';
  settle(t);
}
