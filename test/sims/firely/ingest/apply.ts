/**
 * One source entry written to the target under --update-existing-resources, as the FSI
 * documentation describes each mode for MongoDB:
 *
 *   true             the existing resource becomes historical; the incoming one is saved as current
 *   false            the existing resource stays; the incoming one is skipped
 *   errorOnConflict  the existing resource stays; the incoming one is an error
 *   onlyIfNewer      if the existing resource's lastUpdated is greater, the incoming one is saved as
 *                    historical and the existing one stays current; otherwise as `true`
 *
 * An entry already on the target (same resource, version and lastUpdated: a batch redone after a
 * crash) is `unchanged`: written once, never twice.
 */
import type { Collection, Document } from 'mongodb';
import { currentEntry, historicalEntry, insertCurrent, makeCurrent, saveHistorical, type Entry, type SeqClock } from '../entries';
import type { UpdatePolicy } from './options';

export type Outcome = 'current' | 'historical' | 'skipped' | 'unchanged' | 'error';

export interface Applied { outcome: Outcome; message?: string }

const sameWrite = (a: Entry, b: Entry) => a.ver === b.ver && a.lu.getTime() === b.lu.getTime();

export async function applyEntry(target: Collection<Document>, clock: SeqClock, e: Entry, policy: UpdatePolicy): Promise<Applied> {
  // The target's own bookkeeping: its sequence number, its _id and current flag (set by makeCurrent / saveHistorical).
  const { _id, cur: _cur, ...version } = e;
  const copy = { ...version, seq: clock.next() };
  // Most entries of a migration are a resource's first version on the target: one insert, no lookup.
  if (await insertCurrent(target, copy)) return { outcome: 'current' };
  const current = await currentEntry(target, e.type, e.res_id);
  // A historical version is never newer than the current one, so only an older entry can already be there as one.
  if (current && (sameWrite(current, e) || (current.lu >= e.lu && (await historicalEntry(target, e))))) return { outcome: 'unchanged' };
  if (current) {
    if (policy === 'false') return { outcome: 'skipped' };
    if (policy === 'errorOnConflict') {
      return { outcome: 'error', message: `Resource ${e.type}/${e.res_id} already exists in the target database (version ${current.ver}); incoming version ${e.ver} not saved` };
    }
    if (policy === 'onlyIfNewer' && current.lu > e.lu) {
      await saveHistorical(target, copy);
      return { outcome: 'historical' };
    }
  }
  await makeCurrent(target, copy, current);
  return { outcome: 'current' };
}
