/**
 * `npm run bench -- orgunit-sync`: updates to org units on the source at a steady rate, and for
 * each the time from its COMMIT on the source to the change visible on each target; throughput.
 * The same workload through a bare loop (on each source write: GET from the source, import into
 * each target; no change capture, no Temporal) is the floor.
 *
 * Options: --updates N (2000) --units N (500) --rate N per second (100); --bulk N: also N new org
 * units in ONE source import, the time until the last is on every target (runbooks, then the bare
 * loop); --per-resource: the sync without `batches` (one workflow per resource and target).
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { floorPokeSignal } from '../test/workflows/floor';
import { batchProgressQuery } from '../contracts/dhis2/messages';
import { batchWorkflowId } from '../contracts/dhis2/resources';
import { loadLine, pct, withFloorWorker } from './lib/bench';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startDhis2Lab, sourceImport, type Dhis2Lab } from '../test/lab/dhis2';
import { startProcess } from '../test/support/processes';
import type { Dhis2Write } from '../test/sims/dhis2';

interface Workload { updates: number; units: number; rate: number; bulk?: number; perResource?: boolean }
interface Figures { p50: number; p95: number; max: number; throughput: number; seconds: number }

const unitId = (i: number) => `B${String(i).padStart(10, '0')}`;
const ou = (i: number, version: number, parent: string) => ({ id: unitId(i), name: `Bench ${i} v${version}`, shortName: `Bench ${i}`, openingDate: '2020-01-01', parent: { id: parent } });
const versionOf = (w: Dhis2Write) => Number(/ v(\d+)$/.exec(String(w.body?.name ?? ''))?.[1] ?? -1);

/** Runs the workload against the source and measures when each update became visible on every target. */
async function measure(lab: Dhis2Lab, load: Workload, round: number): Promise<Figures> {
  const committed = new Map<string, number>();
  const visible = new Map<string, Map<string, number>>();
  const seen = new Map<string, number>();
  const offs = Object.entries(lab.targets).map(([name, sim]) => sim.onWrite((w) => {
    const v = versionOf(w);
    if (v < 0) return;
    const key = `${name}:${w.uid}`;
    if ((seen.get(key) ?? -1) >= v) return;
    seen.set(key, v);
    const byVersion = visible.get(key) ?? new Map<string, number>();
    byVersion.set(String(v), w.at);
    visible.set(key, byVersion);
  }));
  const offSource = lab.source.onWrite((w) => { const v = versionOf(w); if (v >= 0) committed.set(`${w.uid}:${v}`, w.at); });

  const parent = unitId(999_999);
  const start = Date.now();
  // BENCH_VERBOSE=1: where the time goes, every 2 s (the listener's backlog vs the workflows').
  const statusUrl = /statusUrl":"([^"]+)"/.exec(lab.listener?.output() ?? '')?.[1];
  const probe = process.env.BENCH_VERBOSE && statusUrl ? setInterval(() => {
    fetch(statusUrl).then((r) => r.json() as Promise<{ lagSeconds: number; pendingTransactions: number; handedOver: number }>).then((st) => {
      const behind = [...committed.keys()].length;
      console.log(`  t+${((Date.now() - start) / 1000).toFixed(0)}s listener behind ${st.lagSeconds.toFixed(1)}s (${st.pendingTransactions} txns), handed over ${st.handedOver}; source commits ${behind}; target writes ${[...seen.values()].length}`);
    }).catch(() => undefined);
  }, 2000) : undefined;
  const inFlight = new Set<Promise<void>>();
  const planned: Array<{ uid: string; version: number }> = [];
  for (let n = 0; n < load.updates; n++) {
    const i = n % load.units;
    const version = round * 1000 + Math.floor(n / load.units) + 1;
    planned.push({ uid: unitId(i), version });
    const due = start + (n * 1000) / load.rate;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const p = sourceImport(lab, 'organisationUnit', [ou(i, version, parent)]).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 64) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);

  // Every update is visible once the target holds that version or a later one.
  const targets = Object.keys(lab.targets);
  const latencies: number[] = [];
  const deadline = Date.now() + Number(process.env.BENCH_WAIT_S ?? 300) * 1000;
  for (;;) {
    const done = planned.every(({ uid, version }) => targets.every((t) => (seen.get(`${t}:${uid}`) ?? -1) >= version));
    if (done) break;
    if (Date.now() > deadline) throw new Error('not every update reached every target within 5 minutes');
    await new Promise((r) => setTimeout(r, 50));
  }
  let lastVisible = 0;
  for (const { uid, version } of planned) {
    const at = committed.get(`${uid}:${version}`);
    if (at === undefined) throw new Error(`no commit seen for ${uid} v${version}`);
    for (const t of targets) {
      const versions = [...(visible.get(`${t}:${uid}`) ?? new Map()).entries()].map(([v, when]) => [Number(v), when] as const).filter(([v]) => v >= version);
      const when = Math.min(...versions.map(([, w]) => w));
      latencies.push(when - at);
      lastVisible = Math.max(lastVisible, when);
    }
  }
  offs.forEach((off) => off());
  offSource();
  if (probe) clearInterval(probe);
  const firstCommit = Math.min(...[...committed.values()]);
  const seconds = (lastVisible - firstCommit) / 1000;
  return { p50: pct(latencies, 50), p95: pct(latencies, 95), max: Math.max(...latencies), throughput: load.updates / seconds, seconds };
}

/** N new org units in one source import: seconds from its commit until the last is on every target. */
async function measureBulk(lab: Dhis2Lab, n: number, round: number, parent: string): Promise<number> {
  const uids = Array.from({ length: n }, (_, i) => `K${round}${String(i).padStart(9, '0')}`);
  const wanted = new Set(uids);
  const landed = new Map<string, number>();
  const offs = Object.entries(lab.targets).map(([name, sim]) => sim.onWrite((w) => {
    if (w.op === 'create' && wanted.has(w.uid)) landed.set(`${name}:${w.uid}`, w.at);
  }));
  let committed = 0;
  const offSource = lab.source.onWrite((w) => { if (wanted.has(w.uid)) committed = Math.max(committed, w.at); });
  try {
    await sourceImport(lab, 'organisationUnit', uids.map((id, i) => ({ id, name: `Bulk ${round}-${i}`, shortName: `Bulk ${round}-${i}`, openingDate: '2020-01-01', parent: { id: parent } })));
    const expected = uids.length * Object.keys(lab.targets).length;
    const deadline = Date.now() + 300_000;
    while (landed.size < expected) {
      if (Date.now() > deadline) throw new Error(`bulk: ${landed.size} of ${expected} creates on the targets within 5 minutes`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return (Math.max(...landed.values()) - committed) / 1000;
  } finally {
    offs.forEach((off) => off());
    offSource();
  }
}

/** The floor: on each source write, fetch it and import it into every target, nothing else. */
function bareLoop(lab: Dhis2Lab, sourceToken: string): () => void {
  const auth = { authorization: `ApiToken ${sourceToken}` };
  return lab.source.onWrite((w) => {
    void (async () => {
      const res = await fetch(`${lab.source.baseUrl}/api/organisationUnits/${w.uid}?fields=*`, { headers: auth });
      const { path: _p, level: _l, children: _c, ancestors: _a, leaf: _f, created: _cr, lastUpdated: _lu, createdBy: _cb, lastUpdatedBy: _lb, sharing: _s, users: _u, dataSets: _d, programs: _pr, organisationUnitGroups: _g, displayName: _dn, ...body } = await res.json() as Record<string, unknown>;
      await Promise.all(Object.values(lab.targets).map((t) => fetch(`${t.baseUrl}/api/metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL&skipSharing=true&userOverrideMode=CURRENT`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` }, body: JSON.stringify({ organisationUnits: [body] }),
      }).then((r) => r.text())));
    })().catch((err) => console.error('bare loop:', err));
  });
}

/**
 * Temporal alone, on the same server: an entity workflow per (unit, target) signalled with
 * signal-with-start once per update and target, each pass one local activity doing nothing.
 */
function temporalFloor(address: string, load: Workload, targets: number): Promise<Figures> {
  const queue = `bench-floor-${process.pid}`;
  return withFloorWorker(address, queue, async (client) => {
    // Each entity gets one warm-up signal, then one per update of its unit.
    const expected = (unit: number) => 1 + Math.floor((load.updates - 1 - unit) / load.units) + 1;
    const id = (unit: number, t: number) => `floor-${process.pid}-${t}-${unit}`;
    const send = (unit: number, t: number) => client.workflow.signalWithStart('signalFloor', {
      workflowId: id(unit, t), taskQueue: queue, args: [expected(unit)], signal: floorPokeSignal, signalArgs: [],
    });
    for (let u = 0; u < load.units; u++) await Promise.all(Array.from({ length: targets }, (_, t) => send(u, t)));
    const start = Date.now();
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < load.updates) { const n = next++; await Promise.all(Array.from({ length: targets }, (_, t) => send(n % load.units, t))); }
    }));
    await Promise.all(Array.from({ length: load.units * targets }, (_, i) => client.workflow.getHandle(id(Math.floor(i / targets), i % targets)).result()));
    const seconds = (Date.now() - start) / 1000;
    return { p50: NaN, p95: NaN, max: NaN, throughput: load.updates / seconds, seconds };
  });
}

const row = (label: string, f: Figures) => `  ${label.padEnd(26)} p50 ${f.p50.toFixed(0).padStart(5)} ms   p95 ${f.p95.toFixed(0).padStart(5)} ms   max ${f.max.toFixed(0).padStart(5)} ms   ${f.throughput.toFixed(0).padStart(4)} changes/s`;

export async function orgunitSyncBench(load: Workload, repoRoot: string): Promise<void> {
  const server = await startDevServer({ cliPath: findTemporalCli(repoRoot), port: await freePort() });
  const lab = await startDhis2Lab(['b1', 'b2']);
  const design = load.perResource ? 'one workflow per resource and target (batches: false)' : 'batches per target (batches: true)';
  if (!load.perResource) lab.writeConfig((c) => { c.batches = true; });
  if (process.env.BENCH_NO_NOTIFY) lab.writeConfig((c) => { for (const t of c.targets) t.notify = { ...t.notify, on: ['failure'] }; });
  const queue = `bench-orgunit-${process.pid}`;
  const env = { ...lab.workerEnv, RUNBOOKS_SET_CURRENT: 'true', TEMPORAL_ADDRESS: server.address, RUNBOOKS_TASK_QUEUE: queue };
  // BENCH_WORKER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": profile every thread of the worker.
  const worker = startProcess('workers/worker.ts', [], env, (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean));
  await worker.waitFor(/Worker ready/);
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  try {
    const parent = unitId(999_999);
    await sourceImport(lab, 'organisationUnit', [{ id: parent, name: 'Bench root', shortName: 'Bench root', openingDate: '2020-01-01' }]);
    await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: `bench-setup-${Date.now()}`, args: [lab.setupInput()] });
    process.env.TEMPORAL_ADDRESS = server.address;
    await lab.startListener(queue);
    // Warm-up (not measured): the units exist everywhere, each resource's workflow has run once.
    await sourceImport(lab, 'organisationUnit', Array.from({ length: load.units }, (_, i) => ou(i, 0, parent)));
    await measure(lab, { updates: load.units, units: load.units, rate: load.rate }, 0);

    // BENCH_VERBOSE=1: what the batches did (how many, and how many resources went to their own sync, and why).
    const batchReport = async (when: string) => {
      if (!process.env.BENCH_VERBOSE || load.perResource) return;
      for (const t of Object.keys(lab.targets)) {
        const p = await client.workflow.getHandle(batchWorkflowId(queue, t)).query(batchProgressQuery).catch((err) => ({ error: String(err) }));
        console.log(`  ${when}, batches to ${t}: ${JSON.stringify(p).slice(0, 1500)}`);
      }
    };
    await batchReport('after the warm-up');
    const flatOut = { ...load, rate: 100_000 };
    console.log(`org-unit sync benchmark: ${load.updates} updates over ${load.units} org units, two targets (notifications on), ${design}`);
    console.log(`at start: ${loadLine()}`);
    console.log(`latency at a steady ${load.rate} updates/s; throughput with the updates sent as fast as the source takes them`);
    const runbooks = await measure(lab, load, 1);
    console.log(row(`runbooks at ${load.rate}/s`, runbooks));
    const runbooksMax = await measure(lab, flatOut, 2);
    console.log(row('runbooks flat out', runbooksMax));
    await batchReport('after flat out');
    const bulk = load.bulk ? await measureBulk(lab, load.bulk, 1, parent) : undefined;
    if (bulk !== undefined) console.log(`  runbooks, ${load.bulk} new org units in one import: the last on both targets ${bulk.toFixed(1)} s after the commit`);

    await lab.listener!.kill('SIGTERM');
    const token = readFileSync(`${lab.secretsDir}/source-token`, 'utf8');
    const stop = bareLoop(lab, token);
    const bare = await measure(lab, load, 3);
    console.log(row(`bare loop at ${load.rate}/s`, bare));
    const bareMax = await measure(lab, flatOut, 4);
    console.log(row('bare loop flat out', bareMax));
    const bareBulk = load.bulk ? await measureBulk(lab, load.bulk, 2, parent) : undefined;
    if (bareBulk !== undefined) console.log(`  bare loop, ${load.bulk} new org units in one import: the last on both targets ${bareBulk.toFixed(1)} s after the commit`);
    stop();
    await lab.listener?.kill('SIGTERM');
    await worker.kill('SIGTERM');
    const floor = await temporalFloor(server.address, load, Object.keys(lab.targets).length);
    console.log(`  Temporal alone (signal-with-start + one local-activity pass per update and target, nothing else running): ${floor.throughput.toFixed(0)} updates/s`);
    console.log(`  ratio (runbooks / bare)    p50 ${(runbooks.p50 / bare.p50).toFixed(1)}x   p95 ${(runbooks.p95 / bare.p95).toFixed(1)}x   throughput ${(runbooksMax.throughput / bareMax.throughput).toFixed(2)}x`);
    console.log('\ntargets');
    console.log(`  p95 commit -> visible under 1 s at ${load.rate}/s:  ${runbooks.p95 < 1000 ? 'met' : 'MISSED'} (${runbooks.p95.toFixed(0)} ms)`);
    console.log(`  at least 100 changes/s:                ${runbooksMax.throughput >= 100 ? 'met' : 'MISSED'} (${runbooksMax.throughput.toFixed(0)}/s)`);
    if (bulk !== undefined) console.log(`  ${load.bulk} new org units on both targets within 10 s: ${bulk <= 10 ? 'met' : 'MISSED'} (${bulk.toFixed(1)} s)`);
    console.log(`at end: ${loadLine()}`);
  } catch (err) {
    // What the worker said last: the reason a measurement never finished.
    if (process.env.BENCH_VERBOSE) console.error(`the worker's last output:\n${worker.output().slice(-6000)}`);
    throw err;
  } finally {
    await lab.listener?.kill('SIGTERM');
    await worker.kill('SIGTERM');
    await client.connection.close();
    await lab.stop();
    await server.stop();
  }
}
