/**
 * What builds A and B of the deploy test share: the fake target, the entity's messages, and a
 * journal line that names the build that ran the step (the activity adds the worker's pid).
 */
import { condition, defineSignal, setHandler } from '@temporalio/workflow';
import { runbookActivities } from '../../../workflows/kit/activities';
import type { FakeTargetActivities } from '../../support/fake-target';

export const target = runbookActivities<FakeTargetActivities>('act', { startToCloseTimeout: '1m', retry: { initialInterval: '200ms', maximumAttempts: 3 } });

export const entityChangeSignal = defineSignal<[string]>('entityChange');
export const entityRolloverSignal = defineSignal('entityRollover');

export interface EntityArgs { journal: string; generation?: number }

/** The entity's inbox: changes in order; a rollover request makes it continue as new. */
export function entityInbox(): { next(): Promise<string | 'rollover'> } {
  const changes: string[] = [];
  let rollover = false;
  setHandler(entityChangeSignal, (change) => { changes.push(change); });
  setHandler(entityRolloverSignal, () => { rollover = true; });
  return {
    async next() {
      await condition(() => changes.length > 0 || rollover);
      return changes.shift() ?? 'rollover';
    },
  };
}

