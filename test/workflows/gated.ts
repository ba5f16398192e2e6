/** A two-step runbook with a take-down step and a gate: the kit's test subject. */
import { defineRunbook } from '../../workflows/kit/runbook';
import { approvalFailure } from '../../workflows/kit/approval';
import { runbookActivities } from '../../workflows/kit/activities';
import type { FakeTargetActivities } from '../support/fake-target';
import { gatedInput } from './schemas';

const target = runbookActivities<FakeTargetActivities>('act', { startToCloseTimeout: '1m', heartbeatTimeout: '2s', retry: { initialInterval: '200ms', maximumAttempts: 3 } });

export const gatedRunbook = defineRunbook({
  name: 'gatedRunbook',
  title: 'Test runbook with a gate',
  schema: gatedInput,
  steps: {
    preflight: 'Check the target',
    takeDown: 'Take the service down',
    cutover: 'Switch over',
    finish: 'Bring the service back',
  },
}, async (rb, input) => {
  const { journal, dryRun } = input;
  await rb.step('preflight', () => target.check({ journal }));
  await rb.step('takeDown', async (step) => {
    step.undo('Bring the service back up', () => target.change({ journal, action: 'bring up (compensation)' }));
    return target.change({ journal, action: 'take down', dryRun, workMs: input.slowTakeDownMs });
  });
  const gate = await rb.step('cutover', async (step) => {
    const result = await rb.approval('cutover', { summary: 'Switch the service over', ...input.gate });
    if (result.outcome === 'rejected') throw approvalFailure(result);
    if (result.outcome === 'approved') step.report(await target.change({ journal, action: 'switch over', dryRun }));
    return result;
  });
  if (gate.outcome === 'timedOut') {
    await rb.rollBack('nobody approved the cutover in time');
    return { outcome: 'rolledBack' };
  }
  await rb.step('finish', async () => {
    if (input.failAfterGate) await target.breakDown({ what: 'bringing the service back' });
    return target.change({ journal, action: 'bring up', dryRun });
  });
  return { outcome: 'done' };
});
