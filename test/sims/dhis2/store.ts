/**
 * Reads objects out of the DHIS2 tables in the shape GET ?fields=* answers, and runs writes as one
 * transaction each (so logical replication sees whole changes) before telling onWrite listeners.
 */
import type { Pool, PoolClient } from 'pg';
import type { Dhis2Write, ObjectType } from './types';

const KLASS: Record<ObjectType, string> = { organisationUnit: 'OrganisationUnit', organisationUnitGroup: 'OrganisationUnitGroup', organisationUnitGroupSet: 'OrganisationUnitGroupSet' };

/** A pool or a client inside a transaction. */
export interface Db {
  query(text: string, params?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}

const ts = (col: string) => `to_char(${col}, 'YYYY-MM-DD"T"HH24:MI:SS.MS')`;
const day = (col: string) => `to_char(${col}, 'YYYY-MM-DD"T00:00:00.000"')`;
/** $1 is the uid list to load, or null for all. */
const onlyUids = (col: string) => `($1::text[] IS NULL OR ${col} = ANY($1))`;

/** uids compare by code point (as DHIS2 sorts them in Java), not by the database's collation. */
export const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const refs = (ids: string[] | undefined) => [...(ids ?? [])].sort(byCodePoint).map((id) => ({ id }));
const sharing = () => ({ public: 'rw------', external: false, users: {}, userGroups: {} });

/** DHIS2 leaves null properties out of its JSON. */
function compact(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== null && v !== undefined));
}

/** attributevalues is stored as DHIS2 does, {attributeUid: {value, attribute}}, and shown as a list. */
const attributeList = (stored: Record<string, { value: unknown }> | null) =>
  Object.entries(stored ?? {}).sort(([a], [b]) => byCodePoint(a, b)).map(([id, v]) => ({ value: v.value, attribute: { id } }));

function multimap(rows: any[], key: string, value: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const row of rows) map.set(row[key], [...(map.get(row[key]) ?? []), row[value]]);
  return map;
}

export const FIELDS: Record<ObjectType, string[]> = {
  organisationUnit: ['id', 'code', 'name', 'shortName', 'displayName', 'created', 'lastUpdated', 'createdBy', 'lastUpdatedBy',
    'openingDate', 'closedDate', 'description', 'comment', 'url', 'contactPerson', 'address', 'email', 'phoneNumber', 'parent',
    'path', 'level', 'geometry', 'children', 'ancestors', 'organisationUnitGroups', 'dataSets', 'programs', 'users',
    'attributeValues', 'translations', 'sharing', 'leaf'],
  organisationUnitGroup: ['id', 'code', 'name', 'shortName', 'displayName', 'created', 'lastUpdated', 'color', 'symbol',
    'organisationUnits', 'groupSets', 'attributeValues', 'translations', 'sharing'],
  organisationUnitGroupSet: ['id', 'code', 'name', 'shortName', 'displayName', 'description', 'created', 'lastUpdated',
    'compulsory', 'dataDimension', 'includeSubhierarchyInAnalytics', 'organisationUnitGroups', 'attributeValues', 'translations', 'sharing'],
};

/** A user reference as fields=* expands it (DHIS2's UserDto); the simulator's users have no separate display name. */
const userRef = (id: string | null, username: string | null) => (id ? { id, code: null, name: username, displayName: username, username } : null);

async function loadOrgUnits(db: Db, uids: string[] | null): Promise<any[]> {
  const { rows } = await db.query(
    `SELECT ou.uid, ou.code, ou.name, ou.shortname, ${ts('ou.created')} AS created, ${ts('ou.lastupdated')} AS lastupdated,
            cu.uid AS createdby, cu.username AS createdbyname, lu.uid AS lastupdatedby, lu.username AS lastupdatedbyname, ${day('ou.openingdate')} AS openingdate, ${day('ou.closeddate')} AS closeddate,
            ou.description, ou.comment, ou.url, ou.contactperson, ou.address, ou.email, ou.phonenumber, p.uid AS parent,
            ou.path, ou.hierarchylevel, ou.geometry, ou.translations, ou.attributevalues
       FROM organisationunit ou
       LEFT JOIN organisationunit p ON p.organisationunitid = ou.parentid
       LEFT JOIN userinfo cu ON cu.userinfoid = ou.userid
       LEFT JOIN userinfo lu ON lu.userinfoid = ou.lastupdatedby
      WHERE ${onlyUids('ou.uid')}`, [uids]);
  const children = multimap((await db.query(
    `SELECT p.uid AS parent, c.uid AS child FROM organisationunit c JOIN organisationunit p ON p.organisationunitid = c.parentid
      WHERE ${onlyUids('p.uid')}`, [uids])).rows, 'parent', 'child');
  const groups = multimap((await db.query(
    `SELECT ou.uid AS member, g.uid AS grp FROM orgunitgroupmembers m
       JOIN organisationunit ou USING (organisationunitid) JOIN orgunitgroup g USING (orgunitgroupid)
      WHERE ${onlyUids('ou.uid')}`, [uids])).rows, 'member', 'grp');
  return rows.map((r) => compact({
    id: r.uid, code: r.code, name: r.name, shortName: r.shortname, displayName: r.name,
    created: r.created, lastUpdated: r.lastupdated,
    createdBy: userRef(r.createdby, r.createdbyname), lastUpdatedBy: userRef(r.lastupdatedby, r.lastupdatedbyname),
    openingDate: r.openingdate, closedDate: r.closeddate, description: r.description, comment: r.comment, url: r.url,
    contactPerson: r.contactperson, address: r.address, email: r.email, phoneNumber: r.phonenumber,
    parent: r.parent ? { id: r.parent } : null, path: r.path, level: r.hierarchylevel, geometry: r.geometry,
    children: refs(children.get(r.uid)),
    ancestors: String(r.path ?? '').split('/').filter(Boolean).slice(0, -1).map((id) => ({ id })),
    organisationUnitGroups: refs(groups.get(r.uid)), dataSets: [], programs: [], users: [],
    attributeValues: attributeList(r.attributevalues), translations: r.translations ?? [], sharing: sharing(),
    leaf: !children.has(r.uid),
  }));
}

async function loadGroups(db: Db, uids: string[] | null): Promise<any[]> {
  const { rows } = await db.query(
    `SELECT uid, code, name, shortname, ${ts('created')} AS created, ${ts('lastupdated')} AS lastupdated, color, symbol,
            translations, attributevalues
       FROM orgunitgroup WHERE ${onlyUids('uid')}`, [uids]);
  const members = multimap((await db.query(
    `SELECT g.uid AS grp, ou.uid AS member FROM orgunitgroupmembers m
       JOIN organisationunit ou USING (organisationunitid) JOIN orgunitgroup g USING (orgunitgroupid)
      WHERE ${onlyUids('g.uid')}`, [uids])).rows, 'grp', 'member');
  const sets = multimap((await db.query(
    `SELECT g.uid AS grp, s.uid AS groupset FROM orgunitgroupsetmembers m
       JOIN orgunitgroup g USING (orgunitgroupid) JOIN orgunitgroupset s USING (orgunitgroupsetid)
      WHERE ${onlyUids('g.uid')}`, [uids])).rows, 'grp', 'groupset');
  return rows.map((r) => compact({
    id: r.uid, code: r.code, name: r.name, shortName: r.shortname, displayName: r.name,
    created: r.created, lastUpdated: r.lastupdated, color: r.color, symbol: r.symbol,
    organisationUnits: refs(members.get(r.uid)), groupSets: refs(sets.get(r.uid)),
    attributeValues: attributeList(r.attributevalues), translations: r.translations ?? [], sharing: sharing(),
  }));
}

async function loadGroupSets(db: Db, uids: string[] | null): Promise<any[]> {
  const { rows } = await db.query(
    `SELECT uid, code, name, shortname, description, ${ts('created')} AS created, ${ts('lastupdated')} AS lastupdated,
            compulsory, datadimension, includesubhierarchyinanalytics, translations, attributevalues
       FROM orgunitgroupset WHERE ${onlyUids('uid')}`, [uids]);
  const members = multimap((await db.query(
    `SELECT s.uid AS groupset, g.uid AS grp FROM orgunitgroupsetmembers m
       JOIN orgunitgroup g USING (orgunitgroupid) JOIN orgunitgroupset s USING (orgunitgroupsetid)
      WHERE ${onlyUids('s.uid')} ORDER BY m.sort_order, g.uid`, [uids])).rows, 'groupset', 'grp');
  return rows.map((r) => compact({
    id: r.uid, code: r.code, name: r.name, shortName: r.shortname, displayName: r.name, description: r.description,
    created: r.created, lastUpdated: r.lastupdated, compulsory: r.compulsory, dataDimension: r.datadimension,
    includeSubhierarchyInAnalytics: r.includesubhierarchyinanalytics,
    // Kept in sort_order: the group set owns an ordered list.
    organisationUnitGroups: (members.get(r.uid) ?? []).map((id) => ({ id })),
    attributeValues: attributeList(r.attributevalues), translations: r.translations ?? [], sharing: sharing(),
  }));
}

/** Objects of one type as GET ?fields=* shows them, sorted by uid; `uids` null means all. */
export async function loadObjects(db: Db, type: ObjectType, uids: string[] | null): Promise<any[]> {
  const load = { organisationUnit: loadOrgUnits, organisationUnitGroup: loadGroups, organisationUnitGroupSet: loadGroupSets }[type];
  return (await load(db, uids)).sort((a, b) => byCodePoint(a.id, b.id));
}

/** A write transaction in progress: handlers record each changed object for onWrite. */
export class WriteTx {
  readonly changes: Array<Omit<Dhis2Write, 'at' | 'body'>> = [];
  /** Set to roll back at the end instead of committing (atomicMode=ALL errors, importMode=VALIDATE). */
  rollbackOnly = false;
  constructor(readonly db: PoolClient) {}
  record(type: ObjectType, uid: string, op: Dhis2Write['op']): void {
    this.changes.push({ type, uid, op });
  }
}

/** Any advisory lock number: it serialises the simulator's metadata writes like DHIS2's import lock does. */
const WRITE_LOCK = 20_240_101;

export async function inTransaction<T>(pool: Pool, work: (db: PoolClient) => Promise<T>): Promise<T> {
  const db = await pool.connect();
  try {
    await db.query('BEGIN');
    const result = await work(db);
    await db.query('COMMIT');
    return result;
  } catch (e) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    db.release();
  }
}

/** Runs one write transaction; returns the result and the committed writes (with bodies) for onWrite. */
export async function writeTransaction<T>(pool: Pool, work: (tx: WriteTx) => Promise<T>): Promise<{ result: T; writes: Dhis2Write[] }> {
  const db = await pool.connect();
  try {
    await db.query('BEGIN');
    await db.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
    const tx = new WriteTx(db);
    const result = await work(tx);
    if (tx.rollbackOnly || tx.changes.length === 0) {
      await db.query('ROLLBACK');
      return { result, writes: [] };
    }
    // DeletedObjectPostInsertEventListener: a created object drops the deletedObjects records that
    // DeletedObjectQuery(object) finds: its klass, and its uid (as uid, or as code: the store compares
    // code with the uid list when a klass is given, HibernateDeletedObjectStore.buildCriteria).
    for (const c of tx.changes.filter((x) => x.op === 'create')) {
      await db.query('DELETE FROM deletedobject WHERE klass = $1 AND (uid = $2 OR code = $2)', [KLASS[c.type], c.uid]);
    }
    // Bodies are read inside the transaction, so they are exactly what this commit stored.
    const bodies = await loadBodies(db, tx.changes);
    await db.query('COMMIT');
    const at = Date.now();
    const writes = tx.changes.map((c) => ({ ...c, at, ...(c.op === 'delete' ? {} : { body: bodies.get(`${c.type}/${c.uid}`) }) }));
    return { result, writes };
  } catch (e) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    db.release();
  }
}

async function loadBodies(db: Db, changes: WriteTx['changes']): Promise<Map<string, any>> {
  const bodies = new Map<string, any>();
  for (const type of new Set(changes.map((c) => c.type))) {
    const uids = [...new Set(changes.filter((c) => c.type === type && c.op !== 'delete').map((c) => c.uid))];
    if (uids.length === 0) continue;
    for (const body of await loadObjects(db, type, uids)) bodies.set(`${type}/${body.id}`, body);
  }
  return bodies;
}
