/**
 * Every runbook the worker runs. The export name is the workflow type used by the UI,
 * the CLI and `temporal workflow start --type`.
 */
export { setupPostgresStandby } from './postgres/setup-standby';
export { promotePostgresStandby } from './postgres/promote-standby';
export { orgUnitSyncSetup } from './dhis2/sync-setup';
export { orgUnitSnapshot } from './dhis2/snapshot';
export { mirrorHssys } from './iris/mirror-hssys';
export { createMirroredNamespace } from './iris/create-namespace';
export { switchIrisMirror } from './iris/switch-mirror';
export { migrateFirelyServer } from './firely/migrate';
/** Keeps one DHIS2 resource in step on one target (started by the org-unit change listener). */
export { orgUnitSync } from './dhis2/sync-resource';
export { orgUnitBatch } from './dhis2/batch';
/** The kit's lock: one run at a time per target (started by the runbooks themselves, not by people). */
export { runbookLock } from './kit/lock';
