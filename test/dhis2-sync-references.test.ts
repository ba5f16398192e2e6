/**
 * What the sync makes of DHIS2's E5002 (invalid reference): the import report of a real import into the
 * simulator (which names references as dhis2-core's ReferencesCheck does, "[uid] (OrganisationUnit)"),
 * read by the same functions the sync's pass uses. A missing parent or member must make the resource
 * wait for it; a missing attribute, user or user group must not (no sync can bring those).
 */
import { importErrors } from '../activities/dhis2/api';
import { missingReferences } from '../activities/dhis2/target';
import { Dhis2Sim } from './sims/dhis2';
import { startLocalPostgres, type LocalPostgres } from './lab/local-postgres';

let pg: LocalPostgres;
let sim: Dhis2Sim;

async function importReport(bundle: unknown): Promise<unknown> {
  const res = await fetch(`${sim.baseUrl}/api/metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL&skipSharing=false`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from('admin:district').toString('base64')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(bundle),
  });
  expect(res.status).toBe(409);
  return res.json();
}

const unit = (id: string, extra: Record<string, unknown> = {}) => ({ id, name: `Unit ${id}`, shortName: id, openingDate: '2020-01-01', ...extra });

beforeAll(async () => {
  pg = await startLocalPostgres();
  await pg.createDatabase('dhis2_sync_refs');
  sim = await Dhis2Sim.start({ name: 't1', db: { host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database: 'dhis2_sync_refs' } });
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  pg?.stop();
});

test('a child whose parent the target lacks waits for that parent (it is not parked)', async () => {
  const report = await importReport({ organisationUnits: [unit('ChildUnit01', { parent: { id: 'ParentUnit1' } })] });
  expect(missingReferences(importErrors(report))).toEqual([{ type: 'organisationUnit', uid: 'ParentUnit1', property: 'parent' }]);
});

test('a group whose members the target lacks waits for each of them, even when a reference carries a name', async () => {
  const report = await importReport({
    organisationUnitGroups: [{ id: 'ClinicGroup', name: 'Clinics', shortName: 'Clinics', organisationUnits: [{ id: 'MemberUnit1' }, { id: 'MemberUnit2', name: 'Bo [old] clinic' }] }],
  });
  expect(missingReferences(importErrors(report))).toEqual([
    { type: 'organisationUnit', uid: 'MemberUnit1', property: 'organisationUnits' },
    { type: 'organisationUnit', uid: 'MemberUnit2', property: 'organisationUnits' },
  ]);
});

test('a reference no sync can bring (a user in sharing) is not waited for: the change fails for good', async () => {
  const report = await importReport({ organisationUnits: [unit('SharedUnit1', { sharing: { users: { NoSuchUser1: { id: 'NoSuchUser1', access: 'r-------' } } } })] });
  expect(importErrors(report).map((e) => e.code)).toEqual(['E5002']);
  expect(missingReferences(importErrors(report))).toBeUndefined();
});

test('E5002 as dhis2-core master writes a missing attribute (a bare attribute uid) is not a resource to wait for', () => {
  // ReferencesCheck.checkAttributeValues (master): [attributeId, getIdentifiersWithName(object), "attributeValues"].
  expect(missingReferences([{ code: 'E5002', message: 'Invalid reference AttrUid0001 on object Unit [UnitUid0001] (OrganisationUnit) for association `attributeValues`', property: 'attributeValues', properties: ['AttrUid0001', 'Unit [UnitUid0001] (OrganisationUnit)', 'attributeValues'] }]))
    .toBeUndefined();
});
