/**
 * A deploy while runs wait (Worker Versioning), on the dev server and on the production-shaped
 * server: build A's runbook waits at its gate; build B (a step added before the gate, one removed
 * after it) is deployed and made current; the waiting run is approved and finishes on A with A's
 * steps, a new run takes B's path, and A's workers are stopped only once `versions` says no pinned
 * run needs them. An auto-upgrading entity workflow changed with patched() moves to B at its next
 * change and continues as new there, with A's workers gone.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { rmSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { readJournal } from './support/fake-target';
import { eventually, runCli, startProcess, testClient, uniqueQueue, type Proc } from './support/processes';
import { tempDir, waitForGate } from './support/runs';
import { startProductionTemporal, type ProductionTemporal } from './lab/temporal-production';
import { approveSignal } from '../contracts/messages';
import { entityChangeSignal, entityRolloverSignal } from './workflows/deploy/common';
import * as workflows from '../workflows';

interface Server { env: Record<string, string>; client: Client; replay?: boolean }
interface VersionsJson { current?: string; versions: Array<{ buildId: string; state: string; pinnedRuns: number; autoUpgradeRuns: number; retirable: boolean }> }

// The replay workers' chatter (bundling, the expected nondeterminism) would bury a real failure.
Runtime.install({ logger: new DefaultLogger('ERROR') });

const procs: Proc[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function deployWhileWaiting(server: Server): Promise<void> {
  const { client } = server;
  const id = randomUUID().slice(0, 8);
  const queue = uniqueQueue('deploy');
  // A deployment of its own: making B current must not move the other tests' runs.
  const common = { ...server.env, RUNBOOKS_DEPLOYMENT: `drill-${id}`, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_SHUTDOWN_GRACE: '5s' };
  const buildA = `a-${id}`;
  const buildB = `b-${id}`;
  const cli = (...args: string[]) => runCli(args, common);
  const versions = async (): Promise<VersionsJson> => {
    const r = await cli('versions', '--json');
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as VersionsJson;
  };
  const of = (v: VersionsJson, build: string) => v.versions.find((x) => x.buildId === build);
  const startBuild = async (build: 'a' | 'b', buildId: string) => {
    const w = startProcess('test/support/build-worker-entry.ts', [], { ...common, RUNBOOKS_TEST_BUILD: build, RUNBOOKS_BUILD_ID: buildId, RUNBOOKS_SET_CURRENT: 'false' });
    procs.push(w);
    await w.waitFor(/Worker ready/, 180_000);
    expect(w.output()).toContain(`"buildId":"${buildId}"`);
    return w;
  };
  const dir = tempDir('deploy-'); dirs.push(dir);
  const journal = (name: string) => path.join(dir, `${name}.log`);
  const actionsBy = (file: string) => readJournal(file).map((l) => `${l.pid}:${l.action}`);

  // Build A, made current as an operator would.
  const workerA = await startBuild('a', buildA);
  const pidA = workerA.child.pid;
  const madeA = await cli('versions', '--set-current', buildA);
  expect(madeA.code).toBe(0);

  const waiting = await client.workflow.start('deployDrill', { taskQueue: queue, workflowId: `drill-waiting-${id}`, args: [{ journal: journal('waiting') }] });
  await waitForGate(waiting, 'go');
  const entity = await client.workflow.start('deployEntity', { taskQueue: queue, workflowId: `entity-${id}`, args: [{ journal: journal('entity') }] });
  await entity.signal(entityChangeSignal, 'one');
  await eventually(async () => readJournal(journal('entity')).length === 1, 'the entity to apply change one on A');

  // Build B deployed beside A, then made current.
  const workerB = await startBuild('b', buildB);
  const pidB = workerB.child.pid;
  expect(workerB.output()).toContain(`Build ${buildB} is not the current version (new runs go to ${buildA})`);
  const before = await versions();
  expect(before.current).toBe(buildA);
  expect(of(before, buildA)).toMatchObject({ state: 'current', pinnedRuns: 1, retirable: false });
  expect(of(before, buildB)).toMatchObject({ state: 'inactive', pinnedRuns: 0 });
  expect((await cli('versions', '--set-current', buildB)).code).toBe(0);

  const table = await cli('versions');
  expect(table.stdout).toMatch(new RegExp(`${buildA}\\s+draining\\s+1\\s+1\\s+needed until 1 pinned run\\(s\\) end`));
  expect(table.stdout).toMatch(new RegExp(`${buildB}\\s+current\\s+0\\s+0\\s+needed \\(new runs\\)`));

  // A new run takes B's path; the waiting one still shows A.
  const fresh = await client.workflow.start('deployDrill', { taskQueue: queue, workflowId: `drill-fresh-${id}`, args: [{ journal: journal('fresh') }] });
  await waitForGate(fresh, 'go');
  expect(actionsBy(journal('fresh'))).toEqual([`${pidB}:B:prepare`, `${pidB}:B:announce`]);
  const statusWaiting = await cli('status', waiting.workflowId);
  expect(statusWaiting.stdout).toContain(`build ${buildA} (pinned)`);
  expect((await cli('status', fresh.workflowId)).stdout).toContain(`build ${buildB} (pinned)`);

  // The waiting run is approved: it finishes on A, with A's steps, none of B's.
  const approved = await cli('approve', waiting.workflowId, '--gate', 'go', '--by', 'on-call');
  expect(approved.code).toBe(0);
  expect(await waiting.result()).toEqual({ build: 'A' });
  expect(actionsBy(journal('waiting'))).toEqual([`${pidA}:A:prepare`, `${pidA}:A:apply`, `${pidA}:A:verify`]);
  if (server.replay) {
    // What pinning spared it: replayed on B's code, the same history fails at the step B added.
    const history = await waiting.fetchHistory();
    await Worker.runReplayHistory({ workflowsPath: require.resolve('./workflows/deploy/build-a'), replayName: 'build A' }, history, waiting.workflowId);
    await expect(Worker.runReplayHistory({ workflowsPath: require.resolve('./workflows/deploy/build-b'), replayName: 'build B' }, history, waiting.workflowId))
      .rejects.toThrow(/Nondeterminism|TMPRL1100/);
  }

  // Only now may A's workers go: no pinned run left on it (the entity auto-upgrades, it needs no A).
  const after = await eventually(async () => {
    const v = await versions();
    return of(v, buildA)?.pinnedRuns === 0 ? v : undefined;
  }, `versions to show no pinned run left on ${buildA}`, 60_000);
  expect(of(after, buildA)).toMatchObject({ retirable: true });
  expect((await cli('versions')).stdout).toMatch(new RegExp(`${buildA}\\s+\\S+\\s+0\\s+\\d+\\s+may be stopped`));
  expect(await workerA.kill('SIGTERM')).toBe(0);

  // The entity's next change runs on B, through B's patched step; its rollover continues as new on B.
  await entity.signal(entityChangeSignal, 'two');
  await eventually(async () => readJournal(journal('entity')).length === 3, 'the entity to apply change two on B');
  expect(actionsBy(journal('entity'))).toEqual([`${pidA}:entity:apply:one`, `${pidB}:entity:audit:two`, `${pidB}:entity:apply:two`]);
  expect((await cli('status', entity.workflowId)).stdout).toContain(`build ${buildB} (auto-upgrade)`);
  const firstRun = (await entity.describe()).runId;
  await entity.signal(entityRolloverSignal);
  const next = await eventually(async () => {
    const d = await client.workflow.getHandle(entity.workflowId).describe();
    return d.runId !== firstRun ? d : undefined;
  }, 'the entity to continue as new');
  await client.workflow.getHandle(entity.workflowId).signal(entityChangeSignal, 'three');
  await eventually(async () => readJournal(journal('entity')).length === 5, 'the continued entity to apply change three');
  expect(actionsBy(journal('entity')).slice(3)).toEqual([`${pidB}:entity:audit:three`, `${pidB}:entity:apply:three`]);
  expect((await cli('status', entity.workflowId)).stdout).toContain(`build ${buildB} (auto-upgrade)`);
  expect(next.runId).not.toBe(firstRun);

  // The new run finishes on B without the step B removed.
  await fresh.signal(approveSignal, { gate: 'go', by: 'on-call', via: 'cli' });
  expect(await fresh.result()).toEqual({ build: 'B' });
  expect(actionsBy(journal('fresh'))).toEqual([`${pidB}:B:prepare`, `${pidB}:B:announce`, `${pidB}:B:apply`]);
  await client.workflow.getHandle(entity.workflowId).terminate('test over');
  await workerB.kill('SIGTERM');
}

test('orgUnitSync and orgUnitBatch alone auto-upgrade; every runbook (and the lock it holds) takes the worker\'s default, PINNED', () => {
  const behaviors = Object.fromEntries(Object.entries(workflows).map(([name, fn]) => [name,
    (fn as { workflowDefinitionOptions?: { versioningBehavior?: string } }).workflowDefinitionOptions?.versioningBehavior ?? 'worker default (PINNED)']));
  expect(Object.entries(behaviors).filter(([, b]) => b !== 'worker default (PINNED)')).toEqual([['orgUnitSync', 'AUTO_UPGRADE'], ['orgUnitBatch', 'AUTO_UPGRADE']]);
});

test('a bad build id or deployment name is refused naming the setting, before the worker connects; --set-current refuses one too', async () => {
  const bad = startProcess('test/support/worker-entry.ts', [], { RUNBOOKS_BUILD_ID: "x'; rm -rf /", TEMPORAL_ADDRESS: '127.0.0.1:1' });
  procs.push(bad);
  expect(await bad.exited).toBe(1);
  expect(bad.output()).toContain('RUNBOOKS_BUILD_ID is "x\'; rm -rf /": a build id is 1-128 letters');
  expect(bad.output()).not.toMatch(/Cannot connect/);
  const badName = startProcess('test/support/worker-entry.ts', [], { RUNBOOKS_DEPLOYMENT: 'runbooks.v2', TEMPORAL_ADDRESS: '127.0.0.1:1' });
  procs.push(badName);
  expect(await badName.exited).toBe(1);
  expect(badName.output()).toContain("RUNBOOKS_DEPLOYMENT is \"runbooks.v2\": a deployment name is 1-100 letters, digits, '_' or '-' (no '.' or ':')");
  const cli = await runCli(['versions', '--set-current', 'a:b'], { RUNBOOKS_DEPLOYMENT: `unused-${randomUUID().slice(0, 8)}` });
  expect(cli.code).toBe(2);
  expect(cli.stderr).toContain('--set-current is "a:b"');
}, 120_000);

describe('a deploy while runs wait at a gate', () => {
  test('on the dev server', async () => {
    const client = await testClient();
    try {
      await deployWhileWaiting({ env: {}, client, replay: true });
    } finally {
      await client.connection.close();
    }
  }, 10 * 60_000);

  describe('on the production-shaped server', () => {
    let temporal: ProductionTemporal;
    beforeAll(async () => { temporal = await startProductionTemporal(); }, 20 * 60_000);
    afterAll(async () => { await temporal?.stop(); }, 120_000);

    test('the same deploy', async () => {
      await deployWhileWaiting({ env: { ...temporal.env }, client: await temporal.client() });
    }, 15 * 60_000);
  });
});

