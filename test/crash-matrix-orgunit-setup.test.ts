/**
 * The crash matrix of orgUnitSyncSetup: the worker SIGKILLed at every activity boundary of a
 * set-up of change capture on a fresh DHIS2 database; a new worker finishes it, and the
 * database ends ready for the listener with nothing done twice.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import type { Client } from '@temporalio/client';
import { createSchema } from './sims/dhis2/schema';
import { startLocalPostgres, type LocalPostgres } from './lab/local-postgres';
import { expectCrashMatrixPasses, type CrashScenario } from './support/crash-matrix';
import { testClient } from './support/processes';
import { approveUntilDone } from './support/runs';

let pg: LocalPostgres;
let client: Client;
const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'crash-orgunit-secrets-'));
let worlds = 0;

beforeAll(async () => {
  pg = await startLocalPostgres({ walLevel: 'logical' });
  client = await testClient();
  writeFileSync(path.join(secretsDir, 'dhis2-db-admin'), pg.password, { mode: 0o600 });
  writeFileSync(path.join(secretsDir, 'dhis2-cdc'), 'cdc-crash-matrix-password', { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await client?.connection.close();
  pg?.stop();
  rmSync(secretsDir, { recursive: true, force: true });
});

interface World { database: string; name: string }

const scenario = (): CrashScenario<World> => ({
  name: 'orgunit-setup', workflowType: 'orgUnitSyncSetup', workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
  async prepare() {
    // Slots and roles are cluster-wide: each world has its own.
    const name = `w${++worlds}_${process.pid}`;
    const database = `dhis2_${name}`;
    await pg.createDatabase(database);
    const pool = new Pool({ host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database });
    await createSchema(pool);
    await pool.end();
    return {
      world: { database, name },
      input: {
        database: { host: pg.host, port: pg.port, database, user: 'postgres', password: { secret: 'dhis2-db-admin' } },
        capture: { user: `cdc_${name}`, password: { secret: 'dhis2-cdc' }, slot: `slot_${name}`, publication: 'runbooks_orgunit_sync' },
      },
      cleanup: async () => {
        await pg.sql('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [`slot_${name}`]).catch(() => undefined);
      },
    };
  },
  drive: approveUntilDone,
  async check(world) {
    const slots = await pg.sql<{ plugin: string; database: string }>('SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1', [`slot_${world.name}`]);
    if (slots.length !== 1 || slots[0].plugin !== 'pgoutput' || slots[0].database !== world.database) throw new Error(`slot: ${JSON.stringify(slots)}`);
    const tables = await pg.sql<{ tablename: string }>("SELECT tablename FROM pg_publication_tables WHERE pubname = 'runbooks_orgunit_sync' ORDER BY 1", [], world.database);
    if (tables.length !== 5) throw new Error(`publication tables: ${tables.map((t) => t.tablename).join(', ')}`);
    const identity = await pg.sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('organisationunit','orgunitgroup','orgunitgroupset','orgunitgroupmembers','orgunitgroupsetmembers') AND relreplident = 'f'", [], world.database);
    if (identity[0].n !== 5) throw new Error(`${identity[0].n} of 5 tables have REPLICA IDENTITY FULL`);
    const role = await pg.sql<{ ok: boolean }>('SELECT rolreplication AND rolcanlogin AS ok FROM pg_roles WHERE rolname = $1', [`cdc_${world.name}`]);
    if (!role[0]?.ok) throw new Error('the capture role cannot log in for replication');
  },
});

test('orgUnitSyncSetup survives a worker killed at every activity boundary', async () => {
  await expectCrashMatrixPasses(client, scenario(), ['inspectSyncSource', 'ensureCaptureRole', 'ensureSlot', 'verifyCaptureLogin']);
}, 10 * 60_000);
