/**
 * A DHIS2 source that pages without end, met by the snapshot's activities: a count past the cap,
 * the same page again, empty pages its pager says are there, a page past the cap. Each is refused
 * naming why, before anything reaches the target; a page in flight heartbeats and is aborted when
 * its activity is cancelled.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createDhis2Activities } from '../activities/dhis2';
import { closeDhis2Agents } from '../activities/dhis2/api';
import { MAX_SNAPSHOT_PAGES, MAX_SNAPSHOT_RESOURCES } from '../activities/dhis2/snapshot';
import { startHostilePeer, type HostilePeer } from './support/hostile-peer';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dhis2-paging-'));
const saved = { config: process.env.ORGUNIT_SYNC_CONFIG, secrets: process.env.RUNBOOKS_SECRETS_DIR };
let peer: HostilePeer | undefined;
const { copyPage, checkSnapshotTarget } = createDhis2Activities();

/** The peer as the source (127.0.0.1) and as the target (localhost): one configuration, like an operator's. */
async function hostileSource(answer: (url: URL, n: number) => unknown | 'hold') {
  peer = await startHostilePeer(answer);
  const port = new URL(peer.baseUrl).port;
  const file = path.join(dir, `sync-${port}.json`);
  writeFileSync(file, JSON.stringify({
    source: { baseUrl: peer.baseUrl, auth: { token: { secret: 'dhis2-token' } }, database: { host: '127.0.0.1', database: 'dhis2', user: 'replicator', password: { secret: 'dhis2-db' } } },
    targets: [{ name: 't1', baseUrl: `http://localhost:${port}`, auth: { token: { secret: 'dhis2-token' } } }],
  }));
  process.env.ORGUNIT_SYNC_CONFIG = file;
}
const page = (n: number, pageCount: number, items: unknown[]) => ({ pager: { page: n, pageCount, total: pageCount * 3, pageSize: 3 }, organisationUnits: items });
const ou = (n: number) => ({ id: `OU${String(n).padStart(9, '0')}`, name: `Unit ${n}`, level: 1 });
const run = <T>(env: MockActivityEnvironment, fn: () => Promise<T>) => env.run(fn).then(() => 'returned', (err: Error) => err.message);

beforeAll(() => {
  writeFileSync(path.join(dir, 'dhis2-token'), 'd2pat_test');
  writeFileSync(path.join(dir, 'dhis2-db'), 'x');
  process.env.RUNBOOKS_SECRETS_DIR = dir;
});
afterEach(async () => { await peer?.close(); peer = undefined; await closeDhis2Agents(); });
afterAll(() => {
  for (const [k, v] of [['ORGUNIT_SYNC_CONFIG', saved.config], ['RUNBOOKS_SECRETS_DIR', saved.secrets]] as const) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  rmSync(dir, { recursive: true, force: true });
});

test('a source counting more than the cap is refused at the preflight, naming the cap', async () => {
  await hostileSource((url) => url.pathname === '/api/me' ? { id: 'me' } : { pager: { page: 1, pageCount: 1e12, total: 1e12, pageSize: 1 }, organisationUnits: [] });
  expect(await run(new MockActivityEnvironment(), () => checkSnapshotTarget({ target: 't1' })))
    .toMatch(new RegExp(`counts 1000000000000 organisationUnits: a snapshot copies at most ${MAX_SNAPSHOT_RESOURCES} of a type \\(the cap on what it pages through\\)`));
});

test('the same page again (paging ignored): refused, nothing sent to the target', async () => {
  await hostileSource(() => page(1, 5, [ou(1), ou(2), ou(3)]));
  expect(await run(new MockActivityEnvironment(), () => copyPage({ target: 't1', type: 'organisationUnit', page: 2, pageSize: 3, dryRun: false })))
    .toMatch(/answered GET \/api\/organisationUnits page 2 with page 1: it ignores paging/);
  expect(peer!.requests).toBe(1);
});

test('empty pages the pager says are there: refused as a page that adds nothing; a page past the cap is not asked for', async () => {
  await hostileSource((url) => page(Number(url.searchParams.get('page')), 1e6, []));
  expect(await run(new MockActivityEnvironment(), () => copyPage({ target: 't1', type: 'organisationUnit', page: 7, pageSize: 3, dryRun: false })))
    .toMatch(/page 7 with no items though its pager says there are 1000000 pages: a page that adds nothing/);
  expect(peer!.requests).toBe(1);
  expect(await run(new MockActivityEnvironment(), () => copyPage({ target: 't1', type: 'organisationUnit', page: MAX_SNAPSHOT_PAGES + 1, pageSize: 3, dryRun: false })))
    .toMatch(new RegExp(`a snapshot reads at most ${MAX_SNAPSHOT_PAGES} pages \\(the cap on pages\\)`));
  expect(peer!.requests).toBe(1);
});

test('a page in flight heartbeats, and cancelling its activity aborts the request: no other follows', async () => {
  await hostileSource(() => 'hold');
  const env = new MockActivityEnvironment();
  const beat = new Promise<void>((resolve) => env.once('heartbeat', () => resolve()));
  const result = run(env, () => copyPage({ target: 't1', type: 'organisationUnit', page: 1, pageSize: 3, dryRun: false }));
  await peer!.held;
  await beat;
  env.cancel();
  expect(await result).not.toBe('returned');
  await peer!.heldClosed;
  expect(peer!.requests).toBe(1);
});
