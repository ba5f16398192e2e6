/**
 * The classes the simulator implements, exactly those the reference notes list. Method names are
 * case-sensitive as in IRIS; anything else is <CLASS DOES NOT EXIST> / <METHOD DOES NOT EXIST>.
 */
import { HS_CLASSES } from './classes-hs';
import { SYS_CLASSES, SYSTEM } from './classes-sys';
import type { CallArg } from './interpreter';
import type { Session } from './session';
import type { IrisObject, Value } from './values';

export type Method = (s: Session, args: CallArg[], self?: IrisObject) => Value | undefined;
export interface ClassDef {
  /** Where the class is visible: %SYS only, interoperability namespaces (HSLIB, Foundation), or anywhere. */
  where: '%SYS' | 'interop' | 'anywhere';
  classMethods?: Record<string, Method>;
  instanceMethods?: Record<string, Method>;
}

export const CLASSES: Record<string, ClassDef> = { ...SYS_CLASSES, ...HS_CLASSES };
export const SYSTEM_CLASSES: Record<string, Record<string, Method>> = SYSTEM;
