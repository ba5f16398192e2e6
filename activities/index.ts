/**
 * Every activity the worker registers, one factory per system. Workflows import only the
 * types (`import type { Activities } from '../activities'`).
 */
import { createApprovalActivities } from './approvals';

export function createActivities() {
  return {
    ...createApprovalActivities(),
  };
}

export type Activities = ReturnType<typeof createActivities>;
