/**
 * The Firely Server simulator against the sources the runbook's checks rest on (test/sims/firely/README.md,
 * "Sources"): the FHIR R4 REST and search rules the caught-up comparison uses, and the health
 * answers the notes take from Firely's documentation. The runbook tests are the firely-migration ones.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFerretDb, type FerretDb } from './support/ferretdb';
import { startFirelyServer, type FirelySim } from './sims/firely/control';

let ferret: FerretDb;
let work: string;
let server: FirelySim;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'firely-conformance-'));
  ferret = await startFerretDb();
  server = await startFirelyServer({ name: 'conf', version: '6.1.0', mongoUrl: ferret.uri('conformance'), stateDir: path.join(work, 'state') });
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await ferret?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function fhir(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.baseUrl}${urlPath}`, { method, headers: body ? { 'Content-Type': 'application/fhir+json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

// FHIR R4 search.html: _sort=-_lastUpdated orders newest first; _lastUpdated=ge<instant> filters; _count pages.
test('search: _sort=-_lastUpdated&_count=1 answers the newest write of the type; _lastUpdated=ge narrows to later writes', async () => {
  for (const id of ['c1', 'c2', 'c3']) expect((await fhir('PUT', `/Patient/${id}`, { resourceType: 'Patient', id })).status).toBe(201);
  const again = await fhir('PUT', '/Patient/c1', { resourceType: 'Patient', id: 'c1', active: true });
  expect(again.status).toBe(200);
  const newest = await fhir('GET', '/Patient?_sort=-_lastUpdated&_count=1');
  expect(newest.status).toBe(200);
  expect(newest.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
  expect(newest.body.entry[0].resource).toMatchObject({ id: 'c1', meta: { versionId: '2', lastUpdated: again.body.meta.lastUpdated } });
  const since = await fhir('GET', `/Patient?_lastUpdated=ge${encodeURIComponent(again.body.meta.lastUpdated)}`);
  expect(since.body.entry.map((e: any) => e.resource.id)).toEqual(['c1']);
});

// FHIR R4 http.html: a read of a deleted resource answers 410 Gone; an unknown one 404, with an OperationOutcome.
test('read: 410 after a delete, 404 for an id never written, both with an OperationOutcome', async () => {
  expect((await fhir('PUT', '/Patient/gone', { resourceType: 'Patient', id: 'gone' })).status).toBe(201);
  expect((await fhir('DELETE', '/Patient/gone')).status).toBe(204);
  const gone = await fhir('GET', '/Patient/gone');
  expect(gone.status).toBe(410);
  const never = await fhir('GET', '/Patient/never-written');
  expect(never.status).toBe(404);
  expect(never.body.resourceType).toBe('OperationOutcome');
});

// The notes, from Firely's documentation: $liveness 200 (402 with an invalid license); v6 counts with _total=accurate.
test('$liveness answers 200, and 402 when the license is not valid; counting asks _total=accurate', async () => {
  expect((await fhir('GET', '/$liveness')).status).toBe(200);
  const total = await fhir('GET', '/Patient?_summary=count&_total=accurate');
  expect(total.body).toMatchObject({ resourceType: 'Bundle', total: expect.any(Number) });
  server.setFaults({ licenseInvalid: true });
  try {
    expect((await fhir('GET', '/$liveness')).status).toBe(402);
  } finally {
    server.setFaults({});
  }
});
