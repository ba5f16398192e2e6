/**
 * What clients through the proxy see of migrateFirelyServer (old Firely Server -> new, nginx in
 * front), with a steady load (4 keep-alive connections, a PUT every 40th request) the whole run:
 *
 *   - failed requests over the whole run (goal 0), and how many were sent again because nginx
 *     closed their kept-alive connection before any answer (test/support/load.ts);
 *   - the worst latency of the requests sent during the switch (from the cutover approval to 1 s
 *     after the last answer from the old upstream), beside the steady state through the same proxy
 *     without a switch (the load's first 10 s, before the runbook starts: p99 and max);
 *   - from the cutover approval (the bench sending `approve` for gate `cutover`) to the first answer
 *     from the new upstream, and to the end of the last answer from the old one (X-Upstream).
 *
 * Prints figures, asserts nothing. Options: --runs N (default 3). Needs root (the lab's network
 * namespaces, nginx, FerretDB).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { pct } from './lib/bench';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startProcess } from '../test/support/processes';
import { startFirelyLab } from '../test/lab/firely';
import { startLoad, type LoadSample } from '../test/support/load';
import { failureText } from '../contracts/failure';
import { approveSignal, progressQuery, type Progress } from '../contracts/messages';

const LOAD = { connections: 4, writeEvery: 50 };
const STEADY_MS = 10_000;
const SEED = { patients: 300, observations: 100 };
/** "During the switch" ends this long after the last answer from the old upstream. */
const SWITCH_TAIL_MS = 1_000;

const row = (label: string, xs: number[]) => `  ${label.padEnd(52)} p50 ${pct(xs, 50).toFixed(0).padStart(6)} ms   max ${Math.max(...xs).toFixed(0).padStart(6)} ms`;
const countRow = (label: string, xs: number[]) => `  ${label.padEnd(52)} p50 ${String(pct(xs, 50)).padStart(6)}      max ${String(Math.max(...xs)).padStart(6)}      total ${xs.reduce((a, b) => a + b, 0)}`;

/** Polls the run's progress until `gate` is open; a run that ended or a gate that never opens is an error saying where the run is. */
async function gateOpen(handle: WorkflowHandle, gate: string, timeoutMs = 300_000): Promise<Progress> {
  const ended = new Set(['completed', 'rolled_back', 'failed', 'cancelled', 'planned']);
  let last: Progress | undefined;
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    last = await handle.query(progressQuery).catch(() => last);
    if (!last) continue;
    if (last.approvals.some((g) => g.gate === gate && g.state === 'open')) return last;
    if (ended.has(last.status)) break;
  }
  const where = last ? `${last.status} at ${last.currentStep}: ${last.error ?? last.steps.find((s) => s.error)?.error ?? ''}` : 'no progress';
  const result = await Promise.race([handle.result().then((r) => `completed ${JSON.stringify(r)}`, (e) => failureText(e.cause ?? e)), new Promise<string>((r) => setTimeout(() => r('still running'), 2_000))]);
  throw new Error(`gate ${gate} did not open; the run is ${where}; result: ${result}`);
}

interface RunFigures {
  requests: number;
  failures: number;
  resent: number;
  steadyP99: number;
  steadyMax: number;
  steadyCount: number;
  switchWorst: number;
  switchP99: number;
  switchCount: number;
  toFirstNew: number;
  toLastOld: number;
  oldAfterApproval: number;
  run: number;
  failureTexts: string[];
}

async function oneRun(client: Client, queue: string, secretsDir: string, i: number): Promise<RunFigures> {
  const lab = await startFirelyLab({ secretsDir });
  try {
    const seeded = await lab.seed(SEED.patients, SEED.observations);
    const oldUp = lab.upstreamOf(lab.old);
    const newUp = lab.upstreamOf(lab.new);
    const tLoad = performance.now();
    const load = startLoad(lab.proxyUrl, { ...LOAD, readIds: seeded });
    let stats = load.stats;
    let tApprove = 0;
    let run = 0;
    try {
      // Steady state through the same proxy, no switch.
      await new Promise((r) => setTimeout(r, STEADY_MS));
      const tSteady = performance.now();
      const t0 = performance.now();
      const handle = await client.workflow.start('migrateFirelyServer', {
        taskQueue: queue, workflowId: `bench-cutover-${process.pid}-${i}`,
        args: [lab.migrationInput({ countTolerance: 5, oldServerIdleSeconds: 2 })],
      });
      await gateOpen(handle, 'cutover');
      tApprove = performance.now();
      await handle.signal(approveSignal, { gate: 'cutover', by: 'bench' });
      await gateOpen(handle, 'decommission');
      await handle.signal(approveSignal, { gate: 'decommission', by: 'bench' });
      await handle.result().catch((err) => { throw new Error(`the runbook failed: ${failureText(err.cause ?? err)}`); });
      run = performance.now() - t0;
      stats = await load.stop();

      const ended = (s: LoadSample) => s.sentAt + s.ms;
      const steady = stats.samples.filter((s) => s.sentAt >= tLoad && s.sentAt < tSteady).map((s) => s.ms);
      const fromOld = stats.samples.filter((s) => s.upstream === oldUp);
      const fromNew = stats.samples.filter((s) => s.upstream === newUp);
      if (!fromNew.length) throw new Error('no answer came from the new upstream');
      const lastOld = Math.max(...fromOld.map(ended));
      const firstNew = Math.min(...fromNew.map(ended));
      const during = stats.samples.filter((s) => s.sentAt >= tApprove && s.sentAt <= lastOld + SWITCH_TAIL_MS).map((s) => s.ms);
      return {
        requests: stats.requests, failures: stats.failures.length, resent: stats.resent,
        steadyP99: pct(steady, 99), steadyMax: Math.max(...steady), steadyCount: steady.length,
        switchWorst: during.length ? Math.max(...during) : 0, switchP99: during.length ? pct(during, 99) : 0, switchCount: during.length,
        toFirstNew: firstNew - tApprove, toLastOld: lastOld - tApprove,
        oldAfterApproval: fromOld.filter((s) => s.sentAt >= tApprove).length,
        run, failureTexts: stats.failures.slice(0, 10),
      };
    } finally {
      await load.stop().catch(() => undefined);
    }
  } finally {
    await lab.stop();
  }
}

export async function cutoverBench(runs: number, repoRoot: string): Promise<void> {
  const server = await startDevServer({ cliPath: findTemporalCli(repoRoot), port: await freePort() });
  const queue = `bench-cutover-${process.pid}`;
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'bench-secrets-'));
  process.env.RUNBOOKS_SECRETS_DIR = secretsDir;
  try {
    const worker = startProcess('workers/worker.ts', [], { RUNBOOKS_SET_CURRENT: 'true', TEMPORAL_ADDRESS: server.address, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_SECRETS_DIR: secretsDir });
    try {
      await worker.waitFor(/Worker ready/);
      const client = new Client({ connection: await Connection.connect({ address: server.address }) });
      try {
        const all: RunFigures[] = [];
        for (let i = 0; i < runs; i++) {
          const f = await oneRun(client, queue, secretsDir, i);
          all.push(f);
          console.log(`run ${i + 1}: ${f.requests} requests, ${f.failures} failed, ${f.resent} resent; steady p99 ${f.steadyP99.toFixed(0)} ms max ${f.steadyMax.toFixed(0)} ms (${f.steadyCount} requests); `
            + `switch worst ${f.switchWorst.toFixed(0)} ms p99 ${f.switchP99.toFixed(0)} ms (${f.switchCount} requests); approval -> first new answer ${f.toFirstNew.toFixed(0)} ms, -> last old answer ${f.toLastOld.toFixed(0)} ms `
            + `(${f.oldAfterApproval} old answers after approval); whole run ${f.run.toFixed(0)} ms`);
          for (const t of f.failureTexts) console.log(`  failed: ${t}`);
        }
        const of = (k: keyof RunFigures) => all.map((f) => f[k] as number);
        console.log(`\ncutover benchmark (migrateFirelyServer, nginx in front, ${SEED.patients} Patients + ${SEED.observations} Observations seeded, load ${LOAD.connections} connections / a PUT every ${LOAD.writeEvery}th request, ${runs} runs)`);
        console.log(countRow('failed requests, whole run (goal 0)', of('failures')));
        console.log(countRow('  resent (connection closed before any answer)', of('resent')));
        console.log(countRow('  requests, whole run', of('requests')));
        console.log(row('steady state, no switch (10 s): p99', of('steadyP99')));
        console.log(row('steady state, no switch (10 s): max', of('steadyMax')));
        console.log(row('during the switch: worst request', of('switchWorst')));
        console.log(row('during the switch: p99', of('switchP99')));
        console.log(row('cutover approval -> first answer from new', of('toFirstNew')));
        console.log(row('cutover approval -> all traffic on new', of('toLastOld')));
        console.log(row('whole run, start to end', of('run')));
        console.log(`\n  switch worst / steady p99: ${(pct(of('switchWorst'), 50) / pct(of('steadyP99'), 50)).toFixed(1)}x at p50; / steady max: ${(pct(of('switchWorst'), 50) / pct(of('steadyMax'), 50)).toFixed(1)}x`);
      } finally {
        await client.connection.close();
      }
    } finally {
      await worker.kill('SIGTERM');
    }
  } finally {
    await server.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  }
}
