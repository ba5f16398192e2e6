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

// ---- The Administration API (firely-docs maintenance/administration_api.rst, conformanceresources.rst, multiversion.rst) ----

const admin = (method: string, urlPath: string, body?: unknown) => fhir(method, `/administration${urlPath}`, body);
const myPatient = { resourceType: 'StructureDefinition', id: 'MyPatient', url: 'http://example.org/fhir/StructureDefinition/MyPatient', version: '1', name: 'MyPatient',
  status: 'active', kind: 'resource', abstract: false, type: 'Patient', fhirVersion: '4.0.1', baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient', derivation: 'constraint' };

// conformanceresources.rst "Default Conformance Resources" and multiversion.rst: the specification's resources are loaded
// into the administration database at first start; R4 ids end in -Fhir4.0.
test('administration: a server on an empty administration database loads the specification\'s conformance resources; search by url, _elements, paging', async () => {
  const byUrl = await admin('GET', `/StructureDefinition?url=${encodeURIComponent('http://hl7.org/fhir/StructureDefinition/Patient')}`);
  expect(byUrl.status).toBe(200);
  expect(byUrl.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
  expect(byUrl.body.entry[0].resource).toMatchObject({ resourceType: 'StructureDefinition', id: 'Patient-Fhir4.0', url: 'http://hl7.org/fhir/StructureDefinition/Patient', meta: { versionId: '1' } });
  const slim = await admin('GET', '/StructureDefinition?_elements=url,version&_count=1');
  expect(Object.keys(slim.body.entry[0].resource).sort()).toEqual(['id', 'meta', 'resourceType', 'url', 'version']);
  const next = slim.body.link.find((l: any) => l.relation === 'next');
  expect(next).toBeDefined();
  const page2 = await fetch(next.url).then((r) => r.json() as Promise<any>);
  expect(page2.entry[0].resource.id).not.toBe(slim.body.entry[0].resource.id);
});

// conformanceresources.rst "Manage Conformance Resources with the Administration API": PUT with your own id; canonical urls unique;
// SearchParameter base + code unique; multiversion.rst: a StructureDefinition's fhirVersion must match the request's (R4).
test('administration: PUT creates (201) and updates (200) with the caller\'s id; a second canonical url, a clashing SearchParameter and an R3 StructureDefinition are refused', async () => {
  const created = await admin('PUT', '/StructureDefinition/MyPatient', myPatient);
  expect(created.status).toBe(201);
  expect(created.body).toMatchObject({ id: 'MyPatient', meta: { versionId: '1' } });
  expect((await admin('PUT', '/StructureDefinition/MyPatient', { ...myPatient, status: 'retired' })).status).toBe(200);
  expect((await admin('GET', '/StructureDefinition/MyPatient')).body).toMatchObject({ status: 'retired', meta: { versionId: '2' } });
  const twice = await admin('POST', '/StructureDefinition', { ...myPatient, id: 'MyPatient2' });
  expect(twice.status).toBe(400);
  expect(twice.body.issue[0].diagnostics).toMatch(/canonical url 'http:\/\/example.org\/fhir\/StructureDefinition\/MyPatient' exists already \(StructureDefinition\/MyPatient\)/);
  const sp = { resourceType: 'SearchParameter', id: 'Patient-mrn', url: 'http://example.org/fhir/SearchParameter/Patient-mrn', name: 'mrn', status: 'active', code: 'mrn', base: ['Patient'], type: 'token', expression: 'Patient.identifier' };
  expect((await admin('PUT', '/SearchParameter/Patient-mrn', sp)).status).toBe(201);
  const clash = await admin('PUT', '/SearchParameter/Patient-mrn2', { ...sp, id: 'Patient-mrn2', url: 'http://example.org/fhir/SearchParameter/Patient-mrn2' });
  expect(clash.status).toBe(400);
  expect(clash.body.issue[0].diagnostics).toMatch(/base and code must be unique/);
  const r3 = await admin('PUT', '/StructureDefinition/OldPatient', { ...myPatient, id: 'OldPatient', url: 'http://example.org/fhir/StructureDefinition/OldPatient', fhirVersion: '3.0.1' });
  expect(r3.status).toBe(400);
  expect((await admin('DELETE', '/SearchParameter/Patient-mrn')).status).toBe(204);
  expect((await admin('GET', '/SearchParameter/Patient-mrn')).status).toBe(410);
});

// administration_api.rst: the operations ($import-resources, $reindex, $reset, $preload) exist but are not modelled: refused by name;
// a type the Administration API does not serve is not found. 423 while conformance resources load; 403 outside AllowedNetworks.
test('administration: what is not modelled is refused by name; 423 while loading, 403 outside AllowedNetworks', async () => {
  const op = await admin('POST', '/$import-resources');
  expect(op.status).toBe(400);
  expect(op.body.issue[0]).toMatchObject({ code: 'not-supported', diagnostics: expect.stringMatching(/\$import-resources .*not implemented by the Firely Server simulator/) });
  expect((await admin('GET', '/Patient')).status).toBe(404);
  expect((await admin('GET', '/StructureDefinition?name=Patient')).status).toBe(400);
  server.setFaults({ adminLoading: { requests: 1 } });
  try {
    expect((await admin('GET', '/StructureDefinition')).status).toBe(423);
    expect((await admin('GET', '/StructureDefinition')).status).toBe(200);
    server.setFaults({ adminForbidden: true });
    expect((await admin('GET', '/StructureDefinition')).status).toBe(403);
  } finally {
    server.setFaults({});
  }
});
