/**
 * The DHIS2 simulator answers like DHIS2 (status codes, WebMessages, import reports) and writes real
 * rows in DHIS2-shaped PostgreSQL tables, which is what the org-unit sync's change capture reads.
 */
import { Dhis2Sim, type Dhis2Write } from './sims/dhis2';
import { startLocalPostgres, type LocalPostgres } from './lab/local-postgres';

let pg: LocalPostgres;
let sim: Dhis2Sim;
const TOKEN = 'd2pat_simulatortesttoken0000000000000001';
const BASIC = { Authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` };

async function api(method: string, path: string, opts: { json?: unknown; text?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...BASIC, ...opts.headers };
  let body: string | undefined;
  if (opts.json !== undefined) [body, headers['Content-Type']] = [JSON.stringify(opts.json), 'application/json'];
  if (opts.text !== undefined) [body, headers['Content-Type']] = [opts.text, 'text/plain'];
  const res = await fetch(`${sim.baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

const importMetadata = (bundle: unknown, params = 'importStrategy=CREATE_AND_UPDATE&atomicMode=ALL') =>
  api('POST', `/api/metadata?${params}`, { json: bundle });

const orgUnit = (id: string, name: string, extra: Record<string, unknown> = {}) =>
  ({ id, name, shortName: name, openingDate: '2020-01-01T00:00:00.000', ...extra });

const rows = (text: string, params: unknown[] = []) => pg.sql<Record<string, any>>(text, params, 'dhis2_sim_test');

beforeAll(async () => {
  pg = await startLocalPostgres();
  await pg.createDatabase('dhis2_sim_test');
  sim = await Dhis2Sim.start({
    name: 'source', tokens: [TOKEN],
    db: { host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database: 'dhis2_sim_test' },
    users: [{ username: 'admin', password: 'district', id: 'M5zQapPyTZI' }, { username: 'alice', password: 'district', id: 'aliceUserId' }, { username: 'bob', password: 'district', id: 'bobUserId01' }],
  });
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  pg?.stop();
});

test('every API request needs Basic auth or a personal access token', async () => {
  const anonymous = await fetch(`${sim.baseUrl}/api/me`);
  expect(anonymous.status).toBe(401);
  expect(await anonymous.json()).toEqual({ httpStatus: 'Unauthorized', httpStatusCode: 401, status: 'ERROR', message: 'Unauthorized' });
  expect((await api('GET', '/api/me', { headers: { Authorization: `Basic ${Buffer.from('admin:wrong').toString('base64')}` } })).status).toBe(401);
  const me = await api('GET', '/api/me', { headers: { Authorization: `ApiToken ${TOKEN}` } });
  expect(me).toMatchObject({ status: 200, body: { id: 'M5zQapPyTZI', username: 'admin' } });
  expect(sim.requests.slice(-3).map((r) => r.auth)).toEqual(['none', 'basic', 'token']);
});

test('a bundle creates a parent then its child; the server computes path and level', async () => {
  const writes: Dhis2Write[] = [];
  const off = sim.onWrite((w) => writes.push(w));
  const res = await importMetadata({ organisationUnits: [orgUnit('RootUnit001', 'Root', { code: 'ROOT' }), orgUnit('ChildUnit01', 'Child', { parent: { id: 'RootUnit001' } })] });
  off();
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ httpStatus: 'OK', status: 'OK', response: { responseType: 'ImportReport', stats: { created: 2, total: 2 } } });
  const child = await api('GET', '/api/organisationUnits/ChildUnit01?fields=id,path,level,parent,ancestors,leaf');
  expect(child.body).toEqual({ id: 'ChildUnit01', path: '/RootUnit001/ChildUnit01', level: 2, parent: { id: 'RootUnit001' }, ancestors: [{ id: 'RootUnit001' }], leaf: true });
  expect(await rows('SELECT uid, path, hierarchylevel FROM organisationunit ORDER BY hierarchylevel')).toEqual([
    { uid: 'RootUnit001', path: '/RootUnit001', hierarchylevel: 1 },
    { uid: 'ChildUnit01', path: '/RootUnit001/ChildUnit01', hierarchylevel: 2 },
  ]);
  expect(writes.map((w) => [w.uid, w.op, w.body?.level])).toEqual([['RootUnit001', 'create', 1], ['ChildUnit01', 'create', 2]]);

  // The same object again is "updated" and its row is written (lastUpdated moves), as DHIS2's import does.
  const [before] = await rows('SELECT lastupdated FROM organisationunit WHERE uid = $1', ['RootUnit001']);
  const rewrites: Dhis2Write[] = [];
  const stop = sim.onWrite((w) => rewrites.push(w));
  const again = await importMetadata({ organisationUnits: [orgUnit('RootUnit001', 'Root', { code: 'ROOT' })] });
  stop();
  expect(again.body.response.stats).toMatchObject({ updated: 1 });
  const [after] = await rows('SELECT lastupdated FROM organisationunit WHERE uid = $1', ['RootUnit001']);
  expect(after.lastupdated.getTime()).toBeGreaterThanOrEqual(before.lastupdated.getTime());
  expect(rewrites.map((w) => [w.uid, w.op])).toEqual([['RootUnit001', 'update']]);
});

test('moving a unit rewrites the path and level of its whole subtree', async () => {
  await importMetadata({ organisationUnits: [orgUnit('MiddleUnit1', 'Middle', { parent: { id: 'RootUnit001' } }), orgUnit('LeafUnit001', 'Leaf', { parent: { id: 'MiddleUnit1' } })] });
  await importMetadata({ organisationUnits: [orgUnit('MiddleUnit1', 'Middle', { parent: { id: 'ChildUnit01' } })] });
  expect(await rows("SELECT uid, path, hierarchylevel FROM organisationunit WHERE uid IN ('MiddleUnit1', 'LeafUnit001') ORDER BY uid")).toEqual([
    { uid: 'LeafUnit001', path: '/RootUnit001/ChildUnit01/MiddleUnit1/LeafUnit001', hierarchylevel: 4 },
    { uid: 'MiddleUnit1', path: '/RootUnit001/ChildUnit01/MiddleUnit1', hierarchylevel: 3 },
  ]);
});

test('a missing parent is E5002 and atomicMode=ALL writes nothing of the bundle', async () => {
  const res = await importMetadata({ organisationUnits: [orgUnit('ValidUnit01', 'Valid'), orgUnit('OrphanUnit1', 'Orphan', { parent: { id: 'NoSuchUnit1' } })] });
  expect(res.status).toBe(409);
  expect(res.body).toMatchObject({ httpStatus: 'Conflict', status: 'ERROR', message: 'One or more errors occurred, please see full details in import report.' });
  expect(res.body.response.stats).toEqual({ created: 0, updated: 0, deleted: 0, ignored: 2, total: 2 });
  const [error] = res.body.response.typeReports[0].objectReports[1].errorReports;
  expect(error).toMatchObject({
    errorCode: 'E5002', errorProperty: 'parent', mainId: 'OrphanUnit1',
    errorProperties: ['[NoSuchUnit1] (OrganisationUnit)', 'Orphan [OrphanUnit1] (OrganisationUnit)', 'parent'],
    message: 'Invalid reference [NoSuchUnit1] (OrganisationUnit) on object Orphan [OrphanUnit1] (OrganisationUnit) for association `parent`',
  });
  expect(await rows("SELECT uid FROM organisationunit WHERE uid IN ('ValidUnit01', 'OrphanUnit1')")).toEqual([]);
});

test('a duplicate code is E5003; a metadata import can be told to answer 200 with status ERROR', async () => {
  const dup = await importMetadata({ organisationUnits: [orgUnit('SecondRoot1', 'Second', { code: 'ROOT' })] });
  expect(dup.status).toBe(409);
  expect(dup.body.response.typeReports[0].objectReports[0].errorReports[0]).toMatchObject({
    errorCode: 'E5003', errorProperty: 'code', message: 'Property `code` with value `ROOT` on object Second [SecondRoot1] (OrganisationUnit) already exists on object Root [RootUnit001] (OrganisationUnit)',
  });
  sim.answerErrorWith200Next(1);
  const quirk = await importMetadata({ organisationUnits: [orgUnit('QuirkUnit01', 'Quirk')] });
  expect(quirk.status).toBe(200);
  expect(quirk.body).toMatchObject({ status: 'ERROR', response: { status: 'ERROR' } });
  expect(await sim.get('organisationUnit', 'QuirkUnit01')).toBeUndefined();
});

test('deletes: children or data values block with E4030, a missing unit is 404', async () => {
  const withChildren = await api('DELETE', '/api/organisationUnits/RootUnit001');
  expect(withChildren.status).toBe(409);
  expect(withChildren.body).toEqual({
    httpStatus: 'Conflict', httpStatusCode: 409, status: 'ERROR', errorCode: 'E4030',
    message: 'Object could not be deleted because it is associated with another object: OrganisationUnit',
  });
  expect((await api('DELETE', '/api/organisationUnits/NoSuchUnit1')).body).toEqual({
    httpStatus: 'Not Found', httpStatusCode: 404, status: 'ERROR', message: 'OrganisationUnit with id NoSuchUnit1 could not be found.',
  });
  sim.block('LeafUnit001');
  expect((await api('DELETE', '/api/organisationUnits/LeafUnit001')).status).toBe(409);
  sim.unblock('LeafUnit001');
  expect(await api('DELETE', '/api/organisationUnits/LeafUnit001')).toMatchObject({ status: 200, body: { response: { responseType: 'ObjectReport', uid: 'LeafUnit001' } } });
  expect(await sim.get('organisationUnit', 'LeafUnit001')).toBeUndefined();
});

test('the membership endpoint touches only orgunitgroupmembers, and the group shows the member', async () => {
  await importMetadata({ organisationUnitGroups: [{ id: 'HospitalGrp', name: 'Hospitals', shortName: 'Hospitals', organisationUnits: [{ id: 'RootUnit001' }] }] });
  const before = await rows('SELECT lastupdated FROM orgunitgroup WHERE uid = $1', ['HospitalGrp']);
  const writes: Dhis2Write[] = [];
  const off = sim.onWrite((w) => writes.push(w));
  expect((await api('POST', '/api/organisationUnitGroups/HospitalGrp/organisationUnits/ChildUnit01')).status).toBe(204);
  off();
  expect(await rows('SELECT lastupdated FROM orgunitgroup WHERE uid = $1', ['HospitalGrp'])).toEqual(before);
  expect(await rows('SELECT count(*)::int AS n FROM orgunitgroupmembers')).toEqual([{ n: 2 }]);
  const group = await api('GET', '/api/organisationUnitGroups/HospitalGrp?fields=organisationUnits');
  expect(group.body).toEqual({ organisationUnits: [{ id: 'ChildUnit01' }, { id: 'RootUnit001' }] });
  expect(writes).toMatchObject([{ type: 'organisationUnitGroup', uid: 'HospitalGrp', op: 'update' }]);
  expect((await api('POST', '/api/organisationUnitGroups/HospitalGrp/organisationUnits/NoSuchUnit1')).status).toBe(404);
});

test('dataStore: PUT creates then updates, GET reads, DELETE removes', async () => {
  expect((await api('PUT', '/api/dataStore/org-unit-sync/k1', { json: { draft: 1 } })).status).toBe(201);
  expect((await api('PUT', '/api/dataStore/org-unit-sync/k1', { json: { draft: 2 } })).status).toBe(200);
  expect((await api('POST', '/api/dataStore/org-unit-sync/k1', { json: {} })).status).toBe(409);
  expect(await api('GET', '/api/dataStore/org-unit-sync/k1')).toMatchObject({ status: 200, body: { draft: 2 } });
  expect((await api('GET', '/api/dataStore/org-unit-sync')).body).toEqual(['k1']);
  expect((await api('DELETE', '/api/dataStore/org-unit-sync/k1')).status).toBe(200);
  expect((await api('GET', '/api/dataStore/org-unit-sync/k1')).status).toBe(404);
  expect((await api('PUT', '/api/dataStore/org-unit-sync/k2', { text: 'not json' })).status).toBe(415);
});

test('a feedback ticket opens, and its status can be set to SOLVED', async () => {
  const created = await api('POST', '/api/messageConversations/feedback?subject=Approval%20Request', { text: 'please review' });
  expect(created).toMatchObject({ status: 201, body: { httpStatusCode: 201, message: 'Feedback created' } });
  const listed = await api('GET', '/api/messageConversations?fields=id,subject&filter=subject:eq:Approval%20Request');
  const location = `/api/messageConversations/${listed.body.messageConversations[0].id}`;
  expect((await api('POST', `${location}/status?messageConversationStatus=SOLVED`)).status).toBe(200);
  expect((await api('POST', `${location}/status?messageConversationStatus=DONE`)).status).toBe(400);
  const [ticket] = await sim.messages();
  expect(ticket).toMatchObject({ subject: 'Approval Request', messageType: 'TICKET', status: 'SOLVED', messages: [{ text: 'please review', sender: { username: 'admin' } }] });
  expect((await api('POST', '/api/messageConversations', { json: { subject: 's', text: 't', users: [] } })).status).toBe(409);
});

test('a private message is read only by its participants; a recipient is found by user name', async () => {
  const as = (who: string) => ({ headers: { Authorization: `Basic ${Buffer.from(`${who}:district`).toString('base64')}` } });
  const found = await api('GET', '/api/users?filter=username:eq:alice&fields=id,username&paging=false');
  expect([found.status, found.body]).toEqual([200, { users: [{ id: 'aliceUserId', username: 'alice' }] }]);
  expect((await api('GET', '/api/users?filter=username:eq:nobody&fields=id,username&paging=false')).body).toEqual({ users: [] });
  expect((await api('GET', '/api/users?filter=email:eq:x')).status).toBe(400);

  const sent = await api('POST', '/api/messageConversations', { json: { subject: 'For alice only', text: 'your link', users: [{ id: 'aliceUserId' }] } });
  expect(sent.status).toBe(201);
  const location = sent.headers.get('location')!;
  const subjects = async (who: string) => ((await api('GET', '/api/messageConversations?fields=subject&paging=false', as(who))).body as { messageConversations: Array<{ subject: string }> })
    .messageConversations.map((c) => c.subject);
  expect(await subjects('alice')).toContain('For alice only');
  expect(await subjects('admin')).toContain('For alice only'); // the sender
  expect(await subjects('bob')).not.toContain('For alice only');
  expect((await api('GET', `${location}?fields=subject`, as('bob'))).status).toBe(403);
  expect((await api('GET', `${location}?fields=subject`, as('alice'))).body).toEqual({ subject: 'For alice only' });
});

test('down() refuses connections and up() serves again on the same port', async () => {
  const port = sim.port;
  await sim.down();
  const refused = await fetch(`${sim.baseUrl}/api/me`, { headers: BASIC }).catch((e) => e);
  await sim.up();
  // fetch's TypeError comes from another realm under jest, so check the cause's code rather than the class.
  expect(refused?.cause?.code).toBe('ECONNREFUSED');
  expect(sim.port).toBe(port);
  expect((await api('GET', '/api/me')).status).toBe(200);
});

test('what the simulator does not implement is an error, not a lenient guess', async () => {
  expect((await api('GET', '/api/organisationUnits/RootUnit001?fields=id,children[id]')).body.message).toMatch(/fields syntax not supported by the simulator/);
  expect((await api('GET', '/api/organisationUnits?fields=:owner')).status).toBe(400);
  expect((await api('POST', '/api/metadata?importStrategy=CREATE_AND_UPDATE&idScheme=UID', { json: {} })).body.message).toMatch(/use `identifier/);
  expect((await api('POST', '/api/metadata?importStrategy=MERGE', { json: {} })).status).toBe(400);
  expect((await api('POST', '/api/metadata', { json: { dataElements: [] } })).status).toBe(400);
  expect((await api('PATCH', '/api/organisationUnits/RootUnit001', { json: {} })).status).toBe(405);
  expect((await api('GET', '/api/dataElements')).status).toBe(404);
  sim.failNext(1, 503, /\/api\/organisationUnits/);
  expect(await api('GET', '/api/organisationUnits?paging=false')).toMatchObject({ status: 503, body: { message: 'Simulated failure' } });
  const list = await api('GET', '/api/organisationUnits?paging=false&order=level:asc&fields=id,level');
  expect(list.body.organisationUnits.map((o: { level: number }) => o.level)).toEqual([1, 2, 3]);
});
