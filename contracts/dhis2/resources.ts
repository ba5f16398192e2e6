/**
 * The three DHIS2 resources the org-unit sync keeps in step, and the names each side uses for
 * them: the Web API's (types, endpoints, fields) and the database's (tables, columns).
 * Pure data: imported by workflows, activities, the listener and the CLI alike.
 */
export const resourceTypes = ['organisationUnit', 'organisationUnitGroup', 'organisationUnitGroupSet'] as const;
export type ResourceType = typeof resourceTypes[number];

/** The API collection of each type: /api/<endpoint>/<uid>, and its key in a metadata import. */
export const endpointOf: Record<ResourceType, string> = {
  organisationUnit: 'organisationUnits',
  organisationUnitGroup: 'organisationUnitGroups',
  organisationUnitGroupSet: 'organisationUnitGroupSets',
};

/** The source tables change capture reads: the resources' own rows and the two membership tables. */
export const resourceTables = { organisationunit: 'organisationUnit', orgunitgroup: 'organisationUnitGroup', orgunitgroupset: 'organisationUnitGroupSet' } as const;
export const membershipTables = {
  /** A member row changes its group (the group owns the membership). */
  orgunitgroupmembers: { owner: 'organisationUnitGroup', ownerColumn: 'orgunitgroupid', ownerTable: 'orgunitgroup' },
  orgunitgroupsetmembers: { owner: 'organisationUnitGroupSet', ownerColumn: 'orgunitgroupsetid', ownerTable: 'orgunitgroupset' },
} as const;
export const captureTables = [...Object.keys(resourceTables), ...Object.keys(membershipTables)];

/** The deterministic id of the workflow that syncs one resource to one target. */
export const syncWorkflowId = (target: string, type: ResourceType, uid: string): string => `orgunit-sync:${target}:${type}:${uid}`;

/**
 * The one workflow that applies a target's captured changes in batches, per deployment: the
 * worker's task queue is part of it, so two deployments sharing a namespace (or a namespace's
 * earlier deployment) never take each other's changes.
 */
export const batchWorkflowId = (taskQueue: string, target: string): string => `orgunit-batch:${taskQueue}:${target}`;

/** A DHIS2 uid: a letter, then 10 letters or digits. */
export const uidPattern = /^[A-Za-z][A-Za-z0-9]{10}$/;

/** The API fields of each type, with the database column that holds each (fields without a column are computed or owned elsewhere). */
export const fieldColumns: Record<ResourceType, Record<string, string>> = {
  organisationUnit: {
    id: 'uid', code: 'code', name: 'name', shortName: 'shortname', description: 'description', openingDate: 'openingdate',
    closedDate: 'closeddate', comment: 'comment', url: 'url', contactPerson: 'contactperson', address: 'address', email: 'email',
    phoneNumber: 'phonenumber', parent: 'parentid', geometry: 'geometry', translations: 'translations', attributeValues: 'attributevalues',
  },
  organisationUnitGroup: {
    id: 'uid', code: 'code', name: 'name', shortName: 'shortname', color: 'color', symbol: 'symbol',
    organisationUnits: 'orgunitgroupmembers', translations: 'translations', attributeValues: 'attributevalues',
  },
  organisationUnitGroupSet: {
    id: 'uid', code: 'code', name: 'name', shortName: 'shortname', description: 'description', compulsory: 'compulsory',
    dataDimension: 'datadimension', includeSubhierarchyInAnalytics: 'includesubhierarchyinanalytics',
    organisationUnitGroups: 'orgunitgroupsetmembers', translations: 'translations', attributeValues: 'attributevalues',
  },
};

/**
 * "organisationunit.shortname" (table.column, as the reference app's config writes it) or
 * "organisationUnit.shortName" (type.field) -> { type, field }; undefined when it names nothing we sync.
 */
export function parseFieldName(name: string): { type: ResourceType; field: string } | undefined {
  const [owner, column, extra] = name.split('.');
  if (!owner || !column || extra !== undefined) return undefined;
  const type = (resourceTypes as readonly string[]).includes(owner) ? owner as ResourceType
    : (resourceTables as Record<string, ResourceType>)[owner.toLowerCase()];
  if (!type) return undefined;
  const match = Object.entries(fieldColumns[type]).find(([field, col]) => field === column || col === column.toLowerCase() || field.toLowerCase() === column.toLowerCase());
  return match ? { type, field: match[0] } : undefined;
}

/** The activity task queue of one target's syncs, beside the worker's own queue: a slow target fills only its own slots. */
export const syncActivityQueue = (workerQueue: string, target: string): string => `${workerQueue}-orgunit-${target}`;
