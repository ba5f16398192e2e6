/**
 * The two MongoDB databases, asked by the worker with the official driver: both answer, and the
 * target is empty for a fresh migration (entries there with an empty journal would mean a
 * migration that ran before, whose journal is gone). Sharding the target's entries collection.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MongoClient } from 'mongodb';
import type { ChangeReport } from '../../contracts/messages';
import type { MigrateFirelyServerInput } from '../../contracts/firely/schema';
import { refuse } from '../../contracts/refuse';

type Database = MigrateFirelyServerInput['oldServer']['database'];
/** Where a connection string points, for messages (never its options). */
const where = (db: Database) => `${db.connectionString.replace(/\?.*$/, '')} (${db.collection})`;

async function withDatabase<T>(db: Database, fn: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(db.connectionString, { serverSelectionTimeoutMS: 10_000, connectTimeoutMS: 10_000, socketTimeoutMS: 60_000 });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Entries of resources (every version; res_id is in Firely's documented shard key), the system document left out. */
const resources = (client: MongoClient, db: Database) =>
  client.db().collection(db.collection).countDocuments({ res_id: { $exists: true } }, { maxTimeMS: 60_000 });

/** Both databases answer; the target holds no resources unless this run is resuming. */
export async function checkDatabases(r: { source: Database; target: Database; resuming: boolean }): Promise<{ sourceResources: number; targetResources: number }> {
  const ask = async (db: Database, role: string) => {
    try {
      return await withDatabase(db, async (c) => { await c.db().command({ ping: 1 }); return resources(c, db); });
    } catch (err) {
      throw refuse(`The ${role} database ${where(db)} does not answer: ${(err as Error).message}.`);
    }
  };
  const [sourceResources, targetResources] = [await ask(r.source, 'old (source)'), await ask(r.target, 'new (target)')];
  if (!r.resuming && targetResources > 0) {
    throw refuse(`The target database ${where(r.target)} already holds ${targetResources} resource entries but the recovery journal is empty: ` +
      'a fresh migration needs an empty target (wipe it, as the journal was), or resume with the journal of that migration.');
  }
  return { sourceResources, targetResources };
}

/** Shards the target's entries collection with Firely's documented key, unless it is sharded. */
export async function shardTarget(r: { target: Database; dryRun: boolean }): Promise<ChangeReport> {
  const key = { im: 1, type: 1, res_id: 'hashed' };
  if (r.dryRun) return { changed: false, actions: [`would shard ${where(r.target)} with the key ${JSON.stringify(key)}`] };
  return withDatabase(r.target, async (c) => {
    const name = `${c.db().databaseName}.${r.target.collection}`;
    try {
      await c.db('admin').command({ enableSharding: c.db().databaseName });
      await c.db('admin').command({ shardCollection: name, key });
    } catch (err) {
      if (/already sharded/i.test((err as Error).message)) return { changed: false, actions: [] };
      throw ApplicationFailure.nonRetryable(`Sharding ${name} failed: ${(err as Error).message}. Is the target a sharded cluster reached through mongos?`, 'ShardingFailed');
    }
    return { changed: true, actions: [`sharded ${name} with the key ${JSON.stringify(key)}`] };
  });
}
