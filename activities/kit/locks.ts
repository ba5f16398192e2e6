/** Who holds a runbook lock: the run that started the lock workflow (its parent). */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';

export function createLockActivities() {
  return {
    async describeLockHolder(req: { workflowId: string }): Promise<{ workflowId: string; runId: string } | undefined> {
      try {
        const d = await Context.current().client.workflow.getHandle(req.workflowId).describe();
        if (d.status.name !== 'RUNNING' || !d.parentExecution) return undefined;
        return { workflowId: d.parentExecution.workflowId ?? '', runId: d.parentExecution.runId ?? '' };
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return undefined;
        throw err;
      }
    },
  };
}
export type LockActivities = ReturnType<typeof createLockActivities>;
