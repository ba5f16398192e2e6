/**
 * The DHIS2 simulator against DHIS2's own source: each test checks one behaviour the runbooks rely on,
 * with the request and answer shapes, status codes and error codes that dhis2-core produces. The source
 * of each is named above the test (dhis2-core, branches 2.40 and master; see test/sims/dhis2/README.md).
 * The runbook tests are elsewhere (dhis2-sync*, dhis2-approval): these exercise only the simulator.
 */
import { Dhis2Sim, type Dhis2Write } from './sims/dhis2';
import { startLocalPostgres, type LocalPostgres } from './lab/local-postgres';

let pg: LocalPostgres;
let sim: Dhis2Sim;
const ADMIN = 'M5zQapPyTZI';
const CLERK = 'ClerkUser01';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const AS_ADMIN = basic('admin', 'district');
const AS_CLERK = basic('clerk', 'clerk-pw');

async function api(method: string, path: string, opts: { json?: unknown; text?: string; as?: string } = {}) {
  const headers: Record<string, string> = { Authorization: opts.as ?? AS_ADMIN };
  let body: string | undefined;
  if (opts.json !== undefined) [body, headers['Content-Type']] = [JSON.stringify(opts.json), 'application/json'];
  if (opts.text !== undefined) [body, headers['Content-Type']] = [opts.text, 'text/plain'];
  const res = await fetch(`${sim.baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const metadata = (bundle: unknown, as?: string, params = 'importStrategy=CREATE_AND_UPDATE&atomicMode=ALL&identifier=UID') =>
  api('POST', `/api/metadata?${params}`, { json: bundle, as });
const unit = (id: string, name: string, extra: Record<string, unknown> = {}) => ({ id, name, shortName: name, openingDate: '2020-01-01', ...extra });
const firstError = (body: any) => body.response.typeReports[0].objectReports.find((o: any) => o.errorReports.length).errorReports[0];

beforeAll(async () => {
  pg = await startLocalPostgres();
  await pg.createDatabase('dhis2_conformance');
  sim = await Dhis2Sim.start({
    name: 'conformance',
    db: { host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database: 'dhis2_conformance' },
    users: [{ username: 'admin', password: 'district', id: ADMIN }, { username: 'clerk', password: 'clerk-pw', id: CLERK }],
    feedbackRecipients: ['admin'],
  });
  expect((await metadata({ organisationUnits: [unit('CountryUnit', 'Sierra Leone', { code: 'SL' })] })).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  pg?.stop();
});

// ReferencesCheck.checkReference -> createError: PreheatErrorReport(E5002, object, property,
// getIdentifiersWithName(ref), getIdentifiersWithName(object), property.getName()); ErrorCode.E5002;
// PreheatErrorReport sets mainId and errorProperty; the import answers 409 Conflict (ImportReport, status ERROR).
test('E5002: a missing parent is named "[uid] (OrganisationUnit)", the object with its name, then the association', async () => {
  const res = await metadata({ organisationUnits: [unit('ChiefdomUn1', 'Bo', { parent: { id: 'MissingUnit' } })] });
  expect(res.status).toBe(409);
  expect(res.body).toMatchObject({
    httpStatus: 'Conflict', httpStatusCode: 409, status: 'ERROR', message: 'One or more errors occurred, please see full details in import report.',
    response: { responseType: 'ImportReport', status: 'ERROR', stats: { created: 0, updated: 0, deleted: 0, ignored: 1, total: 1 } },
  });
  expect(firstError(res.body)).toEqual({
    message: 'Invalid reference [MissingUnit] (OrganisationUnit) on object Bo [ChiefdomUn1] (OrganisationUnit) for association `parent`',
    mainKlass: 'org.hisp.dhis.organisationunit.OrganisationUnit', mainId: 'ChiefdomUn1', errorCode: 'E5002', errorProperty: 'parent',
    errorProperties: ['[MissingUnit] (OrganisationUnit)', 'Bo [ChiefdomUn1] (OrganisationUnit)', 'parent'],
    args: ['[MissingUnit] (OrganisationUnit)', 'Bo [ChiefdomUn1] (OrganisationUnit)', 'parent'],
  });
});

// The same check for a collection (checkCollection): errorKlass is the property's item class.
test('E5002: a missing group member carries errorKlass; a reference given with a name is named with it', async () => {
  const res = await metadata({ organisationUnitGroups: [{ id: 'ClinicGroup', name: 'Clinics', shortName: 'Clinics', organisationUnits: [{ id: 'CountryUnit' }, { id: 'GhostUnit01', name: 'Ghost' }] }] });
  expect(res.status).toBe(409);
  expect(firstError(res.body)).toMatchObject({
    errorCode: 'E5002', errorProperty: 'organisationUnits', mainId: 'ClinicGroup', errorKlass: 'org.hisp.dhis.organisationunit.OrganisationUnit',
    errorProperties: ['Ghost [GhostUnit01] (OrganisationUnit)', 'Clinics [ClinicGroup] (OrganisationUnitGroup)', 'organisationUnits'],
  });
});

// ReferencesCheck.checkSharing (association userAccesses / userGroupAccesses, unless skipSharing); checkReference
// skips user references (createdBy, lastUpdatedBy, user): an unknown creator is no error.
test('E5002 for sharing with an unknown user; an unknown createdBy is not an error', async () => {
  const shared = await metadata({ organisationUnits: [unit('SharedUnit1', 'Shared', { sharing: { users: { NoSuchUser1: { id: 'NoSuchUser1', access: 'r-------' } } } })] });
  expect(firstError(shared.body)).toMatchObject({ errorCode: 'E5002', errorProperty: 'userAccesses', errorProperties: ['[NoSuchUser1] (User)', 'Shared [SharedUnit1] (OrganisationUnit)', 'userAccesses'] });
  const created = await metadata({ organisationUnits: [unit('StrangerUn1', 'Stranger', { createdBy: { id: 'NoSuchUser1' } })] });
  expect(created.status).toBe(200);
  expect((await sim.get('organisationUnit', 'StrangerUn1')).createdBy).toMatchObject({ id: ADMIN });
});

// ErrorCode E5003, E4000, E4001 (its missing space included), E5001 (UpdateCheck: identifier and getIdentifiersWithName).
test('E5003, E4000, E4001 and E5001 use ErrorCode.java\'s wording', async () => {
  expect(firstError((await metadata({ organisationUnits: [unit('SecondLand1', 'Second', { code: 'SL' })] })).body)).toMatchObject({
    errorCode: 'E5003', errorProperty: 'code',
    message: 'Property `code` with value `SL` on object Second [SecondLand1] (OrganisationUnit) already exists on object Sierra Leone [CountryUnit] (OrganisationUnit)',
  });
  expect(firstError((await metadata({ organisationUnits: [{ id: 'NamelessUn1', shortName: 'x', openingDate: '2020-01-01' }] })).body))
    .toMatchObject({ errorCode: 'E4000', message: 'Missing required property `name`', errorProperties: ['name'] });
  expect(firstError((await metadata({ organisationUnits: [unit('LongNameUn1', 'L', { shortName: 'x'.repeat(51) })] })).body))
    .toMatchObject({ errorCode: 'E4001', message: 'Maximum length of property `shortName`is 50, but given length was 51' });
  const update = await metadata({ organisationUnits: [unit('AbsentUnit1', 'Absent')] }, undefined, 'importStrategy=UPDATE');
  expect(firstError(update.body)).toMatchObject({
    errorCode: 'E5001', errorProperty: 'id', message: 'No matching object for reference. Identifier was UID, and object was Absent [AbsentUnit1] (OrganisationUnit).',
  });
});

// IdentifiableObjectBundleHook.preUpdate -> BaseIdentifiableObject.setAutoFields (lastUpdated = now) and
// setLastUpdatedBy(bundle user), then DefaultObjectBundleService.handleUpdates -> session.update: every imported
// object is written, changed or not.
test('an unchanged re-import still writes the row: lastUpdatedBy becomes the importing user', async () => {
  const writes: Dhis2Write[] = [];
  const stop = sim.onWrite((w) => writes.push(w));
  const again = await metadata({ organisationUnits: [unit('CountryUnit', 'Sierra Leone', { code: 'SL' })] }, AS_CLERK);
  stop();
  expect(again.body.response.stats).toMatchObject({ created: 0, updated: 1 });
  expect(writes.map((w) => [w.uid, w.op])).toEqual([['CountryUnit', 'update']]);
  expect((await sim.get('organisationUnit', 'CountryUnit')).lastUpdatedBy).toMatchObject({ id: CLERK });
});

// AbstractFullReadOnlyController: getObjectList adds Preset.defaultPreset() (ID_NAME: id, displayName) when
// `fields` is absent; getObject adds "*".
test('without fields a list answers id and displayName, one object answers everything', async () => {
  const list = await api('GET', '/api/organisationUnits?paging=false');
  expect(list.body.organisationUnits).toContainEqual({ id: 'CountryUnit', displayName: 'Sierra Leone' });
  expect(Object.keys(list.body.organisationUnits[0]).sort()).toEqual(['displayName', 'id']);
  const one = await api('GET', '/api/organisationUnits/CountryUnit');
  expect(one.body).toMatchObject({ id: 'CountryUnit', code: 'SL', path: '/CountryUnit', level: 1, openingDate: '2020-01-01T00:00:00.000' });
});

// CrudControllerAdvice.deleteNotAllowedExceptionHandler -> conflict(message, errorCode); DeletionVeto(Class) names
// the class; ErrorCode.E4030.
test('a vetoed DELETE is a 409 WebMessage with errorCode E4030, not an import report', async () => {
  await metadata({ organisationUnits: [unit('DistrictUn1', 'Kenema', { parent: { id: 'CountryUnit' } })] });
  expect(await api('DELETE', '/api/organisationUnits/CountryUnit')).toEqual({
    status: 409,
    body: { httpStatus: 'Conflict', httpStatusCode: 409, status: 'ERROR', errorCode: 'E4030', message: 'Object could not be deleted because it is associated with another object: OrganisationUnit' },
  });
});

// MessageConversationController.postMessageConversationFeedback -> created("Feedback created");
// DefaultMessageService.sendTicketMessage (recipients: the feedback recipients group; the sender takes part);
// the list goes through the viewer's user messages; getObject answers 403 to a non-participant.
test('a feedback ticket is seen by the feedback recipients and its sender only', async () => {
  const sent = await api('POST', '/api/messageConversations/feedback?subject=Ticket%20one', { text: 'from the clerk', as: AS_CLERK });
  expect(sent).toEqual({ status: 201, body: { httpStatus: 'Created', httpStatusCode: 201, status: 'OK', message: 'Feedback created' } });
  const byAdmin = await api('GET', '/api/messageConversations?fields=id,subject,messageType&filter=subject:eq:Ticket%20one');
  expect(byAdmin.body.messageConversations).toEqual([{ id: expect.any(String), subject: 'Ticket one', messageType: 'TICKET' }]);
  const id = byAdmin.body.messageConversations[0].id;
  expect((await api('GET', `/api/messageConversations/${id}?fields=id`, { as: AS_CLERK })).body).toEqual({ id });

  await api('POST', '/api/messageConversations/feedback?subject=Ticket%20two', { text: 'from the admin' });
  const own = await api('GET', '/api/messageConversations?fields=subject&filter=subject:like:Ticket', { as: AS_CLERK });
  expect(own.body.messageConversations).toEqual([{ subject: 'Ticket one' }]);
  const other = (await sim.messages()).find((c) => c.subject === 'Ticket two');
  expect((await api('GET', `/api/messageConversations/${other.id}?fields=id`, { as: AS_CLERK })).status).toBe(403);
});

// MessageConversationController.setUserAssigned: 404 unknown user, 409 a TICKET's assignee outside the feedback
// recipients group, 200 "User <name> was assigned successfully".
test('a ticket is assigned only to a feedback recipient', async () => {
  const [ticket] = (await sim.messages()).filter((c) => c.subject === 'Ticket one');
  expect(await api('POST', `/api/messageConversations/${ticket.id}/assign?userId=${CLERK}`))
    .toEqual({ status: 409, body: { message: "User provided is not a member of the system's feedback recipient group" } });
  expect((await api('POST', `/api/messageConversations/${ticket.id}/assign?userId=NoSuchUser1`)).status).toBe(404);
  expect(await api('POST', `/api/messageConversations/${ticket.id}/assign?userId=${ADMIN}`))
    .toEqual({ status: 200, body: { message: 'User admin was assigned successfully' } });
  expect((await api('GET', `/api/messageConversations/${ticket.id}?fields=assignee`)).body).toEqual({ assignee: { id: ADMIN } });
});

// DatastoreController: POST 201 / 409 when the key exists; PUT 200 (and 201 creating, 2.40+); GET/DELETE 404 for a missing key.
test('dataStore answers 201, 409, 200 and 404 as DHIS2 does', async () => {
  expect((await api('POST', '/api/dataStore/conformance/k', { json: { v: 1 } })).status).toBe(201);
  expect((await api('POST', '/api/dataStore/conformance/k', { json: { v: 1 } })).status).toBe(409);
  expect((await api('PUT', '/api/dataStore/conformance/k', { json: { v: 2 } })).status).toBe(200);
  expect(await api('GET', '/api/dataStore/conformance/k')).toEqual({ status: 200, body: { v: 2 } });
  expect((await api('DELETE', '/api/dataStore/conformance/k')).status).toBe(200);
  expect((await api('GET', '/api/dataStore/conformance/k')).status).toBe(404);
});

// query/DefaultQueryParser.parse (property:operator:value, the value rejoined with ':'), QueryUtils.parseValue
// ("[a,b]" cut at commas; a bare value "Collection size must be integer"), CrudControllerAdvice.queryExceptionHandler (409).
test('a metadata list filtered by code:eq, code:in:[...] and id:in:[...] answers only those objects', async () => {
  await metadata({ organisationUnits: [unit('CodeUnit001', 'Bo', { code: 'SL:BO', parent: { id: 'CountryUnit' } }), unit('CodeUnit002', 'Kenema', { code: 'SL_KE', parent: { id: 'CountryUnit' } })] });
  const ids = async (filter: string) => ((await api('GET', `/api/organisationUnits?filter=${encodeURIComponent(filter)}&fields=id,code&paging=false`)).body.organisationUnits as Array<{ id: string }>).map((o) => o.id);
  expect(await ids('code:eq:SL:BO')).toEqual(['CodeUnit001']);
  expect(await ids('code:in:[SL_KE,SL:BO,NOPE]')).toEqual(['CodeUnit001', 'CodeUnit002']);
  expect(await ids('id:in:[CodeUnit002,CountryUnit]')).toEqual(['CodeUnit002', 'CountryUnit']);
  expect(await ids('code:eq:sl_ke')).toEqual([]);
  expect(await api('GET', '/api/organisationUnits?filter=code:in:SL_KE&fields=id')).toEqual({
    status: 409, body: { httpStatus: 'Conflict', httpStatusCode: 409, status: 'ERROR', message: 'Collection size must be integer `SL_KE`' },
  });
  const paged = await api('GET', '/api/organisationUnits?filter=code:eq:SL_KE&fields=id,name');
  expect(paged.body).toEqual({ pager: { page: 1, pageCount: 1, total: 1, pageSize: 50 }, organisationUnits: [{ id: 'CodeUnit002', name: 'Kenema' }] });
});

// DeletedObjectController.getDeletedObjects (query DeletedObjectQuery: uid, klass, code lists); DeletedObject(IdentifiableObject):
// klass = the class's short name, code kept when not empty; DeletedObjectPostDeleteEventListener records every delete.
test('a deleted object is listed by /api/deletedObjects with its klass, uid and code', async () => {
  await metadata({ organisationUnits: [unit('GoneUnit001', 'Gone', { code: 'GONE_1', parent: { id: 'CountryUnit' } }), unit('GoneUnit002', 'Gone too', { parent: { id: 'CountryUnit' } })] });
  expect((await api('DELETE', '/api/organisationUnits/GoneUnit001')).status).toBe(200);
  expect((await api('DELETE', '/api/organisationUnits/GoneUnit002')).status).toBe(200);
  expect((await api('GET', '/api/deletedObjects?uid=GoneUnit001&klass=OrganisationUnit&fields=uid,klass,code&paging=false')).body)
    .toEqual({ deletedObjects: [{ uid: 'GoneUnit001', klass: 'OrganisationUnit', code: 'GONE_1' }] });
  expect((await api('GET', '/api/deletedObjects?uid=GoneUnit002&fields=uid,klass,code&paging=false')).body)
    .toEqual({ deletedObjects: [{ uid: 'GoneUnit002', klass: 'OrganisationUnit' }] });
  expect((await api('GET', '/api/deletedObjects?uid=GoneUnit001&klass=OrganisationUnitGroup&paging=false')).body).toEqual({ deletedObjects: [] });
  // uid OR code (HibernateDeletedObjectStore.buildCriteria); with paging, a pager.
  expect((await api('GET', '/api/deletedObjects?uid=GoneUnit002&code=GONE_1&fields=uid')).body)
    .toEqual({ pager: { page: 1, pageCount: 1, total: 2, pageSize: 50 }, deletedObjects: [{ uid: 'GoneUnit001' }, { uid: 'GoneUnit002' }] });
  // Created again with the same uid: DeletedObjectPostInsertEventListener drops its record.
  await metadata({ organisationUnits: [unit('GoneUnit001', 'Back', { code: 'GONE_1', parent: { id: 'CountryUnit' } })] });
  expect((await api('GET', '/api/deletedObjects?uid=GoneUnit001&klass=OrganisationUnit&paging=false')).body).toEqual({ deletedObjects: [] });
});

test('what the simulator does not model is refused, naming it', async () => {
  expect((await api('GET', '/api/organisationUnits?filter=name:eq:Bo')).body.message).toMatch(/filter on `name` is not supported by the simulator/);
  expect((await api('GET', '/api/organisationUnits?filter=code:like:SL')).body.message).toMatch(/filter `code:like:SL` is not supported by the simulator/);
  expect((await api('GET', '/api/messageConversations')).body.message).toMatch(/without `fields` is not modelled by the simulator/);
  expect((await metadata({}, undefined, 'identifier=CODE')).body.message).toMatch(/identifier=CODE is not supported by the simulator/);
  expect((await api('GET', '/api/organisationUnits?fields=id,children[id]')).body.message).toMatch(/fields syntax not supported by the simulator/);
  expect((await api('GET', '/api/dataElements')).body.message).toBe('No endpoint GET /api/dataElements in the DHIS2 simulator');
});
