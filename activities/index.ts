/**
 * Every activity the worker registers, one factory per system. Workflows import only the
 * types (`import type { Activities } from '../activities'`).
 */
import { createApprovalActivities } from './approvals';
import { createLockActivities } from './locks';
import { createPostgresActivities } from './postgres';

export function createActivities() {
  return {
    ...createApprovalActivities(),
    ...createLockActivities(),
    ...createPostgresActivities(),
  };
}

export type Activities = ReturnType<typeof createActivities>;
