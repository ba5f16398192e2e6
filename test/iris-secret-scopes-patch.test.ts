/**
 * The IRIS runbooks moved from their own checkIrisSecretScopes to the kit's checkSecretScopes behind
 * patch 'one-secret-scope-check': a run recorded before replays on the new code, a new run schedules
 * the kit's activity, and the worker still answers the old name with the same function.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import { createActivities } from '../activities';
import { checkSecretScopes } from '../activities/kit/secret-scopes';
import { testClient, uniqueQueue } from './support/processes';

let client: Client;
let connection: NativeConnection;
beforeAll(async () => {
  client = await testClient();
  connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS });
});
afterAll(async () => {
  await connection.close();
  await client.connection.close();
});

const workflows = (version: 'before' | 'after') => require.resolve(`./workflows/iris-secret-scopes/${version}`);

/** Runs the preflight on `version`'s code and returns its history and the activity types it scheduled. */
async function recorded(version: 'before' | 'after') {
  const taskQueue = uniqueQueue(`iris-scopes-${version}`);
  const worker = await Worker.create({ connection, taskQueue, workflowsPath: workflows(version), activities: createActivities() });
  const handle = await worker.runUntil(async () => {
    const h = await client.workflow.start('irisSecretScopeCheck', { taskQueue, workflowId: taskQueue });
    expect(await h.result()).toBe(1);
    return h;
  });
  const history = await handle.fetchHistory();
  const scheduled = (history.events ?? []).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
  return { history, scheduled, workflowId: handle.workflowId };
}

test('the worker answers checkIrisSecretScopes with the kit\'s checkSecretScopes, for runs from before', () => {
  const activities = createActivities();
  expect(activities.checkIrisSecretScopes).toBe(checkSecretScopes);
  expect(activities.checkSecretScopes).toBe(checkSecretScopes);
});

test('a run recorded before the patch replays on the new code; a new run schedules the kit\'s activity', async () => {
  const before = await recorded('before');
  expect(before.scheduled).toEqual(['checkIrisSecretScopes']);
  await Worker.runReplayHistory({ workflowsPath: workflows('after') }, before.history, before.workflowId);

  const after = await recorded('after');
  expect(after.scheduled).toEqual(['checkSecretScopes']);
  await Worker.runReplayHistory({ workflowsPath: workflows('after') }, after.history, after.workflowId);
}, 180_000);
