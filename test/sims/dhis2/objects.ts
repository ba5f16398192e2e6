/**
 * Reading and deleting org units, groups and group sets one by one or as lists, the membership-only
 * collection endpoints, and /api/me.
 */
import { badRequest, checkParams, enumParam, HttpError, notFound, positiveIntParam, webMessage, type ApiCall, type Reply, type Route } from './http';
import { lockRow } from './columns';
import { deleteObject } from './import-objects';
import { RESOURCES, RESOURCE_BY_PLURAL, type ResourceSpec } from './schema';
import { FIELDS, loadObjects, writeTransaction } from './store';

const RESOURCE_PATH = Object.keys(RESOURCE_BY_PLURAL).join('|');

/**
 * `*` or a plain comma list of top-level names; anything richer is refused, not half-understood. Without
 * `fields`, DHIS2 answers one object with `*` and a list with Preset.defaultPreset() (ID_NAME: id,displayName):
 * AbstractFullReadOnlyController.getObject / getObjectList. `listDefault` is that list default, when it applies.
 */
export function parseFields(call: ApiCall, known: string[], what: string, listDefault?: string[]): string[] | null {
  const raw = call.query.get('fields');
  if (raw === null) return listDefault ?? null;
  if (raw === '*') return null;
  if (!/^[A-Za-z]+(,[A-Za-z]+)*$/.test(raw)) {
    throw badRequest(`fields syntax not supported by the simulator: ${raw} (use * or a comma list of top-level field names)`);
  }
  const names = raw.split(',');
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length) throw badRequest(`fields not supported by the simulator for ${what}: ${unknown.join(', ')} (known: ${known.join(', ')})`);
  return names;
}

export const LIST_DEFAULT_FIELDS = ['id', 'displayName'];

const pick = (obj: Record<string, unknown>, fields: string[] | null) =>
  fields ? Object.fromEntries(fields.filter((f) => f in obj).map((f) => [f, obj[f]])) : obj;

const missing = (res: ResourceSpec, uid: string) => notFound(`${res.simpleName} with id ${uid} could not be found.`);

async function getOne(call: ApiCall, match: RegExpMatchArray): Promise<Reply> {
  const res = RESOURCE_BY_PLURAL[match[1]];
  checkParams(call, ['fields']);
  const fields = parseFields(call, FIELDS[res.type], res.type);
  const [found] = await loadObjects(call.state.pool, res.type, [match[2]]);
  if (!found) throw missing(res, match[2]);
  return { status: 200, body: pick(found, fields) };
}

/**
 * One `filter=<property>:<operator>:<value>` on id or code, operator eq or in (dhis2-core
 * query/DefaultQueryParser.parse: split on ':', the rest rejoined with ':'; `in` takes "[a,b]", cut
 * at every comma, by query/QueryUtils.parseValue, which answers a value without brackets with
 * QueryParserException "Collection size must be integer" unless it is a number; CrudControllerAdvice
 * answers a QueryParserException 409 Conflict). Any other filter is refused, naming it.
 */
function idOrCodeFilter(call: ApiCall): ((o: { id: string; code?: string }) => boolean) | undefined {
  const filter = call.query.get('filter');
  if (filter === null) return undefined;
  const [property, operator, ...rest] = filter.split(':');
  if (operator === undefined) throw new HttpError(409, `Invalid filter => ${filter}`);
  if (property !== 'id' && property !== 'code') throw badRequest(`filter on \`${property}\` is not supported by the simulator (only id and code, eq or in)`);
  if ((operator !== 'eq' && operator !== 'in') || !rest.length) throw badRequest(`filter \`${filter}\` is not supported by the simulator (only id or code, eq:<value> or in:[a,b])`);
  const arg = rest.join(':');
  let values = [arg];
  if (operator === 'in') {
    if (!arg.startsWith('[') || !arg.endsWith(']')) {
      if (/^-?\d+$/.test(arg)) throw badRequest('filter in:<collection size> is not supported by the simulator');
      throw new HttpError(409, `Collection size must be integer \`${arg}\``);
    }
    values = arg.slice(1, -1).split(',');
  }
  return (o) => values.includes(property === 'id' ? o.id : o.code ?? '\u0000');
}

async function getList(call: ApiCall, match: RegExpMatchArray): Promise<Reply> {
  const res = RESOURCE_BY_PLURAL[match[1]];
  checkParams(call, ['fields', 'paging', 'page', 'pageSize', 'order', 'filter']);
  const filter = idOrCodeFilter(call);
  const fields = parseFields(call, FIELDS[res.type], res.type, LIST_DEFAULT_FIELDS);
  const orders = res === RESOURCES.organisationUnit ? ['id:asc', 'level:asc'] : ['id:asc'];
  const order = call.query.get('order') ?? 'id:asc';
  if (!orders.includes(order)) throw badRequest(`order=${order} is not supported by the simulator (supported: ${orders.join(', ')})`);
  const paging = enumParam(call, 'paging', ['true', 'false'] as const, 'true') === 'true';
  // A filter on id loads only those rows (as DHIS2's query engine does in SQL); the filter still decides.
  const byId = /^id:(?:eq:([^:[\]]+)|in:\[([^\]]*)\])$/.exec(call.query.get('filter') ?? '');
  let all = await loadObjects(call.state.pool, res.type, byId ? (byId[1] !== undefined ? [byId[1]] : byId[2].split(',')) : null);
  if (filter) all = all.filter(filter);
  // Array.sort is stable, so level:asc keeps uid order within a level.
  if (order === 'level:asc') all = all.sort((a, b) => a.level - b.level);
  if (!paging) return { status: 200, body: { [res.plural]: all.map((o) => pick(o, fields)) } };
  const page = positiveIntParam(call, 'page', 1);
  const pageSize = positiveIntParam(call, 'pageSize', 50);
  const pageCount = Math.max(1, Math.ceil(all.length / pageSize));
  const items = all.slice((page - 1) * pageSize, page * pageSize).map((o) => pick(o, fields));
  return { status: 200, body: { pager: { page, pageCount, total: all.length, pageSize }, [res.plural]: items } };
}

async function deleteOne(call: ApiCall, match: RegExpMatchArray): Promise<Reply> {
  const res = RESOURCE_BY_PLURAL[match[1]];
  const uid = match[2];
  checkParams(call, []);
  const { result: refused, writes } = await writeTransaction(call.state.pool, async (tx) => {
    const existing = await lockRow(tx.db, res, uid);
    if (!existing) throw missing(res, uid);
    const report = await deleteObject(tx, res, existing, call.state.blocked);
    if (report) tx.rollbackOnly = true;
    return report;
  });
  call.state.emit(writes);
  // DHIS2's CrudControllerAdvice answers a DeleteNotAllowedException with conflict(message, E4030): no import report.
  if (refused) throw new HttpError(409, refused.message, { errorCode: 'E4030' });
  return { status: 200, body: webMessage(200, undefined, { response: { responseType: 'ObjectReport', uid, klass: res.klass, errorReports: [] } }) };
}

/** A collection the owner keeps in a join table; `ordered` lists keep a sort_order. */
interface Membership { owner: ResourceSpec; member: ResourceSpec; table: string; ordered: boolean }
const MEMBERSHIPS: Record<string, Membership> = {
  'organisationUnitGroups/organisationUnits': { owner: RESOURCES.organisationUnitGroup, member: RESOURCES.organisationUnit, table: 'orgunitgroupmembers', ordered: false },
  'organisationUnitGroupSets/organisationUnitGroups': { owner: RESOURCES.organisationUnitGroupSet, member: RESOURCES.organisationUnitGroup, table: 'orgunitgroupsetmembers', ordered: true },
};

/** Adds or removes one member: only the join row changes, the owner's row (and lastUpdated) stay as they are. */
async function changeMembership(call: ApiCall, match: RegExpMatchArray): Promise<Reply> {
  const m = MEMBERSHIPS[`${match[1]}/${match[3]}`];
  if (!m) throw notFound(`No collection ${match[3]} on ${match[1]} in the simulator`);
  const [ownerUid, memberUid] = [match[2], match[4]];
  checkParams(call, []);
  const { writes } = await writeTransaction(call.state.pool, async (tx) => {
    const owner = await lockRow(tx.db, m.owner, ownerUid);
    if (!owner) throw missing(m.owner, ownerUid);
    const member = (await tx.db.query(`SELECT ${m.member.idColumn} AS id FROM ${m.member.table} WHERE uid = $1`, [memberUid])).rows[0];
    if (!member) throw missing(m.member, memberUid);
    const keys = `${m.owner.idColumn}, ${m.member.idColumn}`;
    const { rowCount } = call.method === 'DELETE'
      ? await tx.db.query(`DELETE FROM ${m.table} WHERE ${m.owner.idColumn} = $1 AND ${m.member.idColumn} = $2`, [owner.id, member.id])
      : m.ordered
        ? await tx.db.query(
          `INSERT INTO ${m.table} (${keys}, sort_order)
           SELECT $1, $2, COALESCE(MAX(sort_order), 0) + 1 FROM ${m.table} WHERE ${m.owner.idColumn} = $1
           ON CONFLICT DO NOTHING`, [owner.id, member.id])
        : await tx.db.query(`INSERT INTO ${m.table} (${keys}) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [owner.id, member.id]);
    if (rowCount) tx.record(m.owner.type, ownerUid, 'update');
  });
  call.state.emit(writes);
  return { status: 204 };
}

async function getMe(call: ApiCall): Promise<Reply> {
  checkParams(call, ['fields']);
  const fields = parseFields(call, ['id', 'username', 'name'], 'me');
  return { status: 200, body: pick({ id: call.user.id, username: call.user.username, name: call.user.username }, fields) };
}

/**
 * GET /api/deletedObjects?uid=&klass=&code=: what was deleted (web/DeletedObjectController.java; the
 * query is api/deletedobject/DeletedObjectQuery.java: lists uid, klass, code, and paging). Answers
 * {pager, deletedObjects: [{klass, uid, code, deletedAt, deletedBy}]}; without paging no pager.
 * Matching as HibernateDeletedObjectStore.buildCriteria: klass (when given) AND (uid OR code); with
 * a klass given it compares code with the uid list (its own slip, modelled as it is).
 */
async function getDeletedObjects(call: ApiCall): Promise<Reply> {
  checkParams(call, ['uid', 'klass', 'code', 'fields', 'paging']);
  const fields = parseFields(call, ['klass', 'uid', 'code', 'deletedAt', 'deletedBy'], 'deletedObjects');
  const list = (name: string) => call.query.get(name)?.split(',').filter(Boolean);
  const [uids, klasses, codes] = [list('uid'), list('klass'), list('code')];
  const { rows } = await call.state.pool.query(
    `SELECT klass, uid, code, to_char(deleted_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "deletedAt", deleted_by AS "deletedBy" FROM deletedobject
     WHERE ($2::text[] IS NULL OR klass = ANY($2))
       AND (($1::text[] IS NULL AND $3::text[] IS NULL) OR uid = ANY($1) OR code = ANY(CASE WHEN $2::text[] IS NULL THEN $3 ELSE $1 END))
     ORDER BY deletedobjectid`, [uids ?? null, klasses ?? null, codes ?? null]);
  const items = rows.map((r) => pick(Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)), fields));
  const paging = enumParam(call, 'paging', ['true', 'false'] as const, 'true') === 'true';
  return { status: 200, body: paging ? { pager: { page: 1, pageCount: 1, total: items.length, pageSize: 50 }, deletedObjects: items } : { deletedObjects: items } };
}

const one = new RegExp(`^/api/(${RESOURCE_PATH})/([^/]+)$`);
const membershipPattern = /^\/api\/(organisationUnitGroups|organisationUnitGroupSets)\/([^/]+)\/(organisationUnits|organisationUnitGroups)\/([^/]+)$/;

export const objectRoutes: Route[] = [
  { method: 'GET', pattern: /^\/api\/me$/, handle: getMe },
  { method: 'GET', pattern: /^\/api\/deletedObjects$/, handle: getDeletedObjects },
  { method: 'GET', pattern: new RegExp(`^/api/(${RESOURCE_PATH})$`), handle: getList },
  { method: 'GET', pattern: one, handle: getOne },
  { method: 'DELETE', pattern: one, handle: deleteOne },
  { method: 'POST', pattern: membershipPattern, handle: changeMembership },
  { method: 'DELETE', pattern: membershipPattern, handle: changeMembership },
];
