/**
 * Build B of the deploy test: the runbook gains a step before its gate and loses one after it
 * (a pinned run of A never sees this code); the entity gains a step, behind patched(), as every
 * change to an auto-upgrading workflow must.
 */
import { continueAsNew, patched, setWorkflowOptions } from '@temporalio/workflow';
import { defineRunbook } from '../../../workflows/kit/runbook';
import { gatedInput } from '../schemas';
import { entityInbox, target, type EntityArgs } from './common';

export const deployDrill = defineRunbook({
  name: 'deployDrill',
  title: 'Deploy drill (build B)',
  schema: gatedInput,
  steps: { prepare: 'Prepare', announce: 'Announce', go: 'Go ahead', apply: 'Apply' },
}, async (rb, { journal }) => {
  await rb.step('prepare', () => target.change({ journal, action: 'B:prepare' }));
  await rb.step('announce', () => target.change({ journal, action: 'B:announce' }));
  await rb.step('go', () => rb.requireApproval('go', { summary: 'Go ahead?', quorum: 1, fourEyes: false, timeout: '1h', notify: [] }));
  await rb.step('apply', () => target.change({ journal, action: 'B:apply' }));
  return { build: 'B' };
});

export async function deployEntity(args: EntityArgs): Promise<string> {
  const inbox = entityInbox();
  for (;;) {
    const change = await inbox.next();
    if (change === 'rollover') await continueAsNew<typeof deployEntity>({ ...args, generation: (args.generation ?? 0) + 1 });
    if (patched('deploy-entity-audit')) await target.change({ journal: args.journal, action: `entity:audit:${change}` });
    await target.change({ journal: args.journal, action: `entity:apply:${change}` });
  }
}
setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, deployEntity);
