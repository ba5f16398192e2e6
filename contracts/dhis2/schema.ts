/** Inputs of the DHIS2 org-unit sync runbooks (set-up of change capture, snapshot of a target). */
import { z } from 'zod';
import { approvalPolicy, defaultApprovalPolicy, runbookInputFields, secretRef, sqlIdentifier } from '../input';


export const sourceDatabase = z.strictObject({
  host: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/, 'a host name or an IP address'),
  port: z.number().int().min(1).max(65535).default(5432),
  database: z.string().min(1).max(63).describe('The DHIS2 database, e.g. "dhis2"'),
  user: z.string().min(1).max(63).default('postgres').describe('A superuser (ALTER SYSTEM, REPLICA IDENTITY, publication, slot)'),
  password: secretRef,
  ssl: z.enum(['disable', 'require', 'verify-full']).default('disable'),
});
export type SourceDatabase = z.infer<typeof sourceDatabase>;

export const syncSetupInput = z.strictObject({
  ...runbookInputFields,
  database: sourceDatabase,
  capture: z.strictObject({
    user: sqlIdentifier.default('runbooks_cdc').describe('The role the change listener logs in as (LOGIN REPLICATION, SELECT on the five tables)'),
    password: secretRef,
    slot: sqlIdentifier.default('runbooks_orgunit_sync'),
    publication: sqlIdentifier.default('runbooks_orgunit_sync'),
  }),
  restartApproval: approvalPolicy.default(defaultApprovalPolicy())
    .describe('The gate that waits while someone restarts PostgreSQL to turn on wal_level=logical'),
});
export type SyncSetupInput = z.infer<typeof syncSetupInput>;

export const snapshotInput = z.strictObject({
  ...runbookInputFields,
  target: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'a target name from the worker\'s ORGUNIT_SYNC_CONFIG'),
  pageSize: z.number().int().min(1).max(1000).default(200).describe('Resources read and imported per batch'),
});
export type SnapshotInput = z.infer<typeof snapshotInput>;

/**
 * How a target's objects are matched with the source's (the reference app's `target.[n].idScheme`):
 * UID, the same uid on both sides; CODE, the same code (a target that holds the same objects under
 * its own uids). A closed set: anything else is refused naming the field.
 */
export const idSchemes = ['UID', 'CODE'] as const;
export const idScheme = z.enum(idSchemes, { error: 'UID (match objects by uid) or CODE (match objects by code)' });
export type IdScheme = z.infer<typeof idScheme>;

export const databaseLock = (db: SourceDatabase): string => `postgres:${db.host}:${db.port}/${db.database}`;
