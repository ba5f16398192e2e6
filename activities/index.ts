/**
 * Every activity the worker registers, one factory per system. Workflows import only the
 * types (`import type { Activities } from '../activities'`).
 */
import { createApprovalActivities } from './approvals';
import { createPostgresActivities } from './postgres';

export function createActivities() {
  return {
    ...createApprovalActivities(),
    ...createPostgresActivities(),
  };
}

export type Activities = ReturnType<typeof createActivities>;
