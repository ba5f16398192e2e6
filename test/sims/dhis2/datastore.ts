/**
 * /api/dataStore: JSON values by namespace and key, in DHIS2's keyjsonvalue table, with DHIS2's
 * sharing of entries (/api/sharing?type=dataStore) and the users lookup a client needs for it.
 *
 * Sources (dhis2/dhis2-core, master):
 * - an entry is a shareable object with a uid and an owner; a new entry's public access is the
 *   default `rw------`, so any logged-in user reads and writes it unless its sharing says otherwise
 *   (docs.dhis2.org, "Data store" > "Sharing of data store keys":
 *   https://docs.dhis2.org/en/develop/using-the-api/dhis-core-version-master/data-store.html);
 * - `GET /api/dataStore/{namespace}/{key}/metaData` gives the entry with its id
 *   (dhis-2/dhis-web-api/src/main/java/org/hisp/dhis/webapi/controller/datastore/DatastoreController.java);
 * - the id is what `POST /api/sharing?type=dataStore&id=<id>` takes, with
 *   `{"object": {"publicAccess", "userAccesses": [{"id", "access"}], "userGroupAccesses"}}`
 *   (docs.dhis2.org "Sharing": https://docs.dhis2.org/en/develop/using-the-api/dhis-core-version-master/sharing.html);
 * - a write by a user without write access: AccessDeniedException "Access denied for key '%s' in
 *   namespace '%s'" -> 403 Forbidden, no errorCode; a read without read access: ForbiddenException
 *   with the same message -> 403 with errorCode E1006
 *   (dhis-2/dhis-services/dhis-service-core/src/main/java/org/hisp/dhis/datastore/DefaultDatastoreService.java,
 *   writeProtectedIn / readProtectedIn; dhis-2/dhis-api/src/main/java/org/hisp/dhis/feedback/ForbiddenException.java);
 * - a superuser (ALL authority) and the owner always have access (AclService).
 */
import { checkParams, HttpError, notFound, nowTimestamp, webMessage, type ApiCall, type Reply, type Route } from './http';
import type { SimUser } from './types';
import { generateUid } from './uid';

const keyMissing = (ns: string, key: string) => notFound(`Key '${key}' not found in namespace '${ns}'`);

/** Sharing as DHIS2 stores it: public access, and per-user / per-group access strings like `rw------`. */
interface Sharing { public: string; owner?: string; users: Record<string, { id: string; access: string }>; userGroups: Record<string, { id: string; access: string }> }
const defaultSharing = (owner: SimUser): Sharing => ({ public: 'rw------', owner: owner.id, users: {}, userGroups: {} });

interface EntryRow { uid: string | null; userid: string | null; sharing: Sharing | null }

function may(user: SimUser, row: EntryRow, want: 'r' | 'w'): boolean {
  if (user.superuser || row.userid === user.rowId) return true;
  const sharing = row.sharing ?? { public: 'rw------', users: {}, userGroups: {} };
  const at = want === 'r' ? 0 : 1;
  const grants = (access: string | undefined) => access?.[at] === want || (want === 'r' && access?.[1] === 'w');
  return grants(sharing.public) || grants(sharing.users?.[user.id]?.access);
}
const readDenied = (ns: string, key: string) => new HttpError(403, `Access denied for key '${key}' in namespace '${ns}'`, { errorCode: 'E1006' });
const writeDenied = (ns: string, key: string) => new HttpError(403, `Access denied for key '${key}' in namespace '${ns}'`);

async function entryRow(call: ApiCall, ns: string, key: string): Promise<(EntryRow & { jbvalue: unknown; created: string; lastupdated: string }) | undefined> {
  const { rows } = await call.state.pool.query(
    `SELECT uid, userid::text AS userid, sharing, jbvalue, to_char(created, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS created,
            to_char(lastupdated, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS lastupdated
       FROM keyjsonvalue WHERE namespace = $1 AND namespacekey = $2`, [ns, key]);
  return rows[0];
}

async function listNamespaces(call: ApiCall): Promise<Reply> {
  checkParams(call, []);
  const { rows } = await call.state.pool.query('SELECT DISTINCT namespace FROM keyjsonvalue ORDER BY namespace');
  return { status: 200, body: rows.map((r) => r.namespace) };
}

async function listKeys(call: ApiCall, [, ns]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const { rows } = await call.state.pool.query('SELECT namespacekey FROM keyjsonvalue WHERE namespace = $1 ORDER BY namespacekey', [ns]);
  if (rows.length === 0) throw notFound(`Namespace not found: '${ns}'`);
  return { status: 200, body: rows.map((r) => r.namespacekey) };
}

async function deleteNamespace(call: ApiCall, [, ns]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const { rows } = await call.state.pool.query('SELECT namespacekey AS key, uid, userid::text AS userid, sharing FROM keyjsonvalue WHERE namespace = $1', [ns]);
  if (!rows.length) throw notFound(`Namespace not found: '${ns}'`);
  const denied = rows.find((r) => !may(call.user, r, 'w'));
  if (denied) throw writeDenied(ns, denied.key);
  await call.state.pool.query('DELETE FROM keyjsonvalue WHERE namespace = $1', [ns]);
  return { status: 200, body: webMessage(200, `Namespace '${ns}' deleted.`) };
}

async function getValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const row = await entryRow(call, ns, key);
  if (!row) throw keyMissing(ns, key);
  if (!may(call.user, row, 'r')) throw readDenied(ns, key);
  return { status: 200, body: row.jbvalue };
}

/** The entry without its value: its id (what /api/sharing takes), owner and sharing. */
async function getMetaData(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const row = await entryRow(call, ns, key);
  if (!row) throw keyMissing(ns, key);
  if (!may(call.user, row, 'r')) throw readDenied(ns, key);
  const owner = row.userid ? call.state.users.find((u) => u.rowId === row.userid) : undefined;
  return {
    status: 200,
    body: { id: row.uid, key, namespace: ns, created: row.created, lastUpdated: row.lastupdated, ...(owner ? { createdBy: { id: owner.id, username: owner.username } } : {}), sharing: row.sharing ?? { public: 'rw------', users: {}, userGroups: {} } },
  };
}

/** POST creates only (409 when the key exists); PUT updates, or creates a missing key as DHIS2 2.40+ does. */
async function storeValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const value = JSON.stringify(await call.json());
  const now = nowTimestamp();
  const existing = await entryRow(call, ns, key);
  if (existing && call.method === 'POST') throw new HttpError(409, `Key '${key}' already exists on namespace '${ns}'`);
  if (existing && !may(call.user, existing, 'w')) throw writeDenied(ns, key);
  const { rows } = await call.state.pool.query(
    `INSERT INTO keyjsonvalue (namespace, namespacekey, jbvalue, created, lastupdated, uid, userid, sharing) VALUES ($1, $2, $3, $4, $4, $5, $6, $7)
     ON CONFLICT (namespace, namespacekey) DO UPDATE SET jbvalue = EXCLUDED.jbvalue, lastupdated = EXCLUDED.lastupdated
     RETURNING (xmax = 0) AS created`, [ns, key, value, now, generateUid(), call.user.rowId, JSON.stringify(defaultSharing(call.user))]);
  return rows[0].created
    ? { status: 201, body: webMessage(201, `Key '${key}' created.`) }
    : { status: 200, body: webMessage(200, `Key '${key}' updated.`) };
}

async function deleteValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const row = await entryRow(call, ns, key);
  if (!row) throw keyMissing(ns, key);
  if (!may(call.user, row, 'w')) throw writeDenied(ns, key);
  await call.state.pool.query('DELETE FROM keyjsonvalue WHERE namespace = $1 AND namespacekey = $2', [ns, key]);
  return { status: 200, body: webMessage(200, `Key '${key}' deleted from namespace '${ns}'.`) };
}

const accessPattern = /^[r-][w-]------$/;

/** POST /api/sharing?type=dataStore&id=<entry uid>: replaces the entry's sharing (the simulator shares dataStore entries only). */
async function postSharing(call: ApiCall): Promise<Reply> {
  checkParams(call, ['type', 'id']);
  const type = call.query.get('type');
  const id = call.query.get('id');
  if (type !== 'dataStore') throw new HttpError(400, `Type ${type ?? '(none)'} is not supported by the simulator's /api/sharing (only dataStore).`);
  const body = await call.json() as { object?: { publicAccess?: unknown; userAccesses?: unknown; userGroupAccesses?: unknown } };
  const object = body?.object;
  if (!id || typeof object !== 'object' || object === null) throw new HttpError(400, 'Sharing needs ?id= and a body {"object": {...}}');
  const { rows } = await call.state.pool.query('SELECT namespace, namespacekey AS key, uid, userid::text AS userid, sharing FROM keyjsonvalue WHERE uid = $1', [id]);
  if (!rows.length) throw notFound(`Object of type dataStore with id ${id} could not be found.`);
  if (!may(call.user, rows[0], 'w')) throw new HttpError(403, 'You do not have manage access to this object.');
  const accesses = (list: unknown, what: string) => {
    if (list === undefined) return {};
    if (!Array.isArray(list)) throw new HttpError(400, `${what} must be a list`);
    return Object.fromEntries(list.map((a) => {
      if (typeof a?.id !== 'string' || typeof a?.access !== 'string' || !accessPattern.test(a.access)) throw new HttpError(400, `${what}: each entry needs an id and an access like rw------`);
      return [a.id, { id: a.id, access: a.access }];
    }));
  };
  const users = accesses(object.userAccesses, 'userAccesses');
  const unknown = Object.keys(users).find((uid) => !call.state.users.some((u) => u.id === uid));
  if (unknown) throw new HttpError(409, `User with id ${unknown} could not be found.`);
  const publicAccess = object.publicAccess ?? rows[0].sharing?.public ?? 'rw------';
  if (typeof publicAccess !== 'string' || !accessPattern.test(publicAccess)) throw new HttpError(400, 'publicAccess must be an access string like r-------');
  const sharing: Sharing = { public: publicAccess, owner: rows[0].sharing?.owner, users, userGroups: accesses(object.userGroupAccesses, 'userGroupAccesses') };
  await call.state.pool.query('UPDATE keyjsonvalue SET sharing = $2 WHERE uid = $1', [id, JSON.stringify(sharing)]);
  return { status: 200, body: webMessage(200, 'Access control set') };
}

const namespace = /^\/api\/dataStore\/([^/]+)$/;
const entry = /^\/api\/dataStore\/([^/]+)\/([^/]+)$/;

export const dataStoreRoutes: Route[] = [
  { method: 'GET', pattern: /^\/api\/dataStore$/, handle: listNamespaces },
  { method: 'GET', pattern: namespace, handle: listKeys },
  { method: 'DELETE', pattern: namespace, handle: deleteNamespace },
  { method: 'GET', pattern: entry, handle: getValue },
  { method: 'POST', pattern: entry, handle: storeValue },
  { method: 'PUT', pattern: entry, handle: storeValue },
  { method: 'DELETE', pattern: entry, handle: deleteValue },
  { method: 'GET', pattern: /^\/api\/dataStore\/([^/]+)\/([^/]+)\/metaData$/, handle: getMetaData },
  { method: 'POST', pattern: /^\/api\/sharing$/, handle: postSharing },
];
