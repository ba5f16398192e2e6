/** Build A of the deploy test: a runbook with a gate, and a long-lived entity (auto-upgrading). */
import { continueAsNew, setWorkflowOptions } from '@temporalio/workflow';
import { defineRunbook } from '../../../workflows/kit/runbook';
import { gatedInput } from '../schemas';
import { entityInbox, target, type EntityArgs } from './common';

export const deployDrill = defineRunbook({
  name: 'deployDrill',
  title: 'Deploy drill (build A)',
  schema: gatedInput,
  steps: { prepare: 'Prepare', go: 'Go ahead', apply: 'Apply', verify: 'Verify' },
}, async (rb, { journal }) => {
  await rb.step('prepare', () => target.change({ journal, action: 'A:prepare' }));
  await rb.step('go', () => rb.requireApproval('go', { summary: 'Go ahead?', quorum: 1, fourEyes: false, timeout: '1h', notify: [] }));
  await rb.step('apply', () => target.change({ journal, action: 'A:apply' }));
  await rb.step('verify', () => target.change({ journal, action: 'A:verify' }));
  return { build: 'A' };
});

export async function deployEntity(args: EntityArgs): Promise<string> {
  const inbox = entityInbox();
  for (;;) {
    const change = await inbox.next();
    if (change === 'rollover') await continueAsNew<typeof deployEntity>({ ...args, generation: (args.generation ?? 0) + 1 });
    await target.change({ journal: args.journal, action: `entity:apply:${change}` });
  }
}
setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, deployEntity);
