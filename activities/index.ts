/**
 * Every activity the worker registers, one factory per system. Workflows import only the
 * types (`import type { Activities } from '../activities'`).
 */
import { createApprovalActivities } from './approvals';
import { createDhis2Activities } from './dhis2';
import { createFirelyActivities } from './firely';
import { createIrisActivities } from './iris';
import { createKitActivities } from './kit';
import { createPostgresActivities } from './postgres';

export function createActivities() {
  return {
    ...createApprovalActivities(),
    ...createDhis2Activities(),
    ...createFirelyActivities(),
    ...createIrisActivities(),
    ...createKitActivities(),
    ...createPostgresActivities(),
  };
}

export type Activities = ReturnType<typeof createActivities>;
