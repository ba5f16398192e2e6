/**
 * Benchmarks, run with `npm run bench -- <name>` (as root: they start the PostgreSQL lab).
 *
 *   promotion   time from run start to new primary writable, and from the promote call to
 *               writable, beside a bare pg_promote() on the same kind of clusters in the same run.
 *
 *   orgunit-sync  DHIS2 org-unit sync: source COMMIT -> visible on each target (p50/p95) at a
 *               steady rate, and throughput, beside a bare fetch+import loop (the floor).
 *
 *   orgunit-approval  DHIS2 approvals: approver's link click -> change visible on the target
 *               (p50/p95), beside a raw signal round trip on the same server (the floor).
 *
 *   temporal    the dev server and the production shape (scripts/temporal-postgres.sh) in one run:
 *               start -> first activity and approval -> resumed (p50/p95), memory per run waiting at a gate.
 *
 *   hssys       Health Connect: how long mirrorHssys leaves HSSYS unavailable on the primary
 *               (dismount -> mount), beside a bare copy of the same IRIS.DAT between the same hosts.
 *
 *   cutover     Firely Server migration under a steady load through nginx: failed (and resent) requests,
 *               the worst latency during the switch beside the steady-state p99/max through the same proxy,
 *               and cutover approval -> first / all answers from the new upstream.
 *
 * Options: --runs N (default 3). Prints every measurement and the medians.
 * Each benchmark prints at start the bound it ends within (--deadline SECONDS overrides it): past
 * it, it says what it was waiting for, kills what it started, removes its labs and exits 1.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { Client as PgClient } from 'pg';
import { benchDeadline, eventMs, waitingOn } from './lib/bench';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startLab, type Lab } from '../test/lab/hosts';
import { hostInput } from '../test/lab/inputs';
import { killPostmaster, streamingPair } from '../test/lab/pair';
import { startProcess } from '../test/support/processes';
import { orgunitSyncBench } from './bench-orgunit';
import { orgunitApprovalBench } from './bench-approval';
import { metricsOnOffBench, temporalBench } from './bench-temporal';
import { hssysBench } from './bench-hssys';
import { cutoverBench } from './bench-cutover';

const repoRoot = path.resolve(__dirname, '..');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number) => `${x.toFixed(0)} ms`;

/** Resolves at the first moment an INSERT on the host commits, polling every 5 ms on one connection. */
async function firstWrite(lab: Lab, host: 'a' | 'b'): Promise<number> {
  const db = new PgClient({ host: lab[host].address, port: 5432, user: 'postgres', password: lab.adminPassword, database: 'postgres' });
  await db.connect();
  const deadline = performance.now() + 120_000;
  try {
    while (performance.now() < deadline) {
      try {
        await db.query('INSERT INTO bench_writes VALUES (now())');
        return performance.now();
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    throw new Error(`${lab[host].name} did not take a write within 120 s`);
  } finally {
    await db.end();
  }
}

/** A pair where B streams from A and already has the table the write probe uses; then A dies. */
async function pairWithDeadPrimary(client: Client, queue: string, secretsDir: string): Promise<Lab> {
  const lab = await streamingPair(client, queue, 'openelis-docker', await startLab({ secretsDir }));
  await lab.a.sql('CREATE TABLE bench_writes (at timestamptz)');
  for (let i = 0; !(await lab.b.sql(`SELECT to_regclass('bench_writes') AS t`))[0].t; i++) {
    if (i > 200) throw new Error('the probe table did not reach the standby');
    await new Promise((r) => setTimeout(r, 50));
  }
  killPostmaster(lab.a);
  return lab;
}

async function barePromotion(client: Client, queue: string, secretsDir: string): Promise<number> {
  const lab = await pairWithDeadPrimary(client, queue, secretsDir);
  try {
    const writable = firstWrite(lab, 'b');
    const t0 = performance.now();
    await lab.b.sql('SELECT pg_promote(true, 60)');
    return (await writable) - t0;
  } finally {
    await lab.stop();
  }
}

async function runbookPromotion(client: Client, queue: string, secretsDir: string, i: number): Promise<{ total: number; fromPromote: number }> {
  const lab = await pairWithDeadPrimary(client, queue, secretsDir);
  try {
    const writable = firstWrite(lab, 'b');
    const t0 = performance.now();
    const handle = await client.workflow.start('promotePostgresStandby', {
      taskQueue: queue, workflowId: `bench-promotion-${Date.now()}-${i}`,
      args: [{ mode: 'failover', oldPrimary: hostInput(lab.a, 'openelis-docker'), standby: hostInput(lab.b, 'openelis-docker'), promotionApproval: { required: false } }],
    });
    const done = await writable;
    await handle.result();
    // When the promoteStandby activity started, in the run's own history (server time).
    const history = await handle.fetchHistory();
    const events = history.events ?? [];
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'promoteStandby');
    const started = events.find((e) => e.activityTaskStartedEventAttributes && String(e.activityTaskStartedEventAttributes.scheduledEventId) === String(scheduled?.eventId));
    const first = events[0];
    const promoteOffset = eventMs(started?.eventTime) - eventMs(first.eventTime);
    if (process.env.BENCH_TIMELINE) {
      // Where the time goes: every activity's schedule -> start -> close, from the run's start.
      const names = new Map<string, string>();
      for (const e of events) {
        const at = (eventMs(e.eventTime) - eventMs(first.eventTime)).toFixed(0).padStart(5);
        const sch = e.activityTaskScheduledEventAttributes;
        if (sch) names.set(String(e.eventId), sch.activityType?.name ?? '?');
        const id = e.activityTaskStartedEventAttributes?.scheduledEventId ?? e.activityTaskCompletedEventAttributes?.scheduledEventId;
        const kind = String(e.eventType).replace('EVENT_TYPE_', '').toLowerCase();
        console.log(`  ${at} ms  ${kind}${sch ? ` ${sch.activityType?.name}` : id ? ` ${names.get(String(id))}` : ''}`);
      }
    }
    const total = done - t0;
    return { total, fromPromote: total - promoteOffset };
  } finally {
    await lab.stop();
  }
}

async function promotion(runs: number): Promise<void> {
  const cliPath = findTemporalCli(repoRoot);
  const server = await startDevServer({ cliPath, port: await freePort() });
  const queue = `bench-${process.pid}`;
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'bench-secrets-'));
  const worker = startProcess('workers/worker.ts', [], { RUNBOOKS_SET_CURRENT: 'true', TEMPORAL_ADDRESS: server.address, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_SECRETS_DIR: secretsDir });
  waitingOn('the worker to be ready');
  await worker.waitFor(/Worker ready/);
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  try {
    const bare: number[] = [];
    const total: number[] = [];
    const fromPromote: number[] = [];
    for (let i = 0; i < runs; i++) {
      waitingOn(`run ${i + 1}: a bare promotion (lab set-up, pg_promote, first write)`);
      const b = await barePromotion(client, queue, secretsDir);
      waitingOn(`run ${i + 1}: the runbook's promotion (lab set-up, promotePostgresStandby, first write)`);
      const r = await runbookPromotion(client, queue, secretsDir, i);
      bare.push(b); total.push(r.total); fromPromote.push(r.fromPromote);
      console.log(`run ${i + 1}: bare pg_promote -> writable ${ms(b)}; runbook start -> writable ${ms(r.total)}; promote call -> writable ${ms(r.fromPromote)}`);
    }
    console.log('\npromotion benchmark (failover of a SIGKILLed primary, openelis-docker profile, medians of', runs, 'runs)');
    console.log(`  bare pg_promote() -> writable          ${ms(median(bare))}`);
    console.log(`  runbook: promote call -> writable      ${ms(median(fromPromote))}   (${(median(fromPromote) / median(bare)).toFixed(2)}x bare)`);
    console.log(`  runbook: run start -> writable         ${ms(median(total))}   (${(median(total) / median(bare)).toFixed(2)}x bare)`);
    const ratio = median(fromPromote) / median(bare);
    console.log('\ntargets');
    console.log(`  promote call -> writable within 1.5x bare:      ${ratio <= 1.5 ? 'met' : 'MISSED'} (${ratio.toFixed(2)}x)`);
    console.log(`  run start -> writable under 1 s (no gate):      ${median(total) < 1000 ? 'met' : 'MISSED'} (${ms(median(total))})`);
  } finally {
    waitingOn('the worker to stop after SIGTERM');
    await worker.kill('SIGTERM');
    await client.connection.close();
    await server.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { runs: { type: 'string' }, updates: { type: 'string' }, units: { type: 'string' }, rate: { type: 'string' }, waiting: { type: 'string' }, deadline: { type: 'string' }, metrics: { type: 'boolean' }, rounds: { type: 'string' }, bulk: { type: 'string' }, 'per-resource': { type: 'boolean' } } });
  const runs = Number(values.runs ?? 3);
  const n = (name: keyof typeof values, otherwise: number) => Number(values[name] ?? otherwise);
  // Generous bounds: a benchmark that takes this long is stuck, not slow.
  const defaultSeconds: Record<string, number> = {
    promotion: 120 + 240 * runs,
    'orgunit-sync': 300 + (4 * n('updates', 2000)) / n('rate', 100) + (values.bulk ? 600 : 0),
    'orgunit-approval': 300 + 20 * n('runs', 30),
    hssys: 300 + 180 * n('runs', 5),
    cutover: 300 + 300 * n('runs', 3),
    temporal: 900 + 6 * n('runs', 50) + 0.6 * n('waiting', 1000),
  };
  const name = positionals[0];
  if (name in defaultSeconds) {
    const seconds = values.deadline === undefined ? defaultSeconds[name] : Number(values.deadline);
    if (!(seconds > 0)) { console.error(`--deadline is "${values.deadline}": give the seconds the benchmark may take, e.g. --deadline 900`); process.exit(2); }
    benchDeadline(name, seconds * 1000);
  }
  switch (name) {
    case 'promotion': return promotion(runs);
    case 'orgunit-sync': return orgunitSyncBench({ updates: Number(values.updates ?? 2000), units: Number(values.units ?? 500), rate: Number(values.rate ?? 100), bulk: values.bulk === undefined ? undefined : Number(values.bulk), perResource: values['per-resource'] }, repoRoot);
    case 'orgunit-approval': return orgunitApprovalBench(Number(values.runs ?? 30), repoRoot);
    case 'hssys': return hssysBench(Number(values.runs ?? 5), repoRoot);
    case 'cutover': return cutoverBench(Number(values.runs ?? 3), repoRoot);
    case 'temporal': if (values.metrics) return metricsOnOffBench({ runs: Number(values.runs ?? 200), rounds: Number(values.rounds ?? 2) }, repoRoot);
      return temporalBench({ runs: Number(values.runs ?? 50), waiting: Number(values.waiting ?? 1000) }, repoRoot);
    default:
      console.error('Usage: npm run bench -- promotion [--runs N] | orgunit-sync [--updates 2000] [--units 500] [--rate 100] [--bulk 1000] [--per-resource] | orgunit-approval [--runs 30] | temporal [--runs 50] [--waiting 1000] | temporal --metrics [--runs 200] [--rounds 2] | hssys [--runs 5] | cutover [--runs 3]  (any: --deadline SECONDS)');
      process.exit(2);
  }
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
