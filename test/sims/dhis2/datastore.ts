/** /api/dataStore: JSON values by namespace and key, in DHIS2's keyjsonvalue table. */
import { checkParams, HttpError, notFound, nowTimestamp, webMessage, type ApiCall, type Reply, type Route } from './http';

const keyMissing = (ns: string, key: string) => notFound(`Key '${key}' not found in namespace '${ns}'`);

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
  const { rowCount } = await call.state.pool.query('DELETE FROM keyjsonvalue WHERE namespace = $1', [ns]);
  if (!rowCount) throw notFound(`Namespace not found: '${ns}'`);
  return { status: 200, body: webMessage(200, `Namespace '${ns}' deleted.`) };
}

async function getValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const { rows } = await call.state.pool.query('SELECT jbvalue FROM keyjsonvalue WHERE namespace = $1 AND namespacekey = $2', [ns, key]);
  if (rows.length === 0) throw keyMissing(ns, key);
  return { status: 200, body: rows[0].jbvalue };
}

/** POST creates only (409 when the key exists); PUT updates, or creates a missing key as DHIS2 2.40+ does. */
async function storeValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const value = JSON.stringify(await call.json());
  const now = nowTimestamp();
  if (call.method === 'POST') {
    const { rowCount } = await call.state.pool.query(
      `INSERT INTO keyjsonvalue (namespace, namespacekey, jbvalue, created, lastupdated) VALUES ($1, $2, $3, $4, $4)
       ON CONFLICT (namespace, namespacekey) DO NOTHING`, [ns, key, value, now]);
    if (!rowCount) throw new HttpError(409, `Key '${key}' already exists on namespace '${ns}'`);
    return { status: 201, body: webMessage(201, `Key '${key}' created.`) };
  }
  // xmax = 0 only on a freshly inserted row: tells a create from an update in one statement.
  const { rows } = await call.state.pool.query(
    `INSERT INTO keyjsonvalue (namespace, namespacekey, jbvalue, created, lastupdated) VALUES ($1, $2, $3, $4, $4)
     ON CONFLICT (namespace, namespacekey) DO UPDATE SET jbvalue = EXCLUDED.jbvalue, lastupdated = EXCLUDED.lastupdated
     RETURNING (xmax = 0) AS created`, [ns, key, value, now]);
  return rows[0].created
    ? { status: 201, body: webMessage(201, `Key '${key}' created.`) }
    : { status: 200, body: webMessage(200, `Key '${key}' updated.`) };
}

async function deleteValue(call: ApiCall, [, ns, key]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const { rowCount } = await call.state.pool.query('DELETE FROM keyjsonvalue WHERE namespace = $1 AND namespacekey = $2', [ns, key]);
  if (!rowCount) throw keyMissing(ns, key);
  return { status: 200, body: webMessage(200, `Key '${key}' deleted from namespace '${ns}'.`) };
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
];
