/**
 * Runs parsed ObjectScript (see parser.ts for the subset) against a Host: the simulated instance
 * seen from one terminal session. Locals live here; classes, globals and $SYSTEM live in the host.
 */
import { parseLine, type Arg, type Cmd, type Expr, type Ref } from './parser';
import { IrisError, IrisList, IrisObject, Node, bool, toNum, toStr, truthy, type Value } from './values';

/** An argument as a method receives it: a value, a by-reference local (.name), or omitted. */
export type CallArg = { k: 'value'; v: Value } | { k: 'ref'; node: Node } | { k: 'omitted' };

export interface Host {
  namespace(): string;
  setNamespace(ns: string): void;
  write(text: string): void;
  classMethod(cls: string, method: string, args: CallArg[]): Value | undefined;
  systemMethod(cls: string, method: string, args: CallArg[]): Value | undefined;
  objectMethod(obj: IrisObject, method: string, args: CallArg[]): Value | undefined;
  property(obj: IrisObject, prop: string): Value;
  getGlobal(ns: string | undefined, name: string, subs: string[]): string | undefined;
  setGlobal(ns: string | undefined, name: string, subs: string[], value: string | undefined): void;
  zu(args: Value[]): Value;
}

/** `halt` (exit 0) and $SYSTEM.Process.Terminate(,status) (exit status) end the session. */
export class EndSession { constructor(readonly exitCode: number) {} }
class QuitSignal {}

export class Interpreter {
  readonly locals = new Node();
  constructor(private readonly host: Host) {}

  /** Runs one input line; an error ends the line and is returned as IRIS prints it. */
  runLine(line: string): void {
    try {
      this.run(parseLine(line), false);
    } catch (e) {
      if (e instanceof QuitSignal) return;
      if (e instanceof IrisError) { this.host.write(`\n${e.message}\n`); return; }
      throw e;
    }
  }

  private run(cmds: Cmd[], inLoop: boolean): void {
    for (const c of cmds) this.exec(c, inLoop);
  }

  private exec(c: Cmd, inLoop: boolean): void {
    if ('cond' in c && c.cond && (c.k === 'set' || c.k === 'write' || c.k === 'do' || c.k === 'quit' || c.k === 'halt') && !truthy(this.eval(c.cond))) return;
    switch (c.k) {
      case 'set': for (const it of c.items) this.assign(it.target, this.eval(it.e)); return;
      case 'write':
        for (const it of c.items) this.host.write(it.k === 'nl' ? '\n' : toStr(this.eval(it.e)));
        return;
      case 'do': for (const call of c.calls) this.eval(call, true); return;
      case 'if': {
        const hit = c.branches.find((b) => truthy(this.eval(b.cond)));
        const body = hit ? hit.body : c.orElse;
        if (body) this.run(body, inLoop);
        return;
      }
      case 'while':
        try { while (truthy(this.eval(c.cond))) this.run(c.body, true); } catch (e) { if (!(e instanceof QuitSignal)) throw e; }
        return;
      case 'quit': throw new QuitSignal();
      case 'halt': throw new EndSession(0);
      case 'kill': for (const r of c.refs) this.kill(r); return;
      case 'zn': this.host.setNamespace(toStr(this.eval(c.e))); return;
    }
  }

  private assign(r: Ref, v: Value): void {
    if (r.k === 'special') {
      if (r.name !== 'namespace') throw new IrisError('SYNTAX');
      this.host.setNamespace(toStr(v));
    } else if (r.k === 'global') {
      this.host.setGlobal(r.ns && toStr(this.eval(r.ns)), r.name, r.subs.map((s) => toStr(this.eval(s))), toStr(v));
    } else {
      this.localNode(r, true).value = v;
    }
  }

  private kill(r: Ref): void {
    if (r.k === 'global') return this.host.setGlobal(r.ns && toStr(this.eval(r.ns)), r.name, r.subs.map((s) => toStr(this.eval(s))), undefined);
    if (r.k !== 'local') throw new IrisError('SYNTAX');
    const subs = r.subs.map((s) => toStr(this.eval(s)));
    let parent = this.locals;
    const path = [r.name, ...subs];
    for (const p of path.slice(0, -1)) { const n = parent.child(p); if (!n) return; parent = n; }
    parent.children.delete(path[path.length - 1]);
  }

  private localNode(r: Extract<Expr, { k: 'local' }>, create: true): Node;
  private localNode(r: Extract<Expr, { k: 'local' }>, create: false): Node | undefined;
  private localNode(r: Extract<Expr, { k: 'local' }>, create: boolean): Node | undefined {
    let n: Node | undefined = this.locals.child(r.name, create as true);
    for (const s of r.subs) { if (!n) return undefined; n = n.child(toStr(this.eval(s)), create as true); }
    return n;
  }

  private refName(r: Extract<Expr, { k: 'local' }>): string {
    return r.subs.length ? `${r.name}(${r.subs.map((s) => { const v = this.eval(s); return typeof v === 'number' ? toStr(v) : `"${toStr(v)}"`; }).join(',')})` : r.name;
  }

  /** Evaluates an expression; `asStatement` allows calls that return nothing (do ...). */
  eval(e: Expr, asStatement = false): Value {
    const v = this.evalMaybe(e);
    if (v === undefined && !asStatement) throw new IrisError('COMMAND');
    return v as Value;
  }

  private evalMaybe(e: Expr): Value | undefined {
    switch (e.k) {
      case 'str': return e.v;
      case 'num': return e.v;
      case 'local': {
        const n = this.localNode(e, false);
        if (n?.value === undefined) throw new IrisError('UNDEFINED', this.refName(e));
        return n.value;
      }
      case 'global': {
        const v = this.host.getGlobal(e.ns && toStr(this.eval(e.ns)), e.name, e.subs.map((s) => toStr(this.eval(s))));
        if (v === undefined) throw new IrisError('UNDEFINED', `^${e.name}`);
        return v;
      }
      case 'special':
        if (e.name === 'namespace') return this.host.namespace();
        if (e.name === 'job' || e.name === 'j') return process.pid;
        if (e.name === 'zversion' || e.name === 'zv') return 'IRIS for UNIX (Ubuntu Server LTS for x86-64 Containers) 2024.1 (Build 267.2U) [simulator]';
        return `${Math.floor(Date.now() / 86_400_000) + 47117},${Math.floor((Date.now() % 86_400_000) / 1000)}`;
      case 'unary': {
        const v = this.eval(e.e);
        return e.op === "'" ? bool(!truthy(v)) : e.op === '-' ? -toNum(v) : toNum(v);
      }
      case 'bin': return binary(e.op, this.eval(e.l), this.eval(e.r));
      case 'fn': return this.fn(e.name, e.args);
      case 'classcall': return this.host.classMethod(e.cls, e.method, this.callArgs(e.args));
      case 'syscall': return this.host.systemMethod(e.cls, e.method, this.callArgs(e.args));
      case 'method': {
        const obj = this.eval(e.obj);
        if (!(obj instanceof IrisObject)) throw new IrisError('INVALID OREF', toStr(obj));
        return this.host.objectMethod(obj, e.method, this.callArgs(e.args));
      }
      case 'prop': {
        const obj = this.eval(e.obj);
        if (!(obj instanceof IrisObject)) throw new IrisError('INVALID OREF', toStr(obj));
        return this.host.property(obj, e.prop);
      }
    }
  }

  private callArgs(args: Arg[]): CallArg[] {
    return args.map((a) => (a.k === 'omitted' ? a : a.k === 'ref' ? { k: 'ref', node: this.locals.child(a.name, true) } : { k: 'value', v: this.eval(a.e) }));
  }

  private fn(name: string, args: Expr[]): Value {
    const need = (min: number, max: number) => { if (args.length < min || args.length > max) throw new IrisError('SYNTAX'); };
    switch (name) {
      case 'get': case 'data': {
        need(1, name === 'get' ? 2 : 1);
        const r = args[0];
        let v: Value | undefined;
        let data = 0;
        if (r.k === 'local') { const n = this.localNode(r, false); v = n?.value; data = n?.data ?? 0; }
        else if (r.k === 'global') { v = this.host.getGlobal(r.ns && toStr(this.eval(r.ns)), r.name, r.subs.map((s) => toStr(this.eval(s)))); data = v === undefined ? 0 : 1; }
        else throw new IrisError('SYNTAX');
        if (name === 'data') return data;
        return v ?? (args[1] ? this.eval(args[1]) : '');
      }
      case 'listbuild': return new IrisList(args.map((a) => this.eval(a)));
      case 'listget': {
        need(1, 3);
        const l = this.eval(args[0]);
        const pos = args[1] ? toNum(this.eval(args[1])) : 1;
        const dflt = args[2] ? this.eval(args[2]) : '';
        if (l === '') return dflt;
        if (!(l instanceof IrisList)) throw new IrisError('LIST', toStr(l));
        return l.items[pos - 1] ?? dflt;
      }
      case 'listlength': {
        need(1, 1);
        const l = this.eval(args[0]);
        if (l === '') return 0;
        if (!(l instanceof IrisList)) throw new IrisError('LIST', toStr(l));
        return l.items.length;
      }
      case 'piece': {
        need(2, 3);
        const s = toStr(this.eval(args[0]));
        const d = toStr(this.eval(args[1]));
        const n = args[2] ? toNum(this.eval(args[2])) : 1;
        return d === '' ? '' : s.split(d)[n - 1] ?? '';
      }
      case 'length': need(1, 1); return toStr(this.eval(args[0])).length;
      case 'zu': return this.host.zu(args.map((a) => this.eval(a)));
      default: throw new IrisError('SYNTAX');
    }
  }
}

function binary(op: string, l: Value, r: Value): Value {
  switch (op) {
    case '_': return toStr(l) + toStr(r);
    case '+': return toNum(l) + toNum(r);
    case '-': return toNum(l) - toNum(r);
    case '*': return toNum(l) * toNum(r);
    case '**': return toNum(l) ** toNum(r);
    case '/': if (toNum(r) === 0) throw new IrisError('DIVIDE'); return toNum(l) / toNum(r);
    case '\\': if (toNum(r) === 0) throw new IrisError('DIVIDE'); return Math.trunc(toNum(l) / toNum(r));
    case '#': if (toNum(r) === 0) throw new IrisError('DIVIDE'); return ((toNum(l) % toNum(r)) + toNum(r)) % toNum(r);
    case '=': return bool(toStr(l) === toStr(r));
    case "'=": return bool(toStr(l) !== toStr(r));
    case '<': return bool(toNum(l) < toNum(r));
    case '>': return bool(toNum(l) > toNum(r));
    case "'<": case '>=': return bool(toNum(l) >= toNum(r));
    case "'>": case '<=': return bool(toNum(l) <= toNum(r));
    case '&': case '&&': return bool(truthy(l) && truthy(r));
    case '!': case '||': return bool(truthy(l) || truthy(r));
    case '[': return bool(toStr(l).includes(toStr(r)));
    case "'[": return bool(!toStr(l).includes(toStr(r)));
    default: throw new IrisError('SYNTAX');
  }
}
