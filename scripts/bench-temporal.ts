/**
 * Temporal itself, on the dev server and on the production shape (scripts/temporal-postgres.sh:
 * the real server on PostgreSQL with mutual TLS), in one run, with the same worker process and
 * the same runbook (the suite's gatedRunbook: preflight, take-down, gate, switch-over, bring-up):
 *
 *   start -> first activity    client's start call to the first activity handed to the worker
 *   approval -> resumed        the approve signal sent to the activity after the gate handed to the worker
 *   waiting at a gate          --waiting runs (1,000) parked at their gate on one worker: its memory
 *                              per waiting run, and approval -> resumed while they all wait
 *
 * The moments an activity was handed out come from the run's history (server time, same machine).
 * Options: --runs N (samples per server, default 50), --waiting N (default 1000). Needs root (the
 * production shape runs PostgreSQL as the postgres user).
 */
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { approveSignal, progressQuery } from '../contracts/messages';
import { eventMs, pct, until } from './lib/bench';
import { workflowInterceptorModules } from '../workers/metrics-worker';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startProcess, type Proc } from '../test/support/processes';
import { startProductionTemporal } from '../test/lab/temporal-production';

const row = (label: string, xs: number[]) => `  ${label.padEnd(40)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p95 ${pct(xs, 95).toFixed(0).padStart(5)} ms   (${xs.length} runs)`;
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

interface Target { name: string; env: Record<string, string>; client: Client; stop(): Promise<void> }

interface Figures { toFirstActivity: number[]; toResumed: number[]; waiting: number; rssBeforeKiB: number; rssAfterKiB: number; resumedWhileWaiting: number[] }

const atGate = (handle: WorkflowHandle) => until(`${handle.workflowId} at its gate`, async () =>
  (await handle.query(progressQuery)).approvals.some((g) => g.gate === 'cutover' && g.state === 'open'), 600_000, 20);

/** When the server handed the run's activities to the worker (their ActivityTaskStarted times), in start order. */
async function activityStarts(handle: WorkflowHandle): Promise<number[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  return events.filter((e) => e.activityTaskStartedEventAttributes).map((e) => eventMs(e.eventTime)).sort((a, b) => a - b);
}

/** One gated run: start -> first activity; at the gate, approve -> the switch-over activity (the 4th: check, take down, switch over, bring up). */
async function oneRun(client: Client, queue: string, journal: string, id: string): Promise<{ toFirst: number; toResumed: number }> {
  const t0 = Date.now();
  const handle = await client.workflow.start('gatedRunbook', { taskQueue: queue, workflowId: id, args: [{ journal, gate: { timeout: '1h' } }] });
  await atGate(handle);
  const t1 = Date.now();
  await handle.signal(approveSignal, { gate: 'cutover', by: 'bench' });
  await handle.result();
  const starts = await activityStarts(handle);
  return { toFirst: starts[0] - t0, toResumed: starts[2] - t1 };
}

async function startWorkerProcess(target: Target, queue: string, bundle: string): Promise<Proc> {
  const worker = startProcess('test/support/worker-entry.ts', [], { ...target.env, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_WORKFLOW_BUNDLE: bundle, RUNBOOKS_SHUTDOWN_GRACE: '5s' });
  await worker.waitFor(/Worker ready/, 120_000);
  return worker;
}

async function measure(target: Target, bundle: string, runs: number, waiting: number): Promise<Figures> {
  const { client } = target;
  const journal = path.join(mkdtempSync(path.join(os.tmpdir(), 'bench-temporal-')), 'journal.log');
  const tag = `${target.name}-${process.pid}`;

  // Latencies, one run at a time; the first warms the worker and the server up and is not counted.
  const latencyQueue = `bench-latency-${tag}`;
  const worker = await startWorkerProcess(target, latencyQueue, bundle);
  const toFirstActivity: number[] = [];
  const toResumed: number[] = [];
  try {
    for (let i = 0; i <= runs; i++) {
      const r = await oneRun(client, latencyQueue, journal, `bench-${tag}-${i}`);
      if (i > 0) { toFirstActivity.push(r.toFirst); toResumed.push(r.toResumed); }
    }
  } finally {
    await worker.kill('SIGTERM');
  }

  // Capacity: a fresh worker, warmed up by one run at its gate, then `waiting` more runs parked at theirs.
  const holdQueue = `bench-hold-${tag}`;
  const holder = await startWorkerProcess(target, holdQueue, bundle);
  try {
    const start = (i: number) => client.workflow.start('gatedRunbook', { taskQueue: holdQueue, workflowId: `bench-hold-${tag}-${i}`, args: [{ journal, gate: { timeout: '1h' } }] });
    await atGate(await start(0));
    const rssBeforeKiB = rssKiB(holder.child.pid!);
    const handles: WorkflowHandle[] = [];
    for (let i = 1; i <= waiting; i += 50) {
      handles.push(...await Promise.all(Array.from({ length: Math.min(50, waiting - i + 1) }, (_, k) => start(i + k))));
    }
    const query = `TaskQueue = "${holdQueue}" AND RunbookStatus = "waiting_for_approval"`;
    await until(`${waiting + 1} runs at their gate`, async () => (await client.workflow.count(query)).count >= waiting + 1, 600_000, 20);
    const rssAfterKiB = rssKiB(holder.child.pid!);
    // With all of them waiting, a few approvals: does the worker still answer at once?
    const resumedWhileWaiting: number[] = [];
    for (const handle of handles.slice(0, 10)) {
      const t1 = Date.now();
      await handle.signal(approveSignal, { gate: 'cutover', by: 'bench' });
      await handle.result();
      resumedWhileWaiting.push((await activityStarts(handle))[2] - t1);
    }
    return { toFirstActivity, toResumed, waiting, rssBeforeKiB, rssAfterKiB, resumedWhileWaiting };
  } finally {
    await holder.kill('SIGTERM');
    rmSync(path.dirname(journal), { recursive: true, force: true });
  }
}

async function devTarget(repoRoot: string): Promise<Target> {
  const server = await startDevServer({ cliPath: findTemporalCli(repoRoot), port: await freePort() });
  const client = new Client({ connection: await Connection.connect({ address: server.address }), namespace: 'default' });
  return {
    name: 'dev', client, env: { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default' },
    async stop() { await client.connection.close(); await server.stop(); },
  };
}

async function productionTarget(): Promise<Target> {
  const temporal = await startProductionTemporal();
  return { name: 'production', client: await temporal.client(), env: temporal.env, stop: () => temporal.stop() };
}

/** The worker SDK's default workflow cache size for a node process of this machine (worker-options.js). */
function defaultCacheSize(): number {
  const heapMiB = Number(execFileSync(process.execPath, ['-p', 'v8.getHeapStatistics().heap_size_limit'], { encoding: 'utf8' })) / 2 ** 20;
  return Math.max(Math.floor((Math.max(heapMiB - 200, 0) * 600) / 1024), 10);
}

function report(name: string, f: Figures): void {
  const perRunKiB = (f.rssAfterKiB - f.rssBeforeKiB) / f.waiting;
  console.log(`\n${name}`);
  console.log(row('workflow start -> first activity', f.toFirstActivity));
  console.log(row('approval signal -> resumed', f.toResumed));
  console.log(`  waiting at a gate on one worker           ${f.waiting} runs: worker RSS ${(f.rssBeforeKiB / 1024).toFixed(0)} -> ${(f.rssAfterKiB / 1024).toFixed(0)} MiB, ${perRunKiB.toFixed(0)} KiB per waiting run`);
  console.log(row(`approval -> resumed, ${f.waiting} waiting`, f.resumedWhileWaiting));
}

export async function temporalBench(opts: { runs: number; waiting: number }, repoRoot: string): Promise<void> {
  if (opts.waiting > 1000 || opts.waiting < 1 || opts.runs < 1) throw new Error('--runs must be 1 or more, --waiting 1 to 1000');
  // Each server's workers get exactly its settings: none from a shell that ran `eval "$(scripts/temporal-postgres.sh)"`.
  for (const key of Object.keys(process.env)) if (key.startsWith('TEMPORAL_') && key !== 'TEMPORAL_CLI_PATH') delete process.env[key];
  const work = mkdtempSync(path.join(os.tmpdir(), 'bench-temporal-bundle-'));
  const bundle = path.join(work, 'workflow-bundle.js');
  writeFileSync(bundle, (await bundleWorkflowCode({ workflowsPath: require.resolve('../test/workflows'), workflowInterceptorModules, logger: quiet })).code);
  const results: Array<[string, Figures]> = [];
  try {
    for (const make of [() => devTarget(repoRoot), productionTarget]) {
      const target = await make();
      try {
        const label = target.name === 'dev' ? 'dev server (temporal server start-dev, SQLite in memory)' : 'production shape (Temporal 1.29.1 on PostgreSQL 15, mutual TLS)';
        console.log(`measuring on the ${label}...`);
        results.push([label, await measure(target, bundle, opts.runs, opts.waiting)]);
      } finally {
        await target.stop();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`\ntemporal benchmark: the gatedRunbook through one worker process (cache: ${defaultCacheSize()} runs, the SDK's default here), ${opts.runs} runs one at a time, then ${opts.waiting} at their gate`);
  for (const [name, f] of results) report(name, f);
}

const quiet = {
  log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined,
  warn: (m: string) => console.warn(m), error: (m: string) => console.error(m),
};

/**
 * `--metrics`: worker throughput with metrics off and on (RUNBOOKS_WORKER_METRICS_PORT, scraped
 * every second as Prometheus would), on the dev server: `runs` dry-run gatedRunbook runs (four
 * steps, the kit's progress and search attributes, four activities, no gate wait) started at
 * once, from the first start to the last result. Rounds alternate off and on, so a load change on
 * the machine falls on both; the medians are compared.
 */
export async function metricsOnOffBench(opts: { runs: number; rounds: number }, repoRoot: string): Promise<void> {
  if (opts.runs < 1 || opts.rounds < 1) throw new Error('--runs and --rounds must be 1 or more');
  for (const key of Object.keys(process.env)) if (key.startsWith('TEMPORAL_') && key !== 'TEMPORAL_CLI_PATH') delete process.env[key];
  const work = mkdtempSync(path.join(os.tmpdir(), 'bench-metrics-'));
  const bundle = path.join(work, 'workflow-bundle.js');
  writeFileSync(bundle, (await bundleWorkflowCode({ workflowsPath: require.resolve('../test/workflows'), workflowInterceptorModules, logger: quiet })).code);
  const target = await devTarget(repoRoot);
  const journal = path.join(work, 'journal.log');
  const perSecond: Record<'off' | 'on', number[]> = { off: [], on: [] };
  try {
    for (let round = 0; round < opts.rounds * 2; round++) {
      const mode = round % 2 ? 'on' : 'off';
      const queue = `bench-metrics-${mode}-${round}-${process.pid}`;
      const metricsPort = mode === 'on' ? await freePort() : undefined;
      const worker = await startWorkerProcess({ ...target, env: { ...target.env, ...(metricsPort ? { RUNBOOKS_WORKER_METRICS_PORT: String(metricsPort) } : {}) } }, queue, bundle);
      let scraping = Boolean(metricsPort);
      const scraper = (async () => {
        while (scraping) {
          await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 1000));
        }
      })();
      try {
        // One run first: the worker's first workflow task is slower (its cache is cold).
        await target.client.workflow.execute('gatedRunbook', { taskQueue: queue, workflowId: `${queue}-warm`, args: [{ journal, dryRun: true }] });
        const t0 = Date.now();
        const handles = await Promise.all(Array.from({ length: opts.runs }, (_, i) =>
          target.client.workflow.start('gatedRunbook', { taskQueue: queue, workflowId: `${queue}-${i}`, args: [{ journal, dryRun: true }] })));
        await Promise.all(handles.map((h) => h.result()));
        const seconds = (Date.now() - t0) / 1000;
        perSecond[mode].push(opts.runs / seconds);
        console.log(`  round ${round + 1}, metrics ${mode.padEnd(3)}: ${opts.runs} runs in ${seconds.toFixed(1)} s = ${(opts.runs / seconds).toFixed(1)} runs/s (load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`);
      } finally {
        scraping = false;
        await scraper;
        await worker.kill('SIGTERM');
      }
    }
  } finally {
    await target.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const median = (xs: number[]) => pct(xs, 50);
  const off = median(perSecond.off);
  const on = median(perSecond.on);
  console.log(`\nworker throughput, ${opts.runs} dry-run gatedRunbook runs at once, ${opts.rounds} round(s) each (medians):`);
  console.log(`  metrics off ${off.toFixed(1)} runs/s, on ${on.toFixed(1)} runs/s: ${(((on - off) / off) * 100).toFixed(1)}% (the issue asks within 5%); load average now ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}, ${os.cpus().length} cores`);
}
