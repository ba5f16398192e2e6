/**
 * One `iris session` against a simulated instance: the Host the interpreter runs against.
 * Namespace rules as in IRIS: SYS.*, Config.* and Security.* exist only in %SYS; HS.* in HSLIB and
 * the Foundation namespaces (which map the HS package); Ens.* in interoperability namespaces;
 * %-classes and $SYSTEM everywhere. A class outside its namespace is <CLASS DOES NOT EXIST>.
 */
import { CLASSES, SYSTEM_CLASSES, type ClassDef } from './classes';
import { findDatabase, readGlobal as readGlobalIn, settle, transact, writeGlobal as writeGlobalIn, type Tx } from './instance';
import type { CallArg, Host } from './interpreter';
import { databaseByDir, type DatabaseState } from './state';
import { IrisError, IrisObject, type Value } from './values';

export class Session implements Host {
  private ns: string;
  readonly out: string[] = [];
  constructor(readonly home: string, namespace: string, private readonly sink: (s: string) => void) {
    this.ns = namespace.toUpperCase();
  }

  tx<T>(fn: (t: Tx) => T): T { return transact(this.home, (t) => { settle(t); return fn(t); }); }

  namespace() { return this.ns; }
  setNamespace(ns: string): void {
    const n = ns.toUpperCase();
    if (!this.tx((t) => t.s.namespaces[n])) throw new IrisError('NAMESPACE', ns);
    this.ns = n;
  }
  write(text: string) { this.sink(text); }

  /** Whether a class is visible from the current namespace. */
  visible(def: ClassDef): boolean {
    if (def.where === 'anywhere') return true;
    if (def.where === '%SYS') return this.ns === '%SYS';
    return this.tx((t) => !!t.s.namespaces[this.ns]?.interoperability);
  }

  classMethod(cls: string, method: string, args: CallArg[]): Value | undefined {
    const def = CLASSES[cls];
    if (!def || !this.visible(def)) throw new IrisError('CLASS DOES NOT EXIST', cls);
    const m = def.classMethods?.[method];
    if (!m) throw new IrisError('METHOD DOES NOT EXIST', `${method},${cls}`);
    return m(this, args);
  }

  systemMethod(cls: string, method: string, args: CallArg[]): Value | undefined {
    const key = Object.keys(SYSTEM_CLASSES).find((k) => k.toLowerCase() === cls.toLowerCase());
    if (!key) throw new IrisError('CLASS DOES NOT EXIST', `%SYSTEM.${cls}`);
    const m = SYSTEM_CLASSES[key][method];
    if (!m) throw new IrisError('METHOD DOES NOT EXIST', `${method},%SYSTEM.${key}`);
    return m(this, args);
  }

  objectMethod(obj: IrisObject, method: string, args: CallArg[]): Value | undefined {
    const m = CLASSES[obj.className]?.instanceMethods?.[method];
    if (!m) throw new IrisError('METHOD DOES NOT EXIST', `${method},${obj.className}`);
    return m(this, args, obj);
  }

  property(obj: IrisObject, prop: string): Value {
    const v = obj.props.get(prop);
    if (v === undefined) throw new IrisError('PROPERTY DOES NOT EXIST', `${prop},${obj.className}`);
    return v;
  }

  /** Which database holds a global: ^%SYS("HealthShare",..) is mapped to HSSYS, other %-globals to IRISSYS. */
  private globalDb(t: Tx, ns: string | undefined, name: string, subs: string[]): DatabaseState {
    const n = (ns ?? this.ns).toUpperCase();
    const nsDef = t.s.namespaces[n];
    if (!nsDef) throw new IrisError('NAMESPACE', n);
    const dbName = name === '%SYS' && subs[0] === 'HealthShare' ? 'HSSYS' : name.startsWith('%') ? 'IRISSYS' : nsDef.database;
    const db = findDatabase(t.s, dbName);
    if (!db) throw new IrisError('DIRECTORY', dbName);
    return db;
  }

  getGlobal(ns: string | undefined, name: string, subs: string[]): string | undefined {
    return this.tx((t) => {
      const db = this.globalDb(t, ns, name, subs);
      return readGlobalIn(t, db, JSON.stringify([name, ...subs]));
    });
  }

  setGlobal(ns: string | undefined, name: string, subs: string[], value: string | undefined): void {
    this.tx((t) => writeGlobalIn(t, this.globalDb(t, ns, name, subs), JSON.stringify([name, ...subs]), value));
  }

  /** $zu(49,dir): the database's SFN first, as in "+$zu(49,dir)"; negative when not mounted / unknown. */
  zu(args: Value[]): Value {
    if (args.length !== 2 || String(args[0]) !== '49') throw new IrisError('FUNCTION');
    return this.tx((t) => {
      const db = databaseByDir(t.s, String(args[1]));
      if (!db) return -2;
      return db.mounted ? `${db.sfn},8192,0,${db.readOnly ? 1 : 0}` : -1;
    });
  }
}
