/**
 * Runs recorded from real runs (test/histories/<workflow type>/<path>.json, captured with
 * `npm run histories -- capture`) replayed against today's workflows: a change that would break a
 * run waiting at a gate, or an org-unit sync that lives for weeks, fails here naming the workflow
 * type, the history file and the event. How to change a workflow safely: docs/histories.md.
 */
import path from 'node:path';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import * as workflows from '../workflows';
import { findSecrets, historiesDir, historyFiles, historyFromJson, pathOf, readHistory, workflowTypes } from '../scripts/histories';

const files = historyFiles();
// The bundler's and the replay worker's chatter would bury the one line that matters.
Runtime.install({ logger: new DefaultLogger('WARN') });

test('every workflow type the worker runs has at least one recorded history', () => {
  const exported = Object.keys(workflows).sort();
  expect([...workflowTypes].sort()).toEqual(exported);
  const recorded = new Set(files.map((f) => f.split(path.sep)[0]));
  expect(exported.filter((t) => !recorded.has(t))).toEqual([]);
});

test('every history replays on today\'s workflows', async () => {
  const histories = files.map((file) => ({ file, ...readHistory(path.join(historiesDir, file)) }));
  const replays = Worker.runReplayHistories(
    { workflowsPath: require.resolve('../workflows'), replayName: 'recorded-histories' },
    histories.map((h) => ({ workflowId: h.workflowId, history: historyFromJson(h) })),
  );
  const broken: string[] = [];
  let i = 0;
  for await (const result of replays) {
    const { file, workflowType } = histories[i++];
    if (result.error) broken.push(`${workflowType}: test/histories/${file}: ${whatBroke(result.error)}`);
  }
  expect(i).toBe(histories.length);
  // A failure here means a run in flight on the old code would fail when it resumes: see docs/histories.md.
  expect(broken).toEqual([]);
}, 300_000);

/** Core's own words for the event that no longer matches, without the wrapping around them. */
const whatBroke = (err: Error) => /\[TMPRL\d+\][^"]*/.exec(err.message)?.[0] ?? err.message;

test('each history is named after its workflow type and the path it took', () => {
  const misnamed = files.filter((file) => {
    const h = readHistory(path.join(historiesDir, file));
    return file !== path.join(h.workflowType, `${pathOf(h)}.json`);
  });
  expect(misnamed).toEqual([]);
});

test('no history holds a secret: inputs name secrets, never carry them', () => {
  const found = files.flatMap((file) => findSecrets(readHistory(path.join(historiesDir, file))).map((s) => `${file}: ${s}`));
  expect(found).toEqual([]);
});
