/**
 * Fault knobs, set by tests in <home>/faults.json (or with `iris-sim fault ...`), consumed by the
 * simulator under the instance lock so a "once" fault fires exactly once.
 *
 *   dismountInUse: { "HSSYS": 2 }   the next 2 dismounts of HSSYS are refused: database in use
 *   catchupFails: 1                 the next CatchupDB fails (errsfns lists the SFNs)
 *   corruptCopy: 1                  the next %File.CopyFile of an IRIS.DAT writes a damaged copy,
 *                                   and `iris-sim corrupt-if-armed <file>` damages a file a lab's
 *                                   copy step (cp, docker cp, scp shim) hands it
 *   prefixedMirroredDatabaseList: true   SYS.Mirror:MirroredDatabaseList names its rows
 *                                   `:mirror:<MIRROR>:<DB>` (the form the shared reference notes
 *                                   report) instead of the bare name (the form a live write-up shows);
 *                                   not a counted fault: it stays until unset
 * A member that is down (crashed, no failover) and swapped roles are states, not knobs:
 * `iris-sim fault down <home>` and `iris-sim fault swap-roles <primaryHome>` (see admin.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from './state';

export interface Faults { dismountInUse?: Record<string, number>; catchupFails?: number; corruptCopy?: number; prefixedMirroredDatabaseList?: boolean }

const file = (home: string) => path.join(home, 'faults.json');
export const loadFaults = (home: string): Faults => (existsSync(file(home)) ? JSON.parse(readFileSync(file(home), 'utf8')) : {});
export const saveFaults = (home: string, f: Faults) => writeJsonAtomic(file(home), f);

/** Takes one shot of a counted fault; true if it fires. Call only with the home's lock held. */
export function takeFault(home: string, pick: (f: Faults) => { get: () => number | undefined; set: (n: number) => void }): boolean {
  const f = loadFaults(home);
  const knob = pick(f);
  const n = knob.get() ?? 0;
  if (n <= 0) return false;
  knob.set(n - 1);
  saveFaults(home, f);
  return true;
}

export const takeDismountInUse = (home: string, db: string) =>
  takeFault(home, (f) => ({ get: () => f.dismountInUse?.[db], set: (n) => { f.dismountInUse = { ...f.dismountInUse, [db]: n }; } }));
export const takeCatchupFails = (home: string) => takeFault(home, (f) => ({ get: () => f.catchupFails, set: (n) => { f.catchupFails = n; } }));
export const takeCorruptCopy = (home: string) => takeFault(home, (f) => ({ get: () => f.corruptCopy, set: (n) => { f.corruptCopy = n; } }));
