/**
 * The ObjectScript the simulator understands: a small subset, enough for runbooks to send checked,
 * one-result-line scripts through `iris session`. Anything outside it is <SYNTAX>, so a runbook
 * that strays fails a test instead of passing against a lenient fake.
 *
 * Each input line is parsed whole, then run (as the terminal does: a syntax error anywhere in the
 * line runs nothing of it). Commands are separated by one or more spaces; command words are
 * case-insensitive and may be abbreviated (s, w, d, i, q, h, k, zn).
 *
 *   set x=expr,y=expr             locals, local arrays p("Enabled"), globals ^name(..) and
 *   set ^|"HSSYS"|%SYS("HealthShare","NetworkHostName")=expr      extended references ^|"NS"|name(..)
 *   set $namespace="HSLIB"        / zn "HSLIB"   change namespace
 *   write expr,!,expr             ! is a new line
 *   do ##class(Pkg.Class).Method(args)   do obj.Method(args)   do $SYSTEM.Status.DisplayError(sc)
 *   if cond { cmds } elseif cond { cmds } else { cmds }    blocks on ONE line
 *   while cond { cmds }           (quit inside leaves the loop)
 *   quit   halt   kill x          set:cond / write:cond / do:cond / quit:cond / halt:cond postconditions
 *   // or ; starts a comment
 *
 * Expressions (no spaces inside, except after commas in argument lists; evaluated strictly left to
 * right as ObjectScript does: a=1&b=2 is ((a=1)&b)=2, so use parentheses):
 *   "string with ""doubled"" quotes"   123  1.5   (expr)
 *   operators _ + - * / \ # = '= < > '< '> <= >= & && ! || [ '[   unary ' - +
 *   $get/$g  $data/$d  $listget/$lg  $listbuild/$lb  $listlength/$ll  $piece/$p  $length/$l  $zu(49,dir)
 *   $namespace  $SYSTEM.Class.Method(args)  ##class(Name).Method(args)  obj.Property  obj.Method(args)
 *   arguments: expr, omitted (Terminate(,1)), or by reference .name
 */
import { IrisError } from './values';

export type Expr =
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'local'; name: string; subs: Expr[] }
  | { k: 'global'; ns?: Expr; name: string; subs: Expr[] }
  | { k: 'special'; name: string }
  | { k: 'fn'; name: string; args: Expr[] }
  | { k: 'unary'; op: string; e: Expr }
  | { k: 'bin'; op: string; l: Expr; r: Expr }
  | { k: 'classcall'; cls: string; method: string; args: Arg[] }
  | { k: 'syscall'; cls: string; method: string; args: Arg[] }
  | { k: 'method'; obj: Expr; method: string; args: Arg[] }
  | { k: 'prop'; obj: Expr; prop: string };

export type Arg = { k: 'omitted' } | { k: 'ref'; name: string } | { k: 'expr'; e: Expr };
export type Ref = Extract<Expr, { k: 'local' | 'global' | 'special' }>;

export type Cmd =
  | { k: 'set'; cond?: Expr; items: { target: Ref; e: Expr }[] }
  | { k: 'write'; cond?: Expr; items: ({ k: 'nl' } | { k: 'expr'; e: Expr })[] }
  | { k: 'do'; cond?: Expr; calls: Expr[] }
  | { k: 'if'; branches: { cond: Expr; body: Cmd[] }[]; orElse?: Cmd[] }
  | { k: 'while'; cond: Expr; body: Cmd[] }
  | { k: 'quit'; cond?: Expr }
  | { k: 'halt'; cond?: Expr }
  | { k: 'kill'; refs: Ref[] }
  | { k: 'zn'; e: Expr };

const COMMANDS: Record<string, Cmd['k'] | 'else' | 'elseif'> = {
  s: 'set', set: 'set', w: 'write', write: 'write', d: 'do', do: 'do', i: 'if', if: 'if', while: 'while',
  q: 'quit', quit: 'quit', h: 'halt', halt: 'halt', k: 'kill', kill: 'kill', zn: 'zn', znspace: 'zn',
  e: 'else', else: 'else', elseif: 'elseif',
};
const FUNCTIONS: Record<string, string> = {
  g: 'get', get: 'get', d: 'data', data: 'data', lg: 'listget', listget: 'listget', lb: 'listbuild', listbuild: 'listbuild',
  ll: 'listlength', listlength: 'listlength', p: 'piece', piece: 'piece', l: 'length', length: 'length', zu: 'zu',
};
const SPECIALS = new Set(['namespace', 'job', 'j', 'horolog', 'h', 'zversion', 'zv']);
const BINARY = ["'=", "'<", "'>", "'[", '<=', '>=', '&&', '||', '**', '_', '+', '-', '*', '/', '\\', '#', '=', '<', '>', '&', '!', '['];

export function parseLine(src: string): Cmd[] {
  const p = new Parser(src);
  const cmds = p.commands(false);
  if (!p.atEnd()) p.fail();
  return cmds;
}

class Parser {
  i = 0;
  constructor(readonly src: string) {}
  fail(): never { throw new IrisError('SYNTAX'); }
  atEnd() { return this.i >= this.src.length; }
  peek(n = 0) { return this.src[this.i + n] ?? ''; }
  eat(s: string) { if (this.src.startsWith(s, this.i)) { this.i += s.length; return true; } return false; }
  expect(s: string) { if (!this.eat(s)) this.fail(); }
  spaces() { const s = this.i; while (this.peek() === ' ' || this.peek() === '\t') this.i++; return this.i - s; }
  word(): string { const m = /^[%A-Za-z][A-Za-z0-9]*/.exec(this.src.slice(this.i)); if (!m) this.fail(); this.i += m[0].length; return m[0]; }
  comment() { return this.src.startsWith('//', this.i) || this.peek() === ';'; }

  /** Commands up to the end of the line (or the closing brace of a block). */
  commands(inBlock: boolean): Cmd[] {
    const out: Cmd[] = [];
    for (;;) {
      this.spaces();
      if (this.atEnd() || (inBlock && this.peek() === '}')) return out;
      if (this.comment()) { this.i = this.src.length; return out; }
      out.push(this.command());
      if (!this.atEnd() && this.peek() !== ' ' && this.peek() !== '\t' && !(inBlock && this.peek() === '}')) this.fail();
    }
  }

  command(): Cmd {
    const kind = COMMANDS[this.word().toLowerCase()];
    if (!kind || kind === 'else' || kind === 'elseif') this.fail();
    const cond = this.eat(':') ? this.expr() : undefined;
    // An argumentless command is followed by two spaces, the end of the line or a block's closing brace.
    const argless = () => /^(\s*$|\s*\}|  )/.test(this.src.slice(this.i));
    switch (kind) {
      case 'quit': case 'halt': if (!argless()) this.fail(); return { k: kind, cond };
      case 'if': case 'while': {
        if (cond) this.fail();
        this.expect(' ');
        const c = this.expr();
        const body = this.block();
        if (kind === 'while') return { k: 'while', cond: c, body };
        const branches = [{ cond: c, body }];
        let orElse: Cmd[] | undefined;
        for (;;) {
          const save = this.i;
          this.spaces();
          const m = /^(elseif|else|e)\b/i.exec(this.src.slice(this.i));
          if (!m) { this.i = save; break; }
          this.i += m[0].length;
          if (m[0].toLowerCase() === 'elseif') { this.expect(' '); branches.push({ cond: this.expr(), body: this.block() }); continue; }
          orElse = this.block();
          break;
        }
        return { k: 'if', branches, orElse };
      }
      default: break;
    }
    this.expect(' ');
    if (argless()) this.fail();
    if (kind === 'set') return { k: 'set', cond, items: this.list(() => { const target = this.ref(); this.expect('='); return { target, e: this.expr() }; }) };
    if (kind === 'write') return { k: 'write', cond, items: this.writeItems() };
    if (kind === 'do') return { k: 'do', cond, calls: this.list(() => { const e = this.expr(); if (!['classcall', 'syscall', 'method'].includes(e.k)) this.fail(); return e; }) };
    if (kind === 'kill') return { k: 'kill', refs: this.list(() => this.ref()) };
    return { k: 'zn', e: this.expr() };
  }

  block(): Cmd[] {
    this.spaces();
    this.expect('{');
    const body = this.commands(true);
    this.expect('}');
    return body;
  }

  list<T>(item: () => T): T[] {
    const out = [item()];
    while (this.eat(',')) out.push(item());
    return out;
  }

  writeItems() {
    const items: ({ k: 'nl' } | { k: 'expr'; e: Expr })[] = [];
    do {
      let formats = 0;
      while (this.eat('!')) { items.push({ k: 'nl' }); formats++; }
      if (formats && (this.peek() === ',' || this.atEnd() || this.peek() === ' ' || this.peek() === '}')) continue;
      items.push({ k: 'expr', e: this.expr() });
    } while (this.eat(','));
    return items;
  }

  ref(): Ref {
    const e = this.atom();
    if (e.k !== 'local' && e.k !== 'global' && e.k !== 'special') this.fail();
    return e;
  }

  expr(): Expr {
    let l = this.unary();
    for (;;) {
      const op = BINARY.find((o) => this.src.startsWith(o, this.i));
      if (!op) return l;
      this.i += op.length;
      l = { k: 'bin', op, l, r: this.unary() };
    }
  }

  unary(): Expr {
    for (const op of ["'", '-', '+']) if (this.eat(op)) return { k: 'unary', op, e: this.unary() };
    return this.postfix(this.atom());
  }

  postfix(e: Expr): Expr {
    while (this.peek() === '.' && /[%A-Za-z]/.test(this.peek(1)) && ['local', 'classcall', 'syscall', 'method', 'prop'].includes(e.k)) {
      this.i++;
      const name = this.word();
      e = this.peek() === '(' ? { k: 'method', obj: e, method: name, args: this.args() } : { k: 'prop', obj: e, prop: name };
    }
    return e;
  }

  atom(): Expr {
    const c = this.peek();
    if (c === '"') return { k: 'str', v: this.string() };
    const num = /^(\d+\.?\d*|\.\d+)(E[+-]?\d+)?/i.exec(this.src.slice(this.i));
    if (num) { this.i += num[0].length; return { k: 'num', v: Number(num[0]) }; }
    if (this.eat('(')) { const e = this.expr(); this.expect(')'); return e; }
    if (this.eat('##class(')) {
      const m = /^%?[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*/.exec(this.src.slice(this.i));
      if (!m) this.fail();
      this.i += m[0].length;
      this.expect(').');
      const method = this.word();
      return { k: 'classcall', cls: m[0], method, args: this.args() };
    }
    if (this.eat('^')) {
      let ns: Expr | undefined;
      if (this.eat('|')) { ns = this.expr(); this.expect('|'); }
      const name = this.word();
      return { k: 'global', ns, name, subs: this.peek() === '(' ? this.exprList() : [] };
    }
    if (c === '$') {
      this.i++;
      if (this.peek() === '$') this.fail();
      const name = this.word().toLowerCase();
      if (name === 'system') {
        this.expect('.');
        const cls = this.word();
        this.expect('.');
        const method = this.word();
        return { k: 'syscall', cls, method, args: this.args() };
      }
      if (this.peek() === '(') {
        const fn = FUNCTIONS[name];
        if (!fn) this.fail();
        return { k: 'fn', name: fn, args: this.exprList() };
      }
      if (!SPECIALS.has(name)) this.fail();
      return { k: 'special', name };
    }
    if (/[%A-Za-z]/.test(c)) {
      const name = this.word();
      return { k: 'local', name, subs: this.peek() === '(' ? this.exprList() : [] };
    }
    return this.fail();
  }

  string(): string {
    this.expect('"');
    let out = '';
    for (;;) {
      if (this.atEnd()) this.fail();
      const ch = this.src[this.i++];
      if (ch !== '"') { out += ch; continue; }
      if (this.peek() === '"') { out += '"'; this.i++; continue; }
      return out;
    }
  }

  exprList(): Expr[] {
    return this.args().map((a) => { if (a.k !== 'expr') this.fail(); return a.e; });
  }

  args(): Arg[] {
    this.expect('(');
    const out: Arg[] = [];
    this.spaces();
    if (this.eat(')')) return out;
    for (;;) {
      this.spaces();
      if (this.peek() === ',' || this.peek() === ')') out.push({ k: 'omitted' });
      else if (this.peek() === '.' && /[%A-Za-z]/.test(this.peek(1))) { this.i++; out.push({ k: 'ref', name: this.word() }); }
      else out.push({ k: 'expr', e: this.expr() });
      this.spaces();
      if (this.eat(')')) return out;
      this.expect(',');
    }
  }
}
