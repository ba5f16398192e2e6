/**
 * The simulator's MongoDB layout, shared by the server and the ingest tool: one collection
 * (`vonkentries` by default) holding one document per version of every resource, its tombstones,
 * and one system document. The README documents it field by field.
 *
 * FerretDB 1.24 on SQLite scans the whole table for every query, even `{ _id: value }`, and an
 * update or a replace costs two such scans, while an insert is cheap. So the hot paths are an
 * insert or a lookup by `_id`, and only a new version of an existing resource replaces a document:
 *   `Patient/abc`                       the current version (or tombstone) of Patient/abc
 *   `Patient/abc/_history/2/<lu ms>`    an earlier version, saved as historical
 * A new version first saves the current one as historical (an insert that is a no-op when done
 * before), then replaces the current document; a write cut short in between is completed by the
 * next write of that resource. There are no transactions (FerretDB has none).
 */
import type { Collection, Db, Document } from 'mongodb';

export const SYSTEM_ID = 'vonk-system';
export const DEFAULT_COLLECTION = 'vonkentries';

export type Resource = { resourceType: string; id?: string; meta?: Record<string, unknown> } & Record<string, unknown>;
export type Change = 'created' | 'updated' | 'deleted';

/** One version of one resource. `res` is null on a tombstone. */
export interface Entry {
  _id: string;
  type: string;
  res_id: string;
  ver: string;
  lu: Date;
  cur: boolean;
  deleted: boolean;
  change: Change;
  im: 'R4';
  /** When the version was written to this database, as a sequence number (what the ingest tool polls on). */
  seq: number;
  /** The search index of _tag: 'system|code' and 'code' per tag ('|code' for a tag without a system). */
  tags: string[];
  res: Resource | null;
}

/** The system document: which schema the database has, and who provisioned it. */
export interface SystemDoc { _id: typeof SYSTEM_ID; schemaVersion: number; provisionedBy: string }

export const currentId = (type: string, id: string) => `${type}/${id}`;
export const historicalId = (e: Pick<Entry, 'type' | 'res_id' | 'ver' | 'lu'>) => `${e.type}/${e.res_id}/_history/${e.ver}/${e.lu.getTime()}`;

/** The schema version a Firely Server major version uses (the simulator's own numbers: 20 + major). */
export function schemaVersionOf(serverVersion: string): number {
  const major = Number(/^(\d+)\./.exec(serverVersion)?.[1]);
  if (!Number.isInteger(major) || major < 1) throw new Error(`Not a Firely Server version: '${serverVersion}' (expected e.g. 5.11.0 or 6.1.0)`);
  return 20 + major;
}

export const entries = (db: Db, collection = DEFAULT_COLLECTION) => db.collection<Document>(collection);
const byId = (id: string) => ({ _id: id as never });

export async function readSystemDoc(col: Collection<Document>): Promise<SystemDoc | null> {
  return (await col.findOne(byId(SYSTEM_ID))) as SystemDoc | null;
}

/** Creates the indexes and the system document if missing (idempotent); returns the schema found or made. */
export async function provision(col: Collection<Document>, schemaVersion: number, by: string): Promise<number> {
  await col.createIndex({ type: 1, res_id: 1 }, { name: 'type_res_id' });
  await col.createIndex({ type: 1, cur: 1, deleted: 1 }, { name: 'type_cur_deleted' });
  await col.createIndex({ seq: 1 }, { name: 'seq' });
  await col.updateOne(byId(SYSTEM_ID), { $setOnInsert: { schemaVersion, provisionedBy: by } }, { upsert: true });
  return (await readSystemDoc(col))!.schemaVersion;
}

/**
 * A writer's sequence numbers: microseconds since the epoch, strictly increasing within the process.
 * With one writing process per database and writes in order (WriteQueue), a number is visible only
 * after every smaller one is, which is what lets the ingest tool poll with `seq > last seen`.
 */
export class SeqClock {
  private last = 0;
  next(): number {
    this.last = Math.max(Date.now() * 1000, this.last + 1);
    return this.last;
  }
}

/** FHIR's instant as Firely writes it: milliseconds and an explicit offset. */
export const fhirInstant = (d: Date) => d.toISOString().replace('Z', '+00:00');

/** The _tag tokens a resource is found by. */
export function tagTokens(res: Resource | null): string[] {
  const tags = (res?.meta as { tag?: Array<{ system?: string; code?: string }> } | undefined)?.tag ?? [];
  return tags.filter((t) => t.code).flatMap((t) => (t.system ? [`${t.system}|${t.code}`, t.code!] : [`|${t.code}`, t.code!]));
}

export async function currentEntry(col: Collection<Document>, type: string, id: string): Promise<Entry | null> {
  return (await col.findOne(byId(currentId(type, id)))) as Entry | null;
}

export async function historicalEntry(col: Collection<Document>, e: Pick<Entry, 'type' | 'res_id' | 'ver' | 'lu'>): Promise<Entry | null> {
  return (await col.findOne(byId(historicalId(e)))) as Entry | null;
}

/** All versions of a resource, newest first (a full scan: for history, not for hot paths). */
export async function versions(col: Collection<Document>, type: string, id: string): Promise<Entry[]> {
  const docs = (await col.find({ type, res_id: id }).toArray()) as unknown as Entry[];
  const seen = new Set<string>();
  // A write cut short leaves the current version also saved as historical: show it once.
  const unique = docs.sort((a, b) => Number(b.cur) - Number(a.cur)).filter((e) => !seen.has(historicalId(e)) && seen.add(historicalId(e)));
  return unique.sort((a, b) => b.lu.getTime() - a.lu.getTime() || b.seq - a.seq);
}

/** Saves a version as historical; a no-op when it is already saved. */
export async function saveHistorical(col: Collection<Document>, e: Omit<Entry, '_id' | 'cur'>): Promise<void> {
  try {
    await col.insertOne({ ...e, _id: historicalId(e) as never, cur: false });
  } catch (err) {
    if ((err as { code?: number }).code !== 11000) throw err;
  }
}

/** Inserts `e` as the current version of a resource that has none: true, or false when it has one. Costs no scan. */
export async function insertCurrent(col: Collection<Document>, e: Omit<Entry, '_id' | 'cur'>): Promise<boolean> {
  try {
    await col.insertOne({ ...e, _id: currentId(e.type, e.res_id) as never, cur: true });
    return true;
  } catch (err) {
    if ((err as { code?: number }).code !== 11000) throw err;
    return false;
  }
}

/** Makes `e` the current version: the one it replaces is saved as historical first. */
export async function makeCurrent(col: Collection<Document>, e: Omit<Entry, '_id' | 'cur'>, replacing: Entry | null): Promise<Entry> {
  const doc: Entry = { ...e, _id: currentId(e.type, e.res_id), cur: true };
  if (!replacing) {
    if (await insertCurrent(col, e)) return doc;
    replacing = await currentEntry(col, e.type, e.res_id);   // another writer got there first
  }
  if (replacing) await saveHistorical(col, replacing);
  await col.replaceOne(byId(doc._id), doc as unknown as Document, { upsert: true });
  return doc;
}

/**
 * Writes a new version as the server does: version number one above the current one, a
 * lastUpdated strictly after it (so "newer" is never a tie), the writer's next sequence number.
 * `current` is what the caller already read (null for a new resource), to spare a lookup.
 * Callers serialise writes to one database (see WriteQueue).
 */
export async function appendVersion(col: Collection<Document>, clock: SeqClock, type: string, id: string, res: Resource | null, change: Change,
  current?: Entry | null): Promise<Entry> {
  if (current === undefined) current = await currentEntry(col, type, id);
  const lu = new Date(Math.max(Date.now(), (current?.lu.getTime() ?? 0) + 1));
  const ver = String((Number(current?.ver) || 0) + 1);
  const stored = res ? { ...res, id, meta: { ...(res.meta ?? {}), versionId: ver, lastUpdated: fhirInstant(lu) } } : null;
  return makeCurrent(col, { type, res_id: id, ver, lu, deleted: res === null, change, im: 'R4', seq: clock.next(), tags: tagTokens(stored), res: stored }, current);
}

/** Runs writes one at a time, in order, so sequence numbers become visible in the order they were drawn. */
export class WriteQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(write: () => Promise<T>): Promise<T> {
    const result = this.tail.then(write);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
