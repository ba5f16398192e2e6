/** Plain workflows that prove the platform: a worker runs them, a killed worker's successor resumes them. */
import { proxyActivities } from '@temporalio/workflow';
import type { FakeTargetActivities } from '../support/fake-target';
import { echoInput, journaledInput } from './schemas';
import type { z } from 'zod';

const quick = proxyActivities<FakeTargetActivities>({ startToCloseTimeout: '30s' });
const slow = proxyActivities<FakeTargetActivities>({ startToCloseTimeout: '2m', heartbeatTimeout: '2s', retry: { initialInterval: '200ms' } });

export async function echoWorkflow(input: z.input<typeof echoInput>): Promise<string> {
  const { message } = echoInput.parse(input);
  return quick.echo(message);
}

export async function journaledWorkflow(input: z.input<typeof journaledInput>): Promise<string> {
  const { journal, slowMs } = journaledInput.parse(input);
  await quick.change({ journal, action: 'first' });
  await slow.change({ journal, action: 'second', workMs: slowMs });
  await quick.change({ journal, action: 'third' });
  return 'done';
}
