/**
 * The runbooks as the CLI sees them: name, title, input schema and example input.
 * Imports only the schemas, never workflow code.
 */
import type { z } from 'zod';
import { snapshotInput, syncSetupInput } from './dhis2/schema';
import { migrateFirelyServerInput } from './firely/schema';
import { createMirroredNamespaceInput, mirrorHssysInput, switchIrisMirrorInput } from './iris/schema';
import { promoteStandbyInput, setupStandbyInput } from './postgres/schema';

export interface CatalogEntry {
  /** The workflow type. */
  name: string;
  title: string;
  schema: z.ZodObject;
  /** The example input, relative to the repository root. */
  example: string;
}

export const catalog: CatalogEntry[] = [
  { name: 'setupPostgresStandby', title: 'Set up a PostgreSQL streaming standby (OpenELIS)', schema: setupStandbyInput, example: 'examples/setupPostgresStandby.json' },
  { name: 'promotePostgresStandby', title: 'Promote a PostgreSQL standby: switchover or failover, fenced (OpenELIS)', schema: promoteStandbyInput, example: 'examples/promotePostgresStandby.json' },
  { name: 'orgUnitSyncSetup', title: 'Set up change capture of DHIS2 org units (logical replication)', schema: syncSetupInput, example: 'examples/orgUnitSyncSetup.json' },
  { name: 'mirrorHssys', title: 'Mirror HSSYS across a Health Connect mirror pair', schema: mirrorHssysInput, example: 'examples/mirrorHssys.json' },
  { name: 'createMirroredNamespace', title: 'Create a mirrored Foundation namespace on Health Connect', schema: createMirroredNamespaceInput, example: 'examples/createMirroredNamespace.json' },
  { name: 'switchIrisMirror', title: 'Switch a Health Connect mirror over to its backup (planned)', schema: switchIrisMirrorInput, example: 'examples/switchIrisMirror.json' },
  { name: 'migrateFirelyServer', title: 'Migrate Firely Server to a new instance and database with zero downtime', schema: migrateFirelyServerInput, example: 'examples/migrateFirelyServer.json' },
  { name: 'orgUnitSnapshot', title: 'Copy every org unit, group and group set from the source DHIS2 to a target', schema: snapshotInput, example: 'examples/orgUnitSnapshot.json' },
];
