/**
 * Importing one object of a metadata bundle, and deleting one object, inside the caller's
 * transaction. Objects earlier in the bundle are already written in that transaction, so a
 * reference to them resolves; atomicMode=ALL rolls the whole transaction back on any error.
 */
import { badRequest, nowTimestamp } from './http';
import { columnValues, insertRow, lockRow, updateRow, type Values } from './columns';
import { describe, errors, type ErrorReport, type ObjectReport, type Outcome } from './import-report';
import { RESOURCES, type ResourceSpec } from './schema';
import type { Db, WriteTx } from './store';
import type { SimUser } from './types';
import { generateUid, isValidUid } from './uid';

export interface ImportSettings {
  strategy: 'CREATE_AND_UPDATE' | 'CREATE' | 'UPDATE' | 'DELETE';
  skipSharing: boolean;
  userOverride: 'NONE' | 'CURRENT';
  user: SimUser;
  users: SimUser[];
  blocked: Set<string>;
}

type Row = Record<string, any>;
const OU = RESOURCES.organisationUnit;
const GROUP = RESOURCES.organisationUnitGroup;
const GROUP_SET = RESOURCES.organisationUnitGroupSet;

export async function importObject(tx: WriteTx, res: ResourceSpec, raw: unknown, index: number, s: ImportSettings): Promise<{ report: ObjectReport; outcome: Outcome }> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw badRequest(`${res.plural}[${index}] must be a JSON object`);
  const obj = raw as Record<string, unknown>;
  const done = (uid: string, outcome: Outcome | ErrorReport[]) => Array.isArray(outcome)
    ? { report: { klass: res.klass, uid, index, errorReports: outcome }, outcome: 'ignored' as const }
    : { report: { klass: res.klass, uid, index, errorReports: [] }, outcome };

  let uid = obj.id;
  if (uid === undefined || uid === null) {
    if (s.strategy === 'UPDATE' || s.strategy === 'DELETE') return done('', [errors.missing(res, 'id')]);
    uid = generateUid();
  }
  if (!isValidUid(uid)) return done(String(uid), [errors.invalidUid(res, String(uid))]);
  const named = describe(res, uid, typeof obj.name === 'string' ? obj.name : null);
  const existing = await lockRow(tx.db, res, uid, res === OU ? ['parentid', 'path', 'hierarchylevel'] : []);
  if (s.strategy === 'DELETE') {
    if (!existing) return done(uid, [errors.noMatch(res, 'UID', named)]);
    const refused = await deleteObject(tx, res, existing, s.blocked);
    return done(uid, refused ? [refused] : 'deleted');
  }
  if (existing && s.strategy === 'CREATE') return done(uid, [errors.existsButCreate(res, 'UID', named)]);
  if (!existing && s.strategy === 'UPDATE') return done(uid, [errors.noMatch(res, 'UID', named)]);

  const { values, errors: found } = columnValues(res, obj);
  found.push(...(await duplicateErrors(tx.db, res, uid, values)), ...sharingErrors(res, uid, named, obj, s));
  const save = res === OU ? saveOrgUnit : res === GROUP ? saveGroup : saveGroupSet;
  return done(uid, await save(tx, { uid, named, obj, existing, values, found, s }));
}

interface Pending { uid: string; named: string; obj: Record<string, unknown>; existing: Row | undefined; values: Values; found: ErrorReport[]; s: ImportSettings }

/** E5003: DHIS2 keeps codes (and group and group set names) unique per type. */
async function duplicateErrors(db: Db, res: ResourceSpec, uid: string, values: Values): Promise<ErrorReport[]> {
  const found: ErrorReport[] = [];
  for (const col of res.columns.filter((c) => c.unique && values[c.column] !== null)) {
    const { rows } = await db.query(`SELECT uid, name FROM ${res.table} WHERE ${col.column} = $1 AND uid <> $2`, [values[col.column], uid]);
    if (rows[0]) {
      found.push(errors.duplicate(res, col.prop, String(values[col.column]), describe(res, uid, values.name as string), describe(res, rows[0].uid, rows[0].name)));
    }
  }
  return found;
}

/**
 * Sharing names users and user groups of the source system; DHIS2 rejects those it does not know
 * (E5002 on `userAccesses` / `userGroupAccesses`) unless skipSharing=true. An unknown createdBy is
 * NOT an error: ReferencesCheck skips user references (createdBy, lastUpdatedBy, user).
 */
function sharingErrors(res: ResourceSpec, uid: string, named: string, obj: Record<string, any>, s: ImportSettings): ErrorReport[] {
  const known = new Set(s.users.map((u) => u.id));
  const found: ErrorReport[] = [];
  if (!s.skipSharing && obj.sharing && typeof obj.sharing === 'object') {
    for (const id of Object.keys(obj.sharing.users ?? {})) if (!known.has(id)) found.push(errors.invalidReference(res, uid, describe('User', id), named, 'userAccesses'));
    // The simulator has no user groups, so any shared-with group is unknown.
    for (const id of Object.keys(obj.sharing.userGroups ?? {})) found.push(errors.invalidReference(res, uid, describe('UserGroup', id), named, 'userGroupAccesses'));
  }
  return found;
}

function createdByRowId(p: Pending): string {
  const id = (p.obj as any).createdBy?.id ?? (p.obj as any).user?.id;
  const named = p.s.userOverride === 'NONE' ? p.s.users.find((u) => u.id === id) : undefined;
  return (named ?? p.s.user).rowId;
}

/** uids of a reference list like [{id}], in order, without repeats. */
function refIds(value: unknown, prop: string): Array<{ id: string; name?: string }> {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v?.id !== 'string')) throw badRequest(`JSON parse error: \`${prop}\` must be a list of {"id": ...}`);
  const seen = new Map<string, { id: string; name?: string }>();
  for (const v of value) if (!seen.has(v.id)) seen.set(v.id, { id: v.id, ...(typeof v.name === 'string' ? { name: v.name } : {}) });
  return [...seen.values()];
}

/** Row ids of the referenced objects, in the given order; unknown uids are reported as E5002. */
async function resolveRefs(db: Db, p: Pending, owner: ResourceSpec, target: ResourceSpec, association: string): Promise<string[]> {
  const refs = refIds(p.obj[association], association);
  const uids = refs.map((r) => r.id);
  const { rows } = await db.query(`SELECT uid, ${target.idColumn} AS id FROM ${target.table} WHERE uid = ANY($1)`, [uids]);
  const ids = new Map(rows.map((r) => [r.uid as string, String(r.id)]));
  for (const ref of refs.filter((r) => !ids.has(r.id))) {
    p.found.push(errors.invalidReference(owner, p.uid, describe(target, ref.id, ref.name), p.named, association, target.klass));
  }
  return uids.filter((u) => ids.has(u)).map((u) => ids.get(u)!);
}

async function saveOrgUnit(tx: WriteTx, p: Pending): Promise<Outcome | ErrorReport[]> {
  const given = p.obj.parent as { id?: unknown; name?: unknown } | null | undefined;
  if (given !== undefined && given !== null && typeof given?.id !== 'string') throw badRequest('JSON parse error: `parent` must be {"id": ...}');
  const parentUid = (given?.id as string | undefined) ?? null;
  let parent: Row | undefined;
  if (parentUid !== null) {
    parent = (await tx.db.query('SELECT organisationunitid AS id, path, hierarchylevel FROM organisationunit WHERE uid = $1', [parentUid])).rows[0];
    // A unit cannot sit under itself or its own descendant.
    const cycle = parent && String(parent.path).split('/').includes(p.uid);
    const ref = describe(OU, parentUid, typeof given?.name === 'string' ? given.name : null);
    if (!parent || cycle) p.found.push(errors.invalidReference(OU, p.uid, ref, p.named, 'parent'));
  }
  if (p.found.length) return p.found;
  const path = `${parent?.path ?? ''}/${p.uid}`;
  const level = parent ? Number(parent.hierarchylevel) + 1 : 1;
  const tree = { parentid: parent ? String(parent.id) : null, path, hierarchylevel: level };
  const now = nowTimestamp();
  if (!p.existing) {
    await insertRow(tx.db, OU, p.values, { uid: p.uid, ...tree, created: now, lastupdated: now, userid: createdByRowId(p), lastupdatedby: p.s.user.rowId });
    tx.record('organisationUnit', p.uid, 'create');
    return 'created';
  }
  const moved = String(p.existing.parentid ?? '') !== String(tree.parentid ?? '') || p.existing.path !== path;
  // Even an unchanged object is written: DHIS2's IdentifiableObjectBundleHook.preUpdate sets lastUpdated
  // and lastUpdatedBy on every object it imports, then DefaultObjectBundleService.handleUpdates updates the row.
  await updateRow(tx.db, OU, p.existing.id, p.values, { ...tree, lastupdated: now, lastupdatedby: p.s.user.rowId });
  tx.record('organisationUnit', p.uid, 'update');
  if (moved) {
    // Every descendant's path and level change with it, as real row updates change capture sees.
    const { rows } = await tx.db.query(
      `UPDATE organisationunit SET path = $1::varchar || substr(path, $2::int), hierarchylevel = hierarchylevel + $3::int
        WHERE path LIKE $4 RETURNING uid`,
      [path, String(p.existing.path).length + 1, level - Number(p.existing.hierarchylevel), `${p.existing.path}/%`]);
    for (const r of rows) tx.record('organisationUnit', r.uid, 'update');
  }
  return 'updated';
}

async function saveGroup(tx: WriteTx, p: Pending): Promise<Outcome | ErrorReport[]> {
  const wanted = await resolveRefs(tx.db, p, GROUP, OU, 'organisationUnits');
  if (p.found.length) return p.found;
  const now = nowTimestamp();
  const groupId = p.existing ? String(p.existing.id) : await insertRow(tx.db, GROUP, p.values, { uid: p.uid, created: now, lastupdated: now });
  const current = (await tx.db.query('SELECT organisationunitid AS id FROM orgunitgroupmembers WHERE orgunitgroupid = $1', [groupId])).rows.map((r) => String(r.id));
  const added = wanted.filter((id) => !current.includes(id));
  const removed = current.filter((id) => !wanted.includes(id));
  // Written even when nothing changed (lastUpdated moves), as for an org unit.
  if (p.existing) await updateRow(tx.db, GROUP, groupId, p.values, { lastupdated: now });
  // Only the membership rows that change are touched, as Hibernate does for a set.
  if (removed.length) await tx.db.query('DELETE FROM orgunitgroupmembers WHERE orgunitgroupid = $1 AND organisationunitid = ANY($2::bigint[])', [groupId, removed]);
  if (added.length) await tx.db.query('INSERT INTO orgunitgroupmembers (orgunitgroupid, organisationunitid) SELECT $1, unnest($2::bigint[])', [groupId, added]);
  tx.record('organisationUnitGroup', p.uid, p.existing ? 'update' : 'create');
  return p.existing ? 'updated' : 'created';
}

async function saveGroupSet(tx: WriteTx, p: Pending): Promise<Outcome | ErrorReport[]> {
  const wanted = await resolveRefs(tx.db, p, GROUP_SET, GROUP, 'organisationUnitGroups');
  if (p.found.length) return p.found;
  const now = nowTimestamp();
  const setId = p.existing ? String(p.existing.id) : await insertRow(tx.db, GROUP_SET, p.values, { uid: p.uid, created: now, lastupdated: now });
  const { rows } = await tx.db.query('SELECT orgunitgroupid AS id, sort_order FROM orgunitgroupsetmembers WHERE orgunitgroupsetid = $1', [setId]);
  const current = new Map(rows.map((r) => [String(r.id), Number(r.sort_order)]));
  // The set owns an ordered list: sort_order is the 1-based position.
  const removed = [...current.keys()].filter((id) => !wanted.includes(id));
  const placed = wanted.map((id, i) => ({ id, order: i + 1 })).filter(({ id, order }) => current.get(id) !== order);
  if (p.existing) await updateRow(tx.db, GROUP_SET, setId, p.values, { lastupdated: now });
  if (removed.length) await tx.db.query('DELETE FROM orgunitgroupsetmembers WHERE orgunitgroupsetid = $1 AND orgunitgroupid = ANY($2::bigint[])', [setId, removed]);
  for (const { id, order } of placed) {
    await tx.db.query(
      `INSERT INTO orgunitgroupsetmembers (orgunitgroupsetid, orgunitgroupid, sort_order) VALUES ($1, $2, $3)
       ON CONFLICT (orgunitgroupsetid, orgunitgroupid) DO UPDATE SET sort_order = EXCLUDED.sort_order`, [setId, id, order]);
  }
  tx.record('organisationUnitGroupSet', p.uid, p.existing ? 'update' : 'create');
  return p.existing ? 'updated' : 'created';
}

/**
 * Deletes a stored object (row `existing`) and the join rows it is in; answers the E4030 report instead
 * when DHIS2 would refuse: children, or a block() standing in for data values that reference it.
 */
export async function deleteObject(tx: WriteTx, res: ResourceSpec, existing: Row, blocked: Set<string>): Promise<ErrorReport | undefined> {
  const { id, uid } = existing;
  if (blocked.has(uid)) return errors.deleteBlocked(res, uid, 'DataValue');
  if (res === OU) {
    const { rows } = await tx.db.query('SELECT 1 FROM organisationunit WHERE parentid = $1 LIMIT 1', [id]);
    if (rows.length) return errors.deleteBlocked(res, uid, 'OrganisationUnit');
    await removeFromOwners(tx, 'orgunitgroupmembers', 'organisationunitid', id, GROUP);
  } else if (res === GROUP) {
    await tx.db.query('DELETE FROM orgunitgroupmembers WHERE orgunitgroupid = $1', [id]);
    await removeFromOwners(tx, 'orgunitgroupsetmembers', 'orgunitgroupid', id, GROUP_SET);
  } else {
    await tx.db.query('DELETE FROM orgunitgroupsetmembers WHERE orgunitgroupsetid = $1', [id]);
  }
  const { rows: [gone] } = await tx.db.query(`DELETE FROM ${res.table} WHERE ${res.idColumn} = $1 RETURNING code`, [id]);
  // DHIS2's DeletedObjectPostDeleteEventListener keeps klass, uid and code of every deleted object (GET /api/deletedObjects).
  await tx.db.query(
    `INSERT INTO deletedobject (klass, uid, code) VALUES ($1, $2, $3)
     ON CONFLICT (klass, uid) DO UPDATE SET code = EXCLUDED.code, deleted_at = now()`, [res.simpleName, uid, gone?.code || null]);
  tx.record(res.type, uid, 'delete');
  return undefined;
}

/** Drops the member's join rows; each owner whose list shrank counts as updated. */
async function removeFromOwners(tx: WriteTx, table: string, memberColumn: string, memberId: string, owner: ResourceSpec): Promise<void> {
  const { rows } = await tx.db.query(
    `WITH gone AS (DELETE FROM ${table} WHERE ${memberColumn} = $1 RETURNING ${owner.idColumn})
     SELECT o.uid FROM ${owner.table} o JOIN gone USING (${owner.idColumn})`, [memberId]);
  for (const r of rows) tx.record(owner.type, r.uid, 'update');
}
