/** Reading a method's arguments the way IRIS does (omitted = the formal's default). */
import type { CallArg } from './interpreter';
import { IrisError, IrisList, Node, toNum, toStr, type Value } from './values';

export function arity(args: CallArg[], max: number): void {
  if (args.length > max) throw new IrisError('PARAMETER');
}
export const value = (args: CallArg[], i: number): Value | undefined => {
  const a = args[i];
  if (!a || a.k === 'omitted') return undefined;
  if (a.k === 'ref') return a.node.value;
  return a.v;
};
export const str = (args: CallArg[], i: number, dflt = '') => { const v = value(args, i); return v === undefined ? dflt : toStr(v); };
export const num = (args: CallArg[], i: number, dflt = 0) => { const v = value(args, i); return v === undefined ? dflt : toNum(v); };
/** An output argument: IRIS sets it only when the caller passed it by reference (.name). */
export const out = (args: CallArg[], i: number): Node => {
  const a = args[i];
  return a?.k === 'ref' ? a.node : new Node();
};
/** A by-reference input array (.p): its first-level subscripts. */
export const array = (args: CallArg[], i: number): Record<string, Value> => {
  const a = args[i];
  return a?.k === 'ref' ? a.node.subs() : {};
};
export const list = (args: CallArg[], i: number): Value[] => {
  const v = value(args, i);
  if (v === undefined || v === '') return [];
  if (!(v instanceof IrisList)) throw new IrisError('LIST', toStr(v));
  return v.items.map((x) => x ?? '');
};
