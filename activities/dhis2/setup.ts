/**
 * Change capture on the source DHIS2 database, each piece observed first and changed only when
 * it differs: wal_level, the listener's role, REPLICA IDENTITY FULL, the publication, the slot.
 * In a dry-run the SQL that would run is reported instead (passwords never appear in it).
 */
import { ApplicationFailure } from '@temporalio/common';
import { Client, escapeIdentifier as id, escapeLiteral as lit } from 'pg';
import type { ChangeReport } from '../../contracts/messages';
import type { SecretRef } from '../../contracts/input';
import { captureTables } from '../../contracts/dhis2/resources';
import type { SourceDatabase } from '../../contracts/dhis2/schema';
import { whileHeartbeating } from '../lib/heartbeat';
import { scramMatches, scramVerifier } from '../lib/scram';
import { resolveSecret } from '../lib/secrets';

export interface CaptureNames { user: string; password: SecretRef; slot: string; publication: string }

const sslOf = (ssl: SourceDatabase['ssl']) => (ssl === 'disable' ? undefined : { rejectUnauthorized: ssl === 'verify-full' });

async function withDatabase<T>(db: SourceDatabase, fn: (c: Client) => Promise<T>): Promise<T> {
  const password = resolveSecret(db.password.secret, { host: db.host, purpose: 'db-password' });
  const client = new Client({
    host: db.host, port: db.port, database: db.database, user: db.user, password, ssl: sslOf(db.ssl),
    connectionTimeoutMillis: 15_000, statement_timeout: 60_000, application_name: 'runbooks-orgunit-setup',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw ApplicationFailure.retryable(`Cannot connect to ${db.host}:${db.port}/${db.database} as ${db.user}: ${(err as Error).message}`, 'SourceUnavailable');
  }
  try { return await whileHeartbeating(() => fn(client)); } finally { await client.end().catch(() => undefined); }
}

/** Runs the statements (or, in a dry-run, only reports them). */
async function apply(c: Client, statements: Array<{ sql: string; shown?: string }>, dryRun: boolean): Promise<ChangeReport> {
  if (!dryRun) for (const s of statements) await c.query(s.sql);
  const shown = statements.map((s) => s.shown ?? s.sql);
  return { changed: statements.length > 0 && !dryRun, actions: dryRun ? shown.map((s) => `would run: ${s}`) : shown };
}

export interface SourceFacts { serverVersion: number; walLevel: string; pendingWalLevel?: string; superuser: boolean; missingTables: string[] }

export async function inspectSyncSource(req: { database: SourceDatabase }): Promise<SourceFacts> {
  return withDatabase(req.database, async (c) => {
    const facts = (await c.query(`SELECT current_setting('server_version_num')::int AS version, current_setting('wal_level') AS wal,
      (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
      (SELECT setting FROM pg_file_settings WHERE name = 'wal_level' AND applied IS NOT NULL ORDER BY seqno DESC LIMIT 1) AS pending`)).rows[0];
    const present = (await c.query('SELECT relname FROM pg_class WHERE relkind = \'r\' AND relnamespace = \'public\'::regnamespace AND relname = ANY($1)', [captureTables])).rows.map((r) => r.relname as string);
    const missingTables = captureTables.filter((t) => !present.includes(t));
    if (facts.version < 100000) throw ApplicationFailure.nonRetryable(`${req.database.host} runs PostgreSQL ${facts.version}: logical replication with pgoutput needs 10 or later`, 'SourceUnsupported');
    if (!facts.superuser) throw ApplicationFailure.nonRetryable(`${req.database.user} is not a superuser on ${req.database.host}: the set-up needs one (ALTER SYSTEM, publication, slot). Nothing was changed.`, 'SourcePrivileges');
    if (missingTables.length) throw ApplicationFailure.nonRetryable(`${req.database.database} on ${req.database.host} has no table ${missingTables.join(', ')}: is it a DHIS2 database? Nothing was changed.`, 'SourceNotDhis2');
    return { serverVersion: facts.version, walLevel: facts.wal, pendingWalLevel: facts.pending ?? undefined, superuser: facts.superuser, missingTables };
  });
}

/** wal_level=logical in postgresql.auto.conf; it takes effect only after a restart. */
export async function setLogicalWal(req: { database: SourceDatabase; dryRun: boolean }): Promise<ChangeReport & { restartNeeded: boolean }> {
  return withDatabase(req.database, async (c) => {
    const now = (await c.query('SHOW wal_level')).rows[0].wal_level as string;
    if (now === 'logical') return { changed: false, actions: [], restartNeeded: false };
    const pending = (await c.query('SELECT setting FROM pg_file_settings WHERE name = \'wal_level\' ORDER BY seqno DESC LIMIT 1')).rows[0]?.setting;
    const report = pending === 'logical' ? { changed: false, actions: [] } : await apply(c, [{ sql: 'ALTER SYSTEM SET wal_level = \'logical\'' }], req.dryRun);
    return { ...report, restartNeeded: true };
  });
}

export async function checkLogicalWal(req: { database: SourceDatabase }): Promise<void> {
  const now = await withDatabase(req.database, async (c) => (await c.query('SHOW wal_level')).rows[0].wal_level as string);
  if (now !== 'logical') {
    throw ApplicationFailure.nonRetryable(`wal_level on ${req.database.host} is still "${now}": PostgreSQL was not restarted since it was set to logical. Restart it, then run orgUnitSyncSetup again.`, 'RestartNeeded');
  }
}

/** The listener's role: LOGIN REPLICATION with the secret's password (as a SCRAM verifier), and SELECT on the five tables. */
export async function ensureCaptureRole(req: { database: SourceDatabase; capture: CaptureNames; dryRun: boolean }): Promise<ChangeReport> {
  const password = resolveSecret(req.capture.password.secret, { host: req.database.host, purpose: 'replication-password' });
  return withDatabase(req.database, async (c) => {
    const user = req.capture.user;
    const role = (await c.query('SELECT rolreplication, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1', [user])).rows[0];
    const statements: Array<{ sql: string; shown?: string }> = [];
    if (!(role && role.rolreplication && role.rolcanlogin && scramMatches(role.rolpassword, password))) {
      const verb = role ? 'ALTER' : 'CREATE';
      statements.push({ sql: `${verb} ROLE ${id(user)} WITH LOGIN REPLICATION PASSWORD ${lit(scramVerifier(password))}`, shown: `${verb} ROLE ${id(user)} WITH LOGIN REPLICATION PASSWORD '<SCRAM verifier of secret "${req.capture.password.secret}">'` });
    }
    const granted = role ? (await c.query('SELECT relname FROM pg_class WHERE relnamespace = \'public\'::regnamespace AND relname = ANY($1) AND has_table_privilege($2, oid, \'SELECT\')', [captureTables, user])).rows.map((r) => r.relname) : [];
    const missing = captureTables.filter((t) => !granted.includes(t));
    if (!role || !(await c.query('SELECT has_schema_privilege($1, \'public\', \'USAGE\') AS ok', [user])).rows[0].ok) statements.push({ sql: `GRANT USAGE ON SCHEMA public TO ${id(user)}` });
    if (missing.length) statements.push({ sql: `GRANT SELECT ON ${missing.map((t) => `public.${id(t)}`).join(', ')} TO ${id(user)}` });
    return apply(c, statements, req.dryRun);
  });
}

/** REPLICA IDENTITY FULL: deletes and updates carry the whole old row (its uid, its group). */
export async function ensureReplicaIdentity(req: { database: SourceDatabase; dryRun: boolean }): Promise<ChangeReport> {
  return withDatabase(req.database, async (c) => {
    const rows = (await c.query('SELECT relname, relreplident FROM pg_class WHERE relnamespace = \'public\'::regnamespace AND relname = ANY($1)', [captureTables])).rows;
    const statements = rows.filter((r) => r.relreplident !== 'f').map((r) => ({ sql: `ALTER TABLE public.${id(r.relname)} REPLICA IDENTITY FULL` }));
    return apply(c, statements, req.dryRun);
  });
}

/** The publication of exactly the five tables, publishing inserts, updates and deletes. */
export async function ensurePublication(req: { database: SourceDatabase; publication: string; dryRun: boolean }): Promise<ChangeReport> {
  return withDatabase(req.database, async (c) => {
    const pub = (await c.query('SELECT puballtables, pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1', [req.publication])).rows[0];
    const tableList = captureTables.map((t) => `public.${id(t)}`).join(', ');
    const name = id(req.publication);
    if (!pub) return apply(c, [{ sql: `CREATE PUBLICATION ${name} FOR TABLE ${tableList} WITH (publish = 'insert, update, delete')` }], req.dryRun);
    const statements: Array<{ sql: string }> = [];
    if (pub.puballtables) {
      throw ApplicationFailure.nonRetryable(`Publication ${req.publication} publishes ALL TABLES: it is not ours to change. Name another publication in the input. Nothing was changed.`, 'PublicationConflict');
    }
    const tables = (await c.query('SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = \'public\'', [req.publication])).rows.map((r) => r.tablename as string).sort();
    if (tables.join(',') !== [...captureTables].sort().join(',')) statements.push({ sql: `ALTER PUBLICATION ${name} SET TABLE ${tableList}` });
    if (!(pub.pubinsert && pub.pubupdate && pub.pubdelete)) statements.push({ sql: `ALTER PUBLICATION ${name} SET (publish = 'insert, update, delete')` });
    return apply(c, statements, req.dryRun);
  });
}

/** The logical slot (pgoutput) the listener reads; from its creation on, the source keeps WAL for it. */
export async function ensureSlot(req: { database: SourceDatabase; slot: string; dryRun: boolean }): Promise<ChangeReport> {
  return withDatabase(req.database, async (c) => {
    const slot = (await c.query('SELECT slot_type, plugin, database FROM pg_replication_slots WHERE slot_name = $1', [req.slot])).rows[0];
    if (slot) {
      if (slot.slot_type !== 'logical' || slot.plugin !== 'pgoutput' || slot.database !== req.database.database) {
        throw ApplicationFailure.nonRetryable(`Slot ${req.slot} exists but is ${slot.slot_type}${slot.plugin ? ` (${slot.plugin})` : ''} on database ${slot.database ?? '-'}, ` +
          `not a pgoutput slot on ${req.database.database}: name another slot in the input, or drop it if it is unused. Nothing was changed.`, 'SlotConflict');
      }
      return { changed: false, actions: [] };
    }
    return apply(c, [{ sql: `SELECT pg_create_logical_replication_slot(${lit(req.slot)}, 'pgoutput')` }], req.dryRun);
  });
}

/** Logs in as the listener will (a replication connection) and reads what it needs. */
export function verifyCaptureLogin(req: { database: SourceDatabase; capture: CaptureNames }): Promise<{ systemId: string; slotActive: boolean }> {
  return whileHeartbeating(() => loginAsListener(req));
}

async function loginAsListener(req: { database: SourceDatabase; capture: CaptureNames }): Promise<{ systemId: string; slotActive: boolean }> {
  const password = resolveSecret(req.capture.password.secret, { host: req.database.host, purpose: 'replication-password' });
  const { host, port, database, ssl } = req.database;
  const client = new Client({ host, port, database, user: req.capture.user, password, ssl: sslOf(ssl), connectionTimeoutMillis: 15_000, replication: 'database' } as ConstructorParameters<typeof Client>[0]);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`${req.capture.user} cannot open a replication connection to ${host}:${port}/${database}: ${(err as Error).message}. ` +
      `If pg_hba.conf refuses it, allow "host ${database} ${req.capture.user} <listener address>/32 scram-sha-256".`, 'CaptureLoginRefused');
  }
  try {
    const system = (await client.query('IDENTIFY_SYSTEM')).rows[0];
    const slot = (await client.query(`SELECT active FROM pg_replication_slots WHERE slot_name = ${lit(req.capture.slot)}`)).rows[0];
    await client.query('SELECT count(*) FROM public.organisationunit');
    return { systemId: String(system.systemid), slotActive: Boolean(slot?.active) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
