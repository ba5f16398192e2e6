/**
 * A Firely Server (or something in its place) that pages without end: the rollback's list of the
 * writes made on the new server follows `next` links, and must stop with an error naming why
 * (a page that adds nothing, a link back to a page read, the cap on pages), heartbeat each page,
 * and stop asking the moment its activity is cancelled.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { writesOnNewServerSince } from '../activities/firely/servers';
const MAX_SEARCH_PAGES = 1000;
import { startHostilePeer, type HostilePeer } from './support/hostile-peer';

const patient = (id: string) => ({ resource: { resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated: '2030-01-01T00:00:00Z' } } });
const bundle = (entries: unknown[], next?: string) => ({ resourceType: 'Bundle', type: 'searchset', entry: entries, ...(next ? { link: [{ relation: 'next', url: next }] } : {}) });

let peer: HostilePeer | undefined;
afterEach(async () => { await peer?.close(); peer = undefined; });

/** The rollback's activity against the peer (as both servers), with its heartbeats. */
function listWrites(env = new MockActivityEnvironment()) {
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const run = env.run(writesOnNewServerSince, { oldUrl: peer!.baseUrl, newUrl: peer!.baseUrl, types: ['Patient'], since: '2030-01-01T00:00:00Z' });
  return { env, beats, result: run.then(() => 'returned', (err: Error) => err.message) };
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms).unref())]);

test('empty pages with ever-new next links: stopped at the first, naming why', async () => {
  peer = await startHostilePeer((url, n) => bundle([], `${peer!.baseUrl}/Patient?page=${n + 1}`));
  const { result, beats } = listWrites();
  expect(await within(result, 30_000, 'the search did not end')).toMatch(/page 1 of the search added no resource yet links to a next page: the server pages without end; stopped/);
  expect(peer.requests).toBe(1);
  expect(beats.length).toBeGreaterThanOrEqual(1);
});

test('the same next link again: stopped when it comes back, naming why', async () => {
  peer = await startHostilePeer((url, n) => bundle([patient(`p${n}`)], `${peer!.baseUrl}/Patient?page=2`));
  const { result } = listWrites();
  expect(await within(result, 30_000, 'the search did not end')).toMatch(/page 2 of the search links back to a page already read: the server pages in a circle; stopped/);
  expect(peer.requests).toBe(2);
});

test('ever-new pages with ever-new links: stopped at the cap on pages, which the error names; each page heartbeats', async () => {
  peer = await startHostilePeer((url, n) => bundle([patient(`p${n}`)], `${peer!.baseUrl}/Patient?page=${n + 1}`));
  const { result, beats } = listWrites();
  expect(await within(result, 60_000, 'the search did not end')).toMatch(new RegExp(`did not end within ${MAX_SEARCH_PAGES} pages \\(the cap on pages followed\\)`));
  expect(peer.requests).toBe(MAX_SEARCH_PAGES);
  expect(beats.length).toBeGreaterThanOrEqual(MAX_SEARCH_PAGES);
});

test('cancelled mid-search: the request in flight is aborted and no other request follows', async () => {
  peer = await startHostilePeer((url, n) => n === 5 ? 'hold' : bundle([patient(`p${n}`)], `${peer!.baseUrl}/Patient?page=${n + 1}`));
  const { env, result } = listWrites();
  await within(peer.held, 30_000, 'the fifth page was not asked for');
  env.cancel();
  expect(await within(result, 30_000, 'the cancelled activity did not end')).toMatch(/cancel/i);
  await within(peer.heldClosed, 30_000, 'the request in flight was not aborted');
  // The activity has ended: nothing of it is left to ask again.
  expect(peer.requests).toBe(5);
});
