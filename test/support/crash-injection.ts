/**
 * Crash injection for the crash matrix, inside the test worker: RUNBOOKS_CRASH names one activity
 * boundary of one run, and the worker SIGKILLs itself right there, at the start of that activity
 * (the one before it has completed) or after its work is done but before its completion is
 * reported. RUNBOOKS_ACTIVITY_JOURNAL records every activity execution that finished its work.
 */
import { appendFileSync } from 'node:fs';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

export interface CrashPoint {
  workflowId: string;
  activityType: string;
  /** 1 for the first activity of that type in the run, 2 for the second, ... */
  occurrence: number;
  when: 'start' | 'end';
}

export interface JournalEntry { workflowId: string; activityId: string; activityType: string; attempt: number; pid: number }

export function crashInterceptors(): ActivityInterceptorsFactory[] {
  const point = process.env.RUNBOOKS_CRASH ? (JSON.parse(process.env.RUNBOOKS_CRASH) as CrashPoint) : undefined;
  const journal = process.env.RUNBOOKS_ACTIVITY_JOURNAL;
  if (!point && !journal) return [];
  const seen = new Map<string, string[]>(); // activity type -> activity ids in the order they started
  return [(ctx) => ({
    inbound: {
      async execute(input, next) {
        const { activityType, activityId, attempt } = ctx.info;
        const workflowId = ctx.info.workflowExecution?.workflowId ?? '';
        let hit = false;
        if (point && workflowId === point.workflowId && activityType === point.activityType) {
          const ids = seen.get(activityType) ?? [];
          if (!ids.includes(activityId)) ids.push(activityId);
          seen.set(activityType, ids);
          hit = ids.indexOf(activityId) + 1 === point.occurrence;
        }
        if (hit && point?.when === 'start') process.kill(process.pid, 'SIGKILL');
        const result = await next(input);
        if (journal) {
          const entry: JournalEntry = { workflowId, activityId, activityType, attempt, pid: process.pid };
          appendFileSync(journal, `${JSON.stringify(entry)}\n`);
        }
        if (hit && point?.when === 'end') process.kill(process.pid, 'SIGKILL');
        return result;
      },
    },
  })];
}
