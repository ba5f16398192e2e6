/**
 * Issue 24, findings 2 and 3: no peer's answer can take the worker down. The real worker (its
 * DHIS2 targets' workers and the sync's fast path in the same process) is flooded at once with the
 * worst answers of every peer kind — DHIS2 targets and source, IRIS mirror_status.cxw and the
 * application URL, FHIR servers: huge bodies, wide and deep JSON, bodies that never end, slow drips
 * — while it runs another runbook to completion. Its memory stays bounded, and each flooded
 * activity fails with an error that names the limit it hit.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { sourceChangedSignal, syncProgressQuery, syncWorkflowType, type SyncArgs } from '../contracts/dhis2/messages';
import { syncWorkflowId } from '../contracts/dhis2/resources';
import { AnswerTooLarge, parseLimited } from '../activities/lib/http';
import { startHostileHttp, type HostileHttp } from './support/hostile-http';
import { eventually, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { approveUntilDone, startGated, tempDir } from './support/runs';

const modes = ['huge', 'wide', 'dense', 'deep', 'endless', 'drip'] as const;
type Mode = typeof modes[number];

let hostile: HostileHttp;
let client: Client;
let worker: Proc;
const queue = uniqueQueue('hostile');

beforeAll(async () => {
  hostile = await startHostileHttp();
  client = await testClient();
  const dir = tempDir('hostile-peers-');
  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets, { mode: 0o700 });
  writeFileSync(path.join(secrets, 'dhis2-token'), 'd2pat_hostilepeertest0000', { mode: 0o600 });
  const auth = { token: { secret: 'dhis2-token' } };
  const retry = { giveUpAfter: '1h', maximumInterval: '2s' };
  const config = {
    source: {
      baseUrl: hostile.url('dhis2'), auth,
      database: { host: '127.0.0.1', database: 'dhis2', user: 'runbooks_cdc', password: { secret: 'dhis2-token' } },
    },
    targets: [
      ...modes.map((m) => ({ name: `t-${m}`, baseUrl: hostile.url(m), auth, retry })),
      // A target that answers well: its snapshot reads the hostile source's pages.
      { name: 'copy', baseUrl: hostile.url('dhis2-target'), auth, retry },
    ],
  };
  writeFileSync(path.join(dir, 'orgunit-sync.json'), JSON.stringify(config));
  worker = await startWorker(queue, { RUNBOOKS_SECRETS_DIR: secrets, ORGUNIT_SYNC_CONFIG: path.join(dir, 'orgunit-sync.json') });
}, 120_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await hostile?.close();
});

const rssLimit = 600 * 2 ** 20;

/** The peak resident memory of a process, sampled from /proc until stopped; `passed` rejects once it passes `limit`. */
function watchRss(pid: number, limit = rssLimit) {
  const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  let peak = rss();
  let fail: (err: Error) => void = () => undefined;
  const passed = new Promise<never>((_, reject) => { fail = reject; });
  passed.catch(() => undefined);
  const timer = setInterval(() => {
    try { peak = Math.max(peak, rss()); } catch { /* the process is gone: the test says so */ }
    if (peak > limit) { clearInterval(timer); fail(new Error(`The worker's memory passed ${Math.round(limit / 2 ** 20)} MB under the flood (RSS ${Math.round(peak / 2 ** 20)} MB)`)); }
  }, 50);
  return { passed, stop: () => { clearInterval(timer); return peak; } };
}

/** Every message down a failure's cause chain. */
function messages(err: unknown): string {
  const out: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined, i = 0; e && i < 10; e = e.cause as typeof e, i++) if (e.message) out.push(e.message);
  return out.join(' <- ');
}

const failureOf = (handle: WorkflowHandle) => handle.result().then((r) => `succeeded: ${JSON.stringify(r)}`, messages);

/** Why a sync's change did not apply: its parked failure, or its pending activity's last failure (still retrying). */
async function syncFailure(handle: WorkflowHandle): Promise<string | undefined> {
  const parked = (await handle.query(syncProgressQuery)).parked?.error;
  if (parked) return parked;
  const pending = (await handle.describe()).raw.pendingActivities ?? [];
  return pending.map((a) => a.lastFailure?.message).filter(Boolean).join('; ') || undefined;
}

const uid = () => `H${Math.random().toString(36).slice(2, 12).padEnd(10, '0')}`;

test('flooded with the worst answers of every peer at once, the worker keeps its memory bounded, serves another runbook, and each flooded activity names the limit it hit', async () => {
  const baseline = watchRss(worker.child.pid!).stop();
  const rss = watchRss(worker.child.pid!);

  // DHIS2: one sync per hostile target (its fast path runs inside this worker), a snapshot of each,
  // and a snapshot of a good target whose source answers its pages with a body that never ends.
  const syncs = new Map<Mode, WorkflowHandle>();
  for (const m of modes) {
    const args: SyncArgs = { target: `t-${m}`, type: 'organisationUnit', uid: uid(), settings: { idleAfter: '10m', giveUpAfter: '1h', maximumInterval: '2s' } };
    syncs.set(m, await client.workflow.signalWithStart(syncWorkflowType, {
      workflowId: syncWorkflowId(args.target, args.type, args.uid), taskQueue: queue, args: [args], signal: sourceChangedSignal, signalArgs: [{}],
    }));
  }
  const snapshot = (target: string) => client.workflow.start('orgUnitSnapshot', {
    taskQueue: queue, workflowId: `snapshot-${target}-${queue}`, args: [{ requestedBy: 'alice', target, pageSize: 200 }],
  });
  const snapshots = new Map<string, WorkflowHandle>();
  for (const target of ['copy', ...modes.filter((m) => m !== 'drip').map((m) => `t-${m}`)]) snapshots.set(target, await snapshot(target));

  // IRIS health probes and Firely's first questions, against every hostile mode.
  const probes = await client.workflow.start('probeHostilePeers', {
    taskQueue: queue, workflowId: `probes-${queue}`,
    args: [{
      statusUrls: modes.map((m) => `${hostile.url(m)}/csp/mirror_status.cxw`),
      applicationUrl: `${hostile.url('endless')}/app/health`,
      fhirUrls: modes.map((m) => `${hostile.url(m)}/fhir`),
    }],
  });

  // A worker that dies, or whose memory passes the bound, ends every wait below at once, saying so.
  const died = worker.exited.then((code) => { throw new Error(`The worker exited (${code}) under the flood; peak RSS ${Math.round(rss.stop() / 2 ** 20)} MB:\n${worker.output().slice(-3000)}`); });
  died.catch(() => undefined);
  const alive = <T>(p: Promise<T>) => Promise.race([p, died, rss.passed]);

  // Meanwhile, another runbook runs to completion on the same worker.
  const { handle: gated } = await startGated(client, queue, {});
  await expect(alive(approveUntilDone(gated))).resolves.toEqual({ outcome: 'done' });

  const probed = await alive(probes.result()) as Record<string, string>;
  const snapshotFailures = new Map<string, string>();
  for (const [target, handle] of snapshots) snapshotFailures.set(target, await alive(failureOf(handle)));
  const syncFailures = new Map<Mode, string>();
  for (const [m, handle] of syncs) {
    // The drip: each attempt ends at its 30 s deadline; the others are parked at once.
    syncFailures.set(m, await alive(eventually(() => syncFailure(handle), `the sync on t-${m} to fail`, 120_000)));
  }
  const peak = rss.stop();

  // The worker is alive, and its memory stayed bounded (it was ~880 MB more for one 300 MB probe before).
  expect(worker.child.exitCode).toBeNull();
  expect(worker.child.signalCode).toBeNull();
  console.log(`worker RSS: ${Math.round(baseline / 2 ** 20)} MB before the flood, ${Math.round(peak / 2 ** 20)} MB at its peak`);
  expect(peak).toBeLessThan(rssLimit);

  // DHIS2 targets: each call's own limit (a resource: 4 MiB; shape; the deadline), named.
  expect(syncFailures.get('huge')).toMatch(/GET \/api\/organisationUnits\/\w+ with an answer of 300000000 bytes \(Content-Length\), more than the 4 MiB this call accepts/);
  expect(syncFailures.get('wide')).toMatch(/answer larger than 4 MiB, the most this call accepts \(cut there: the rest was not read\)/);
  expect(syncFailures.get('endless')).toMatch(/answer larger than 4 MiB, the most this call accepts/);
  expect(syncFailures.get('dense')).toMatch(/JSON with more than 262144 objects and arrays, the most an answer of at most 4 MiB may hold \(not parsed\)/);
  expect(syncFailures.get('deep')).toMatch(/JSON nested deeper than 64 levels/);
  expect(syncFailures.get('drip')).toMatch(/did not finish answering GET \/api\/organisationUnits\/\w+ within 30 s, the most this call waits/);
  // Their snapshots stop at GET /api/me (256 KiB); the source's endless page at the page's bound, saying what to do.
  for (const m of ['huge', 'wide', 'endless', 'dense', 'deep'] as const) expect(snapshotFailures.get(`t-${m}`)).toMatch(/GET \/api\/me with an (answer larger than 256 KiB|answer of 300000000 bytes|JSON)/);
  expect(snapshotFailures.get('copy')).toMatch(/DHIS2 source .* answered GET \/api\/organisationUnits with an answer larger than 6400 KiB, the most this call accepts \(cut there: the rest was not read\): run the snapshot again with a smaller pageSize/);

  // IRIS: mirror_status.cxw at 64 KiB, the application page at 1 MiB, the drip at the probe's deadline.
  expect(probed.iris).toMatch(/^Not as it should be \d+ s after the switch: /);
  for (const m of ['huge', 'wide', 'dense', 'deep', 'endless'] as const) {
    expect(probed.iris).toContain(`${hostile.url(m)}/csp/mirror_status.cxw answers no answer (answer larger than 64 KiB, the most this call accepts (cut there: the rest was not read))`);
  }
  expect(probed.iris).toContain(`${hostile.url('drip')}/csp/mirror_status.cxw answers no answer (no whole answer within 5 s, the most a probe waits)`);
  expect(probed.iris).toContain(`${hostile.url('endless')}/app/health answers no answer (answer larger than 1 MiB`);

  // Firely: a single answer at 2 MiB, its shape, the whole answer within twice the request's timeout.
  const fhir = (m: Mode) => `${probed[`fhirCheck${modes.indexOf(m)}`]} | ${probed[`fhirCount${modes.indexOf(m)}`]}`;
  for (const m of ['huge', 'wide', 'dense', 'endless'] as const) expect(fhir(m)).toMatch(/\$liveness: answer larger than 2 MiB.*\| .*Patient\?_summary=count&_total=accurate: answer larger than 2 MiB/);
  expect(fhir('deep')).toMatch(/\$liveness: JSON nested deeper than 64 levels.*\| .*JSON nested deeper than 64 levels/);
  expect(fhir('drip')).toMatch(/\$liveness: no whole answer within 20 s.*\| .*no whole answer within 60 s/);
}, 300_000);

test('the bounded JSON parse counts only structure: brackets and escaped quotes inside strings are text, and real answers near their limit parse', () => {
  const inString = JSON.stringify({ name: `${'['.repeat(100)}\\"{{{${'{'.repeat(100_000)}` });
  expect(parseLimited(inString, 256 * 1024)).toEqual(JSON.parse(inString));
  // A group of 100,000 members, and a polygon of 100,000 points: real answers within 4 MiB.
  const group = JSON.stringify({ id: 'Aaaaaaaaaa1', organisationUnits: Array.from({ length: 100_000 }, (_, i) => ({ id: `B${String(i).padStart(10, '0')}` })) });
  const polygon = JSON.stringify({ id: 'Aaaaaaaaaa1', geometry: { type: 'Polygon', coordinates: [Array.from({ length: 100_000 }, (_, i) => [-11.7942 + i / 1e6, 8.6312])] } });
  for (const text of [group, polygon]) expect(text.length).toBeLessThan(4 * 2 ** 20);
  expect(parseLimited(group, 4 * 2 ** 20)).toEqual(JSON.parse(group));
  expect(parseLimited(polygon, 4 * 2 ** 20)).toEqual(JSON.parse(polygon));
  expect(() => parseLimited(`${'['.repeat(65)}${']'.repeat(65)}`, 256 * 1024)).toThrow(AnswerTooLarge);
  expect(() => parseLimited(`[${'{},'.repeat(16_384)}{}]`, 256 * 1024)).toThrow(/more than 16384 objects and arrays, the most an answer of at most 256 KiB may hold/);
  expect(() => parseLimited('{"a": nope}', 256 * 1024)).toThrow(SyntaxError);
});
