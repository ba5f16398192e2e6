/**
 * The observing workflow interceptor (workflows/kit/observe.ts, behind the runbook-level metrics)
 * changes no run: every recorded history replays with it in the bundle exactly as without it, and
 * during replay it counts nothing (a worker restarting mid-run would otherwise count its runs,
 * steps and gate waits twice); only the current step, for log lines, is followed.
 */
import path from 'node:path';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { RunbookEvents } from '../contracts/runbook-events';
import { historiesDir, historyFiles, historyFromJson, readHistory } from '../scripts/histories';
import { workflowInterceptorModules } from '../workers/metrics-worker';

Runtime.install({ logger: new DefaultLogger('WARN') });

test('every recorded history replays with the observing interceptor, which counts nothing during replay', async () => {
  const histories = historyFiles().map((file) => ({ file, ...readHistory(path.join(historiesDir, file)) }));
  const calls: Record<keyof RunbookEvents, number> = { started: 0, stepEnded: 0, gateWaited: 0, finished: 0, inStep: 0 };
  const count = (name: keyof RunbookEvents, callDuringReplay = false) => ({ fn: () => { calls[name] += 1; }, callDuringReplay });
  const replays = Worker.runReplayHistories({
    workflowsPath: require.resolve('../workflows'), replayName: 'observed-histories',
    interceptors: { workflowModules: workflowInterceptorModules },
    sinks: { runbookEvents: { started: count('started'), stepEnded: count('stepEnded'), gateWaited: count('gateWaited'), finished: count('finished'), inStep: count('inStep', true) } },
  }, histories.map((h) => ({ workflowId: h.workflowId, history: historyFromJson(h) })));
  const broken: string[] = [];
  let i = 0;
  for await (const result of replays) {
    const { file } = histories[i++];
    if (result.error) broken.push(`test/histories/${file}: ${result.error.message.slice(0, 300)}`);
  }
  expect(i).toBe(histories.length);
  expect(broken).toEqual([]);
  expect(calls).toEqual({ started: 0, stepEnded: 0, gateWaited: 0, finished: 0, inStep: expect.any(Number) });
  expect(calls.inStep).toBeGreaterThan(histories.length / 2);
}, 400_000);
