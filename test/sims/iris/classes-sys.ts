/** %SYS classes (SYS.*, Config.*, Security.*), %-classes and $SYSTEM. */
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { arity, array, list, num, out, str, value } from './args';
import type { ClassDef, Method } from './classes';
import { loadFaults, takeCorruptCopy } from './faults';
import { ERR, activate, addToMirror, catchup, databaseAt, dismount, findDatabase, mount, type Tx } from './instance';
import { EndSession } from './interpreter';
import type { Session } from './session';
import { loadJournal, type DatabaseState } from './state';
import { corruptFile } from './corrupt';
import { IrisError, IrisList, IrisObject, IrisStatus, OK, bool, statusError, toStr, truthy, type Value } from './values';

const withDb = (s: Session, dir: string, fn: (t: Tx, db: DatabaseState) => Value): Value =>
  s.tx((t) => { const db = databaseAt(t.s, dir); return db ? fn(t, db) : ERR.noDatabase(dir); });

function memberStatus(t: Tx): { self: IrisList; other: IrisList } {
  const m = t.s.mirror!;
  const self = new IrisList([m.memberName, m.address, m.role, t.isPrimary || t.peerIsPrimary ? 'Active' : 'Inactive']);
  const other = t.peerUp
    ? new IrisList([m.peer.memberName, m.peer.address, t.peer!.s.mirror!.role, 'Active'])
    : new IrisList([m.peer.memberName, m.peer.address, '', 'Down']);
  return { self, other };
}

/** SYS.Database properties as %OpenId loads them (a snapshot: reopen to see changes). */
function openDatabase(t: Tx, db: DatabaseState): IrisObject {
  const mf = db.mirror;
  const props: [string, Value][] = [
    ['Directory', db.directory], ['Mounted', bool(db.mounted)], ['ReadOnlyMounted', bool(db.mounted && db.readOnly)],
    ['ReadOnly', bool(db.readOnly)], ['SFN', db.sfn], ['Mirrored', bool(!!mf)], ['MirrorSetName', mf?.set ?? ''],
    ['MirrorDBName', mf?.dbName ?? ''], ['InActiveMirror', bool(!!mf && t.isMember && t.s.mirror!.name === mf.set && !mf.activationRequired)],
    ['MirrorActivationRequired', bool(!!mf?.activationRequired)], ['MirrorDBCatchup', bool(!!mf?.catchup)],
    ['MirrorDBDownload', bool(!!mf?.download)],
  ];
  return new IrisObject('SYS.Database', new Map(props));
}

/**
 * SYS.Mirror.IsFailoverReady as the class reference describes it (IRIS 2024.1, SYS.Mirror): $lb(1)
 * when the backup should take over if the primary fails: a failover member of a running pair, the
 * backup active with every mirrored database active on it, and, when an arbiter is configured, the
 * mirror in arbiter controlled mode (both failover members connected to the arbiter, the HA Guide's
 * "Arbiter Controlled Mode"); else $lb(0,reason). The reason texts are the simulator's own (a guess:
 * the reference documents only "reason text"). The latency argument is accepted, not modelled.
 */
function failoverReady(t: Tx): IrisList {
  const no = (reason: string) => new IrisList([0, reason]);
  if (!t.isMember) return no('This instance is not a failover mirror member');
  if (!t.peerUp) return no(`The other failover member ${t.s.mirror!.peer.memberName} is not running`);
  const [primary, backup] = t.isPrimary ? [t.self, t.peer!] : [t.peer!, t.self];
  if (primary.s.mirror?.role !== 'Primary' || backup.s.mirror?.role !== 'Backup') return no('There is no active backup');
  const inactive = Object.keys(loadJournal(primary.home)).filter((n) => {
    const db = Object.values(backup.s.databases).find((d) => d.mirror?.dbName === n);
    return !db || !db.mounted || db.mirror!.activationRequired;
  });
  if (inactive.length) return no(`Mirrored database(s) ${inactive.join(',')} not active on the backup`);
  const arbiter = t.s.mirror!.arbiter;
  if (arbiter?.node) {
    const lost = [t.s, t.peer!.s].filter((s) => !s.mirror!.arbiter?.connected).map((s) => s.mirror!.memberName);
    if (lost.length) return no(`Mirror is not in arbiter controlled mode: ${lost.join(' and ')} not connected to the arbiter ${arbiter.node}`);
  }
  return new IrisList([1]);
}

const hash = (salt: string, pw: string) => `${salt}$${createHash('sha256').update(salt + pw).digest('hex')}`;
const USER_PROPS = new Set(['Enabled', 'ChangePassword', 'Password']);

/** A mirrored database's name as the mirror's catalogue gives it: `:mirror:<MIRROR>:<DB>`. */
const catalogueName = (set: string, dbName: string) => `:mirror:${set}:${dbName}`;

/**
 * Rows of the two SYS.Mirror queries. MissingMirroredDatabases names a database `:mirror:<MIRROR>:<DB>`
 * and MirroredDatabaseList by its bare name, as a live pair showed (test/sims/iris/README.md, sources);
 * the `prefixedMirroredDatabaseList` knob gives the list the `:mirror:` form other reports show.
 */
function query(t: Tx, name: string, args: Value[]): Record<string, Value>[] {
  const mirrored = Object.values(t.s.databases).filter((d) => d.mirror);
  if (name === 'MirroredDatabaseList') {
    const prefixed = !!loadFaults(t.self.home).prefixedMirroredDatabaseList;
    return mirrored.map((d) => ({ Name: prefixed ? catalogueName(d.mirror!.set, d.mirror!.dbName) : d.mirror!.dbName, Directory: d.directory }));
  }
  // MissingMirroredDatabases(mirror): on a backup, databases in the primary's journal with no local copy.
  const mirror = toStr(args[0] ?? '');
  if (!t.isBackup || !t.peerIsPrimary || (mirror && mirror.toUpperCase() !== t.s.mirror!.name.toUpperCase())) return [];
  const local = new Set(mirrored.filter((d) => d.mounted).map((d) => d.mirror!.dbName));
  return Object.entries(loadJournal(t.peer!.home)).filter(([n]) => !local.has(n)).map(([n, e]) => ({ Name: catalogueName(t.s.mirror!.name, n), Directory: e.directory }));
}
const QUERIES = new Set(['SYS.Mirror:MirroredDatabaseList', 'SYS.Mirror:MissingMirroredDatabases']);

const statusOf = (v: Value | undefined): IrisStatus | undefined => (v instanceof IrisStatus ? v : undefined);

export const SYSTEM: Record<string, Record<string, Method>> = {
  Status: {
    IsOK: (_s, a) => { arity(a, 1); return bool(truthy(value(a, 0))); },
    IsError: (_s, a) => { arity(a, 1); return bool(!truthy(value(a, 0))); },
    OK: (_s, a) => { arity(a, 0); return OK; },
    Error: (_s, a) => { arity(a, 5); return statusError(num(a, 0), str(a, 1)); },
    GetErrorText: (_s, a) => { arity(a, 2); return statusOf(value(a, 0))?.errorText ?? ''; },
    DisplayError: (s, a) => { arity(a, 1); const st = statusOf(value(a, 0)); if (st) s.write(`\n${st.errorText}`); return OK; },
  },
  Mirror: {
    IsMember: (s, a) => { arity(a, 0); return s.tx((t) => bool(t.isMember)); },
    IsPrimary: (s, a) => { arity(a, 0); return s.tx((t) => bool(t.isPrimary)); },
    IsBackup: (s, a) => { arity(a, 0); return s.tx((t) => bool(t.isBackup)); },
    MirrorName: (s, a) => { arity(a, 0); return s.tx((t) => (t.isMember ? t.s.mirror!.name : '')); },
    GetStatus: (s, a) => { arity(a, 0); return s.tx((t) => (!t.isMember ? 'NOTINIT' : t.isPrimary ? 'PRIMARY' : t.peerIsPrimary ? 'CONNECTED' : 'DISCONNECTED')); },
    DBActivate: (s, a) => { arity(a, 1); return withDb(s, str(a, 0), activate); },
  },
  Process: {
    Terminate: (_s, a) => { arity(a, 2); throw new EndSession(num(a, 1)); },
  },
};

export const SYS_CLASSES: Record<string, ClassDef> = {
  'SYS.Mirror': {
    where: '%SYS',
    classMethods: {
      IsMirrorStarted: (s, a) => { arity(a, 1); return s.tx((t) => bool(t.isMember && t.s.mirror!.name.toUpperCase() === str(a, 0).toUpperCase())); },
      GetFailoverMemberStatus: (s, a) => {
        arity(a, 2);
        return s.tx((t) => {
          if (!t.isMember) return ERR.notMember();
          const st = memberStatus(t);
          out(a, 0).value = st.self;
          out(a, 1).value = st.other;
          return OK;
        });
      },
      IsFailoverReady: (s, a) => { arity(a, 1); return s.tx(failoverReady); },
      AddDatabase: (s, a) => { arity(a, 3); return withDb(s, str(a, 0), (t, db) => addToMirror(t, db, str(a, 1))); },
      ActivateMirroredDatabase: (s, a) => { arity(a, 1); return withDb(s, str(a, 0), activate); },
      CatchupDB: (s, a) => {
        arity(a, 3);
        const sfns = list(a, 0).map((v) => Number(toStr(v)));
        return s.tx((t) => {
          const r = catchup(t, sfns);
          out(a, 2).value = r.failed.length ? new IrisList(r.failed) : '';
          return r.status;
        });
      },
    },
  },
  'SYS.MirrorConfiguration': {
    where: '%SYS',
    classMethods: {
      AddDatabaseToMirrorSet: (s, a) => {
        arity(a, 2);
        return withDb(s, str(a, 0), (t, db) => (t.s.mirror && str(a, 1) && str(a, 1).toUpperCase() !== t.s.mirror.name.toUpperCase()
          ? statusError(2042, `Mirror ${str(a, 1)} is not configured on this instance`) : addToMirror(t, db, '')));
      },
    },
  },
  'SYS.Database': {
    where: '%SYS',
    classMethods: {
      '%OpenId': (s, a) => {
        arity(a, 3);
        return s.tx((t) => {
          const db = databaseAt(t.s, str(a, 0));
          out(a, 2).value = db ? OK : statusError(5809, `Object to load not found, class 'SYS.Database', ID '${str(a, 0)}'`);
          return db ? openDatabase(t, db) : '';
        });
      },
      DismountDatabase: (s, a) => { arity(a, 1); return withDb(s, str(a, 0), dismount); },
      MountDatabase: (s, a) => { arity(a, 3); return withDb(s, str(a, 0), mount); },
    },
    instanceMethods: {
      Dismount: (s, a, self) => { arity(a, 0); return withDb(s, toStr(self!.props.get('Directory')), dismount); },
      Mount: (s, a, self) => { arity(a, 0); return withDb(s, toStr(self!.props.get('Directory')), mount); },
    },
  },
  'Config.Databases': {
    where: '%SYS',
    classMethods: {
      DatabaseByName: (s, a) => { arity(a, 1); return s.tx((t) => { const db = findDatabase(t.s, str(a, 0)); return db ? `^^${db.directory}` : ''; }); },
    },
  },
  // Config.Mirrors.Get(Name,.Properties): the [Mirrors] section; ArbiterNode is 'address|port' or ''.
  'Config.Mirrors': {
    where: '%SYS',
    classMethods: {
      Get: (s, a) => {
        arity(a, 4);
        return s.tx((t) => {
          const m = t.s.mirror;
          if (!m || m.name.toUpperCase() !== str(a, 0).toUpperCase()) return statusError(5001, `Mirror '${str(a, 0)}' does not exist`);
          const p = out(a, 1);
          p.child('ArbiterNode', true).value = m.arbiter?.node ?? '';
          p.child('QOSTimeout', true).value = 8000;
          p.child('UseSSL', true).value = 0;
          return OK;
        });
      },
    },
  },
  'Config.Namespaces': {
    where: '%SYS',
    classMethods: { Exists: (s, a) => { arity(a, 3); return s.tx((t) => bool(!!t.s.namespaces[str(a, 0).toUpperCase()])); } },
  },
  'Security.Users': {
    where: '%SYS',
    classMethods: {
      Get: (s, a) => {
        arity(a, 2);
        return s.tx((t) => {
          const u = t.s.users[str(a, 0)];
          if (!u) return statusError(838, `User ${str(a, 0)} does not exist`);
          const p = out(a, 1);
          p.child('Name', true).value = str(a, 0);
          p.child('Enabled', true).value = bool(u.enabled);
          p.child('ChangePassword', true).value = bool(u.changePassword);
          return OK; // the password is never returned
        });
      },
      Modify: (s, a) => {
        arity(a, 2);
        const p = array(a, 1);
        const unknown = Object.keys(p).filter((k) => !USER_PROPS.has(k));
        if (unknown.length) return statusError(5001, `Security.Users.Modify: property ${unknown.join(',')} is not supported by the simulator`);
        return s.tx((t) => {
          const u = t.s.users[str(a, 0)];
          if (!u) return statusError(838, `User ${str(a, 0)} does not exist`);
          if ('Enabled' in p) u.enabled = truthy(p.Enabled);
          if ('ChangePassword' in p) u.changePassword = truthy(p.ChangePassword);
          if ('Password' in p) u.passwordHash = hash(randomBytes(8).toString('hex'), toStr(p.Password));
          return OK;
        });
      },
    },
  },
  '%SYS.Namespace': {
    where: 'anywhere',
    classMethods: { Exists: (s, a) => { arity(a, 1); return s.tx((t) => bool(!!t.s.namespaces[str(a, 0).toUpperCase()])); } },
  },
  '%File': {
    where: 'anywhere',
    classMethods: {
      // Returns 1 or 0 (not a %Status). A copy of an IRIS.DAT is damaged if the corruptCopy knob is armed.
      CopyFile: (s, a) => {
        arity(a, 4);
        const from = str(a, 0);
        let to = str(a, 1);
        if (!existsSync(from)) return 0;
        if (to.endsWith('/')) to = path.join(to, path.basename(from));
        try { copyFileSync(from, to); } catch { return 0; }
        // IRIS copies as the instance owner, so the copy belongs to it (irisowner), not to root.
        const owner = s.tx((t) => t.s.owner);
        if (owner && process.getuid?.() === 0) chownSync(to, owner.uid, owner.gid);
        if (path.basename(from) === 'IRIS.DAT' && s.tx((t) => takeCorruptCopy(t.self.home))) corruptFile(to);
        return 1;
      },
    },
  },
  '%DynamicObject': {
    where: 'anywhere',
    classMethods: { '%New': (_s, a) => { arity(a, 0); return new IrisObject('%DynamicObject', new Map(), new Map<string, JsonMember>()); } },
    instanceMethods: {
      '%Set': (_s, a, self) => {
        arity(a, 3);
        const type = str(a, 2);
        const v = value(a, 1) ?? '';
        (self!.impl as Map<string, JsonMember>).set(str(a, 0), type === 'boolean' ? { v: bool(truthy(v)), boolean: true } : { v: type === 'number' ? Number(toStr(v)) : v, boolean: false });
        return self;
      },
      '%Get': (_s, a, self) => { arity(a, 1); return (self!.impl as Map<string, JsonMember>).get(str(a, 0))?.v ?? ''; },
      '%ToJSON': (_s, a, self) => { arity(a, 0); return JSON.stringify(toJson(self!)); },
    },
  },
  '%ResultSet': {
    where: 'anywhere',
    classMethods: {
      '%New': (s, a) => {
        arity(a, 1);
        const q = str(a, 0);
        const [cls, name] = q.split(':');
        if (!CLASS_OK(s, cls)) throw new IrisError('CLASS DOES NOT EXIST', cls);
        if (!QUERIES.has(q)) throw new IrisError('METHOD DOES NOT EXIST', `${name},${cls}`);
        return new IrisObject('%ResultSet', new Map(), { name, rows: [] as Record<string, Value>[], at: -1 });
      },
    },
    instanceMethods: {
      Execute: (s, a, self) => {
        arity(a, 4);
        const rs = self!.impl as { name: string; rows: Record<string, Value>[]; at: number };
        rs.rows = s.tx((t) => query(t, rs.name, a.map((_, i) => value(a, i) ?? '')));
        rs.at = -1;
        return OK;
      },
      Next: (_s, a, self) => { arity(a, 1); const rs = self!.impl as { rows: unknown[]; at: number }; rs.at++; return bool(rs.at < rs.rows.length); },
      Get: (_s, a, self) => {
        arity(a, 1);
        const rs = self!.impl as { rows: Record<string, Value>[]; at: number };
        const row = rs.rows[rs.at];
        if (!row) return '';
        if (!(str(a, 0) in row)) throw new IrisError('PROPERTY DOES NOT EXIST', `${str(a, 0)},%ResultSet`);
        return row[str(a, 0)];
      },
      GetData: (_s, a, self) => {
        arity(a, 1);
        const rs = self!.impl as { rows: Record<string, Value>[]; at: number };
        return Object.values(rs.rows[rs.at] ?? {})[num(a, 0) - 1] ?? '';
      },
    },
  },
};

const CLASS_OK = (s: Session, cls: string) => { const d = SYS_CLASSES[cls]; return !!d && s.visible(d); };

/** A %DynamicObject member: numbers stay JSON numbers, strings JSON strings, %Set(k,v,"boolean") true/false. */
interface JsonMember { v: Value; boolean: boolean }

function toJson(o: IrisObject): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, { v, boolean }] of o.impl as Map<string, JsonMember>) {
    out[k] = boolean ? v === 1 : v instanceof IrisObject && v.className === '%DynamicObject' ? toJson(v) : typeof v === 'number' ? v : toStr(v);
  }
  return out;
}
