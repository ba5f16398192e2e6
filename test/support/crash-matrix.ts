/**
 * The crash matrix: run a runbook once to learn its activity boundaries, then once per boundary
 * kill the worker with SIGKILL right there (at the start of the activity, and after its work but
 * before its completion is reported), start a new worker, let the run finish, and check the end
 * state the test supplies plus that no completed activity ran again.
 *
 * A runbook adds a scenario (a fresh world, how to drive its gates, its end-state predicate), not a
 * new harness. Scenarios run a few at a time: each has its own world, task queue and worker.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { CrashPoint, JournalEntry } from './crash-injection';
import { startWorker, uniqueQueue, type Proc } from './processes';
import { tempDir } from './runs';

export interface CrashWorld<W> {
  input: unknown;
  world: W;
  cleanup(): Promise<void>;
}

export interface CrashScenario<W> {
  name: string;
  workflowType: string;
  workerEnv: Record<string, string>;
  /** A fresh world for one run (e.g. a new lab) and the runbook's input for it. */
  prepare(): Promise<CrashWorld<W>>;
  /** Drives the run as an operator would (approves its gates) until it ends; returns its result. */
  drive(handle: WorkflowHandle): Promise<unknown>;
  /** The end state a user needs, whatever crashed: throws when it does not hold. */
  check(world: W, result: unknown): Promise<void>;
}

export type Boundary = Omit<CrashPoint, 'workflowId' | 'when'>;
export interface CrashOutcome { point: Omit<CrashPoint, 'workflowId'>; ok: boolean; error?: string; ms: number }

const readJournal = (file: string): JournalEntry[] => {
  try { return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch { return []; }
};

/** One run without a crash: the activities it schedules, in order, each with its occurrence number. */
export async function learnBoundaries<W>(client: Client, scenario: CrashScenario<W>): Promise<Boundary[]> {
  const outcome = await runOnce(client, scenario, 'learn', undefined);
  if (!outcome.ok) throw new Error(`The reference run of ${scenario.name} failed: ${outcome.error}`);
  return outcome.boundaries;
}

/** Every boundary, both ways, a few at a time. Resolves with one outcome per crash point. */
export async function runCrashMatrix<W>(client: Client, scenario: CrashScenario<W>, boundaries: Boundary[], parallel = 3): Promise<CrashOutcome[]> {
  // CRASH_MATRIX_ONLY (a regular expression over "<activity>-<n>-<start|end>") narrows a run when investigating.
  const only = process.env.CRASH_MATRIX_ONLY ? new RegExp(process.env.CRASH_MATRIX_ONLY) : undefined;
  const points = boundaries.flatMap((b) => (['start', 'end'] as const).map((when) => ({ ...b, when })))
    .filter((p) => !only || only.test(`${p.activityType}-${p.occurrence}-${p.when}`));
  const outcomes: CrashOutcome[] = [];
  let next = 0;
  const lane = async () => {
    while (next < points.length) {
      const point = points[next++];
      const started = Date.now();
      const r = await runOnce(client, scenario, `${point.activityType}-${point.occurrence}-${point.when}`, point);
      outcomes.push({ point, ok: r.ok, error: r.error, ms: Date.now() - started });
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, points.length) }, lane));
  return outcomes;
}

async function runOnce<W>(client: Client, scenario: CrashScenario<W>, label: string, point: Omit<CrashPoint, 'workflowId'> | undefined) {
  const queue = uniqueQueue(`crash-${scenario.name}`);
  const workflowId = `crash-${scenario.name}-${label}-${queue}`;
  const journal = path.join(tempDir('crash-journal-'), 'activities.jsonl');
  const env = { ...scenario.workerEnv, RUNBOOKS_ACTIVITY_JOURNAL: journal };
  let world: CrashWorld<W> | undefined;
  let worker: Proc | undefined;
  const boundaries: Boundary[] = [];
  try {
    world = await scenario.prepare();
    worker = await startWorker(queue, point ? { ...env, RUNBOOKS_CRASH: JSON.stringify({ ...point, workflowId }) } : env);
    const handle = await client.workflow.start(scenario.workflowType, { taskQueue: queue, workflowId, args: [world.input] });
    const driving = scenario.drive(handle).then((r) => ({ result: r }), (err) => ({ error: err as Error }));
    if (point) {
      const first = await Promise.race([worker.exited.then(() => 'crashed' as const), driving.then(() => 'ended' as const)]);
      if (first === 'ended') {
        const d = await driving;
        throw new Error(`the run ended without reaching the crash point${'error' in d ? ` (it failed: ${causes(d.error)})` : ''}`);
      }
      if (worker.child.signalCode !== 'SIGKILL') throw new Error(`the worker exited (${worker.child.exitCode}) instead of being killed`);
      worker = await startWorker(queue, env);
    }
    const ended = await driving;
    if ('error' in ended) throw ended.error;
    await scenario.check(world.world, ended.result);

    // No activity whose completion was recorded ran again: each attempt the history records ran at
    // most once. (An attempt in flight when the worker died ran again, as it must be able to.)
    const history = await handle.fetchHistory();
    const idOf = new Map<string, { activityId: string; type: string }>();
    const attempts = new Map<string, number>();
    for (const e of history.events ?? []) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) {
        idOf.set(String(e.eventId), { activityId: scheduled.activityId ?? '', type: scheduled.activityType?.name ?? '' });
        if (!point) boundaries.push({ activityType: scheduled.activityType?.name ?? '', occurrence: [...idOf.values()].filter((v) => v.type === scheduled.activityType?.name).length });
      }
      const started = e.activityTaskStartedEventAttributes;
      if (started) attempts.set(idOf.get(String(started.scheduledEventId))?.activityId ?? '', started.attempt ?? 1);
    }
    const runs = readJournal(journal).filter((e) => e.workflowId === workflowId);
    const counts = new Map<string, number>();
    for (const e of runs) counts.set(e.activityId, (counts.get(e.activityId) ?? 0) + 1);
    const again = [...counts].filter(([id, n]) => n > (attempts.get(id) ?? 0));
    if (again.length) {
      throw new Error(`completed activities ran again: ${again.map(([id, n]) => `${runs.find((e) => e.activityId === id)?.activityType}#${id} ran ${n}x in ${attempts.get(id) ?? 0} attempt(s)`).join(', ')}`);
    }
    return { ok: true as const, boundaries };
  } catch (err) {
    return { ok: false as const, error: `${label}: ${err instanceof Error ? err.message : String(err)}`, boundaries };
  } finally {
    await worker?.kill('SIGKILL');
    await world?.cleanup();
  }
}

/** The whole matrix as one assertion: the reference run schedules `expected`, and every crash point passes. */
export async function expectCrashMatrixPasses<W>(client: Client, scenario: CrashScenario<W>, expected: string[]): Promise<void> {
  const boundaries = await learnBoundaries(client, scenario);
  if (!expected.every((t) => boundaries.some((b) => b.activityType === t))) {
    throw new Error(`the reference run of ${scenario.name} did not schedule ${expected.join(', ')}: ${boundaries.map((b) => b.activityType).join(', ')}`);
  }
  const outcomes = await runCrashMatrix(client, scenario, boundaries);
  const failed = outcomes.filter((o) => !o.ok).map((o) => o.error);
  if (failed.length) throw new Error(`${failed.length} of ${outcomes.length} crash points failed:\n${failed.join('\n')}`);
  if (!process.env.CRASH_MATRIX_ONLY && outcomes.length !== boundaries.length * 2) throw new Error(`ran ${outcomes.length} crash points of ${boundaries.length * 2}`);
}

/** An error and its causes, as one line ("Workflow execution failed: Activity task failed: <what the activity said>"). */
function causes(err: Error): string {
  const said: string[] = [];
  for (let e: unknown = err; e instanceof Error && said.length < 5; e = e.cause) said.push(e.message.slice(0, 1000));
  return said.join(': ');
}
