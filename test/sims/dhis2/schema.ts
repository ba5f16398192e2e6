/**
 * The simulator's PostgreSQL tables. The three metadata tables and their join tables use DHIS2's own
 * table and column names, because the product under test captures changes from them with logical
 * replication exactly as it would from a real DHIS2 database.
 */
import type { Pool } from 'pg';
import type { ObjectType, SimUser } from './types';
import { generateUid } from './uid';

const DDL = `
CREATE TABLE IF NOT EXISTS userinfo (
  userinfoid bigserial PRIMARY KEY,
  uid varchar(11) UNIQUE NOT NULL,
  username varchar(255) UNIQUE NOT NULL
);
CREATE TABLE IF NOT EXISTS organisationunit (
  organisationunitid bigserial PRIMARY KEY,
  uid varchar(11) UNIQUE NOT NULL,
  code varchar(50) UNIQUE,
  created timestamp,
  lastupdated timestamp,
  lastupdatedby bigint,
  name varchar(230) NOT NULL,
  shortname varchar(50) NOT NULL,
  parentid bigint REFERENCES organisationunit (organisationunitid),
  path varchar(400),
  hierarchylevel integer,
  description text,
  openingdate date NOT NULL,
  closeddate date,
  comment text,
  url varchar(255),
  contactperson varchar(255),
  address varchar(255),
  email varchar(150),
  phonenumber varchar(150),
  geometry jsonb,
  userid bigint,
  translations jsonb DEFAULT '[]',
  attributevalues jsonb DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS in_organisationunit_parentid ON organisationunit (parentid);
CREATE INDEX IF NOT EXISTS in_organisationunit_path ON organisationunit (path varchar_pattern_ops);
CREATE TABLE IF NOT EXISTS orgunitgroup (
  orgunitgroupid bigserial PRIMARY KEY,
  uid varchar(11) UNIQUE NOT NULL,
  code varchar(50) UNIQUE,
  created timestamp,
  lastupdated timestamp,
  name varchar(230) NOT NULL UNIQUE,
  shortname varchar(50) NOT NULL,
  color varchar(255),
  symbol varchar(255),
  translations jsonb DEFAULT '[]',
  attributevalues jsonb DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS orgunitgroupmembers (
  orgunitgroupid bigint NOT NULL REFERENCES orgunitgroup (orgunitgroupid),
  organisationunitid bigint NOT NULL REFERENCES organisationunit (organisationunitid),
  PRIMARY KEY (orgunitgroupid, organisationunitid)
);
CREATE TABLE IF NOT EXISTS orgunitgroupset (
  orgunitgroupsetid bigserial PRIMARY KEY,
  uid varchar(11) UNIQUE NOT NULL,
  code varchar(50) UNIQUE,
  created timestamp,
  lastupdated timestamp,
  name varchar(230) NOT NULL UNIQUE,
  shortname varchar(50),
  description text,
  compulsory boolean,
  datadimension boolean,
  includesubhierarchyinanalytics boolean,
  translations jsonb DEFAULT '[]',
  attributevalues jsonb DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS orgunitgroupsetmembers (
  orgunitgroupsetid bigint NOT NULL REFERENCES orgunitgroupset (orgunitgroupsetid),
  orgunitgroupid bigint NOT NULL REFERENCES orgunitgroup (orgunitgroupid),
  sort_order integer,
  PRIMARY KEY (orgunitgroupsetid, orgunitgroupid)
);
-- DHIS2's record of deleted metadata (api/deletedobject/DeletedObject.java: klass is the class's simple name).
CREATE TABLE IF NOT EXISTS deletedobject (
  deletedobjectid bigserial PRIMARY KEY,
  klass varchar(255) NOT NULL,
  uid varchar(255) NOT NULL,
  code varchar(255),
  deleted_at timestamp NOT NULL DEFAULT now(),
  deleted_by varchar(255),
  UNIQUE (klass, uid)
);
CREATE TABLE IF NOT EXISTS keyjsonvalue (
  keyjsonvalueid bigserial PRIMARY KEY,
  namespace varchar(255) NOT NULL,
  namespacekey varchar(255) NOT NULL,
  jbvalue jsonb,
  created timestamp,
  lastupdated timestamp,
  UNIQUE (namespace, namespacekey)
);
CREATE TABLE IF NOT EXISTS messageconversation (
  messageconversationid bigserial PRIMARY KEY,
  uid varchar(11) UNIQUE NOT NULL,
  subject varchar(255) NOT NULL,
  messagetype varchar(255) NOT NULL,
  status varchar(255) NOT NULL,
  created timestamp,
  lastupdated timestamp,
  users jsonb DEFAULT '[]',
  usergroups jsonb DEFAULT '[]',
  organisationunits jsonb DEFAULT '[]'
);
ALTER TABLE messageconversation ADD COLUMN IF NOT EXISTS assignee varchar(11);
CREATE TABLE IF NOT EXISTS message (
  messageid bigserial PRIMARY KEY,
  messageconversationid bigint NOT NULL REFERENCES messageconversation (messageconversationid),
  messagetext text,
  sender varchar(255),
  created timestamp
);
`;

export async function createSchema(pool: Pool): Promise<void> {
  await pool.query(DDL);
  // dataStore entries are shareable objects in DHIS2: a uid, an owner, and a sharing column (jsonb).
  await pool.query(`ALTER TABLE keyjsonvalue ADD COLUMN IF NOT EXISTS uid varchar(11), ADD COLUMN IF NOT EXISTS userid bigint,
    ADD COLUMN IF NOT EXISTS sharing jsonb`);
}

/** Stores the configured users (keeping a uid an earlier run generated) so createdBy can point at them. */
export async function registerUsers(pool: Pool, users: Array<{ username: string; password: string; id?: string; superuser?: boolean }>): Promise<SimUser[]> {
  const registered: SimUser[] = [];
  for (const u of users) {
    const { rows } = await pool.query(
      `INSERT INTO userinfo (uid, username) VALUES ($1, $2)
       ON CONFLICT (username) DO UPDATE SET uid = COALESCE($3, userinfo.uid)
       RETURNING userinfoid, uid`,
      [u.id ?? generateUid(), u.username, u.id ?? null],
    );
    registered.push({ username: u.username, password: u.password, id: rows[0].uid, rowId: String(rows[0].userinfoid), superuser: u.superuser ?? true });
  }
  return registered;
}

/** How an imported property maps to a column, and what DHIS2 checks about it. */
export interface ColumnSpec {
  prop: string;
  column: string;
  kind: 'text' | 'date' | 'bool' | 'json' | 'attributes';
  max?: number;
  required?: boolean;
  unique?: boolean;
  /** Stored when the property is absent (DHIS2 imports replace the whole object). */
  fallback?: unknown;
}

export interface ResourceSpec {
  type: ObjectType;
  /** The API collection name: /api/<plural> and the bundle key. */
  plural: string;
  klass: string;
  simpleName: string;
  table: string;
  idColumn: string;
  columns: ColumnSpec[];
}

const text = (prop: string, max?: number, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({ prop, column: prop.toLowerCase(), kind: 'text', max, ...extra });
const translations: ColumnSpec = { prop: 'translations', column: 'translations', kind: 'json', fallback: [] };
const attributeValues: ColumnSpec = { prop: 'attributeValues', column: 'attributevalues', kind: 'attributes', fallback: {} };

export const RESOURCES: Record<ObjectType, ResourceSpec> = {
  organisationUnit: {
    type: 'organisationUnit', plural: 'organisationUnits', klass: 'org.hisp.dhis.organisationunit.OrganisationUnit',
    simpleName: 'OrganisationUnit', table: 'organisationunit', idColumn: 'organisationunitid',
    columns: [
      text('code', 50, { unique: true }), text('name', 230, { required: true }), text('shortName', 50, { required: true }),
      text('description'), { prop: 'openingDate', column: 'openingdate', kind: 'date', required: true },
      { prop: 'closedDate', column: 'closeddate', kind: 'date' }, text('comment'), text('url', 255),
      text('contactPerson', 255), text('address', 255), text('email', 150), text('phoneNumber', 150),
      { prop: 'geometry', column: 'geometry', kind: 'json' }, translations, attributeValues,
    ],
  },
  organisationUnitGroup: {
    type: 'organisationUnitGroup', plural: 'organisationUnitGroups', klass: 'org.hisp.dhis.organisationunit.OrganisationUnitGroup',
    simpleName: 'OrganisationUnitGroup', table: 'orgunitgroup', idColumn: 'orgunitgroupid',
    columns: [
      text('code', 50, { unique: true }), text('name', 230, { required: true, unique: true }), text('shortName', 50, { required: true }),
      text('color', 255), text('symbol', 255), translations, attributeValues,
    ],
  },
  organisationUnitGroupSet: {
    type: 'organisationUnitGroupSet', plural: 'organisationUnitGroupSets', klass: 'org.hisp.dhis.organisationunit.OrganisationUnitGroupSet',
    simpleName: 'OrganisationUnitGroupSet', table: 'orgunitgroupset', idColumn: 'orgunitgroupsetid',
    columns: [
      text('code', 50, { unique: true }), text('name', 230, { required: true, unique: true }), text('shortName', 50, { required: true }),
      text('description'),
      // DHIS2's defaults for a group set that does not say.
      { prop: 'compulsory', column: 'compulsory', kind: 'bool', fallback: true },
      { prop: 'dataDimension', column: 'datadimension', kind: 'bool', fallback: true },
      { prop: 'includeSubhierarchyInAnalytics', column: 'includesubhierarchyinanalytics', kind: 'bool', fallback: false },
      translations, attributeValues,
    ],
  },
};

export const RESOURCE_BY_PLURAL: Record<string, ResourceSpec> = Object.fromEntries(Object.values(RESOURCES).map((r) => [r.plural, r]));
