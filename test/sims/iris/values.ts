/**
 * ObjectScript values as the simulator holds them, and the errors it raises.
 *
 * ObjectScript has one data type, the string, read as a number where a number is needed. The
 * simulator keeps four shapes so that a runbook's mistakes show: a list ($lb), an object
 * reference, and a %Status error (whose string form starts with "0", so `'sc` is true).
 */

export class IrisList { constructor(readonly items: (Value | undefined)[]) {} }

/** A %Status that is not OK. An OK status is the number 1, as in IRIS ($$$OK). */
export class IrisStatus {
  constructor(readonly code: number, readonly text: string) {}
  /** What $SYSTEM.Status.GetErrorText returns. */
  get errorText(): string { return `ERROR #${this.code}: ${this.text}`; }
}

/** An object reference: `1@SYS.Database` when written. */
export class IrisObject {
  private static next = 1;
  readonly oref = IrisObject.next++;
  constructor(readonly className: string, readonly props: Map<string, Value> = new Map(), readonly impl: unknown = undefined) {}
}

export type Value = string | number | IrisList | IrisStatus | IrisObject;

export const OK: Value = 1;
export const statusError = (code: number, text: string): IrisStatus => new IrisStatus(code, text);

/** A run-time error as IRIS names it: `<UNDEFINED> *x`. Ends the current line, not the session. */
export class IrisError extends Error {
  constructor(readonly errorName: string, readonly detail = '') {
    super(`<${errorName}>${detail ? ` *${detail}` : ''}`);
  }
}

export const isList = (v: Value): v is IrisList => v instanceof IrisList;

/** ObjectScript's canonical number form: 1, -2.5, .5 (no leading zero), no trailing zeros. */
export function canonicalNumber(n: number): string {
  if (!Number.isFinite(n)) throw new IrisError('MAXNUMBER');
  let s = String(n);
  if (/e/i.test(s)) s = n.toFixed(20).replace(/0+$/, '').replace(/\.$/, '');
  return s.replace(/^(-?)0\./, '$1.');
}

export function toStr(v: Value | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return canonicalNumber(v);
  if (v instanceof IrisStatus) return `0 ${v.errorText}`;
  if (v instanceof IrisObject) return `${v.oref}@${v.className}`;
  // A list is a binary string in IRIS; written out it is not readable text, and should not be parsed.
  return v.items.map((i) => `\u0002\u0001${toStr(i)}`).join('');
}

/** String to number as IRIS does it: the longest numeric prefix, else 0. */
export function toNum(v: Value | undefined): number {
  if (typeof v === 'number') return v;
  if (v instanceof IrisStatus) return 0;
  if (v instanceof IrisObject) return v.oref;
  const m = /^[+-]*(\d+\.?\d*|\.\d+)(E[+-]?\d+)?/i.exec(toStr(v));
  if (!m) return 0;
  const signs = /^[+-]*/.exec(m[0])![0];
  const neg = (signs.match(/-/g) ?? []).length % 2 === 1;
  const n = Number(m[0].slice(signs.length));
  return neg ? -n : n;
}

export const truthy = (v: Value | undefined): boolean => toNum(v) !== 0;
export const bool = (b: boolean): number => (b ? 1 : 0);

/** A local variable node: a value and/or subscripted children, like `p` and `p("Enabled")`. */
export class Node {
  value: Value | undefined;
  children = new Map<string, Node>();
  child(sub: string, create: true): Node;
  child(sub: string, create?: false): Node | undefined;
  child(sub: string, create = false): Node | undefined {
    let n = this.children.get(sub);
    if (!n && create) this.children.set(sub, (n = new Node()));
    return n;
  }
  /** $data: 0 undefined, 1 value, 10 children only, 11 both. */
  get data(): number { return (this.value !== undefined ? 1 : 0) + (this.hasDescendantValue() ? 10 : 0); }
  private hasDescendantValue(): boolean {
    for (const c of this.children.values()) if (c.value !== undefined || c.hasDescendantValue()) return true;
    return false;
  }
  /** Subscripted values one level down, as a plain record (used to read `.p` arguments). */
  subs(): Record<string, Value> {
    const out: Record<string, Value> = {};
    for (const [k, c] of this.children) if (c.value !== undefined) out[k] = c.value;
    return out;
  }
}
