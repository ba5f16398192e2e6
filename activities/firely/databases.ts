/**
 * The two MongoDB databases, asked by the worker with the official driver: both answer, and the
 * target is empty for a fresh migration (entries there with an empty journal would mean a
 * migration that ran before, whose journal is gone). Sharding the target's entries collection.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MongoClient } from 'mongodb';
import type { ChangeReport } from '../../contracts/messages';
import { endpointOf, endpointRefused, parseMongoConnectionString, type MongoEndpoint } from '../../contracts/endpoints';
import type { MigrateFirelyServerInput } from '../../contracts/firely/schema';
import { refuse } from '../../contracts/refuse';

type Database = MigrateFirelyServerInput['oldServer']['database'];

/**
 * The connection string parsed again before the driver or the ingest tool sees it: a run started
 * before the input schema refused authentication options carries one nobody checked.
 */
export const mongoEndpointOf = (db: Database): MongoEndpoint => endpointOf(parseMongoConnectionString, db.connectionString, 'The MongoDB connection string');

/** Where a connection string points, for messages (never its options). */
function where(db: Database): string {
  const e = mongoEndpointOf(db);
  const hosts = e.hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}${e.srv ? '' : `:${h.port}`}`);
  return `${e.srv ? 'mongodb+srv' : 'mongodb'}://${hosts.join(',')}/${e.database} (${db.collection})`;
}

/**
 * The driver parses the string when the client is made and connects only later: between the two,
 * its own reading must match ours (the same hosts and database, no credential, no file), so no
 * difference between the two parsers can send anything anywhere.
 */
function driverReadsTheSame(client: MongoClient, e: MongoEndpoint, db: Database): void {
  const o = client.options;
  const read = e.srv ? [o.srvHost ?? ''] : o.hosts.map((h) => `${(h.host ?? h.socketPath ?? '').toLowerCase()}:${h.port}`);
  const ours = e.srv ? e.hosts.map((h) => h.host) : e.hosts.map((h) => `${h.host}:${h.port}`);
  const files = [o.tlsCAFile, o.tlsCertificateKeyFile, o.tlsCRLFile].filter(Boolean);
  if (o.credentials || files.length || o.dbName !== e.database || read.join(',') !== ours.join(',')) {
    throw endpointRefused('The MongoDB connection string', db.connectionString, `the MongoDB driver reads it differently (hosts ${read.join(',')}, ` +
      `database ${o.dbName}${o.credentials ? ', with a credential' : ''}${files.length ? ', with files' : ''})`);
  }
}

async function withDatabase<T>(db: Database, fn: (client: MongoClient) => Promise<T>): Promise<T> {
  const endpoint = mongoEndpointOf(db);
  const client = new MongoClient(db.connectionString, { serverSelectionTimeoutMS: 10_000, connectTimeoutMS: 10_000, socketTimeoutMS: 60_000 });
  try {
    driverReadsTheSame(client, endpoint, db);
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
  [r.source, r.target].forEach(mongoEndpointOf);
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
