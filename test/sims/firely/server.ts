/**
 * A Firely Server (FHIR R4) simulator over a MongoDB database, one process per server:
 *
 *   tsx test/sims/firely/server.ts --name old --version 5.11.0 --mongo-url mongodb://127.0.0.1:27017/vonkdata \
 *       [--database vonkdata] [--collection vonkentries] [--port 4080] [--listen 127.0.0.1] [--state-dir DIR]
 *       [--admin-mongo-url mongodb://127.0.0.1:27017/vonkadmin]
 *
 * Each option can also come from the environment: FIRELY_SIM_NAME, FIRELY_SIM_VERSION, FIRELY_SIM_MONGO_URL, ...
 * --port 0 takes a free port; the log line `Now listening on: http://HOST:PORT` tells which.
 * Every response carries `X-Sim-Server: <name>`, so a test sees through a proxy who answered.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { MongoClient } from 'mongodb';
import { parseOptions, UsageError } from './args';
import { DEFAULT_COLLECTION, entries, provision, readSystemDoc, schemaVersionOf, SeqClock, WriteQueue } from './entries';
import { ADMIN_TYPES, handleAdmin, loadSpecification, type AdminContext } from './admin';
import { ServerKnobs } from './faults';
import { capabilityStatement, FHIR_JSON, FhirError, notImplemented, operationOutcome, RESOURCE_TYPES, type Reply } from './fhir';
import { log, maskPassword } from './log';
import { handleRest, type RestContext } from './rest';
import { checkFormat } from './search';

const OPTIONS = ['--name', '--version', '--mongo-url', '--database', '--collection', '--port', '--listen', '--state-dir', '--admin-mongo-url'];
const MAX_BODY_BYTES = 10 * 1024 * 1024;

function config(argv: string[]) {
  const opts = parseOptions(argv, OPTIONS);
  const get = (name: string) => opts.get(name) ?? process.env[`FIRELY_SIM_${name.slice(2).toUpperCase().replace(/-/g, '_')}`];
  const need = (name: string) => {
    const v = get(name);
    if (!v) throw new UsageError(`Option '${name}' is required.`);
    return v;
  };
  const mongoUrl = need('--mongo-url');
  const database = get('--database') || new URL(mongoUrl).pathname.replace(/^\//, '');
  if (!database) throw new UsageError(`Name the database in --mongo-url (mongodb://host:port/vonkdata) or with --database.`);
  const port = Number(get('--port') ?? '4080');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: '${get('--port')}' is not a port number.`);
  // The administration database (Administration:MongoDbOptions:ConnectionString); by default vonkadmin beside the data database.
  const adminMongoUrl = get('--admin-mongo-url') || (() => { const u = new URL(mongoUrl); u.pathname = '/vonkadmin'; return u.toString(); })();
  const adminDatabase = new URL(adminMongoUrl).pathname.replace(/^\//, '');
  if (!adminDatabase) throw new UsageError(`Name the database in --admin-mongo-url (mongodb://host:port/vonkadmin).`);
  if (adminMongoUrl === mongoUrl || (!get('--admin-mongo-url') && adminDatabase === database)) throw new UsageError('The administration database must be another database than the data database.');
  return {
    adminMongoUrl, adminDatabase,
    name: need('--name'), version: need('--version'), mongoUrl, database, port,
    collection: get('--collection') || DEFAULT_COLLECTION, listen: get('--listen') || '127.0.0.1', stateDir: get('--state-dir'),
  };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => { size += c.length; if (size <= MAX_BODY_BYTES) chunks.push(c); });
    req.on('end', () => (size > MAX_BODY_BYTES ? reject(new FhirError(413, 'invalid', `The request body is over ${MAX_BODY_BYTES} bytes`)) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

async function parseJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/(fhir\+)?json\b/i.test(type)) throw new FhirError(415, 'not-supported', `Content-Type '${type || 'none'}' is not supported; send application/fhir+json`);
  const text = (await readBody(req)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FhirError(400, 'invalid', `The body is not valid JSON: ${(e as Error).message}`);
  }
}

function send(res: ServerResponse, name: string, reply: Reply): void {
  const headers: Record<string, string> = { 'X-Sim-Server': name, ...reply.headers };
  if (reply.body === undefined) {
    res.writeHead(reply.status, headers).end();
    return;
  }
  const body = JSON.stringify(reply.body);
  res.writeHead(reply.status, { ...headers, 'Content-Type': FHIR_JSON, 'Content-Length': String(Buffer.byteLength(body)) }).end(body);
}

async function main(): Promise<void> {
  let cfg: ReturnType<typeof config>;
  try {
    cfg = config(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  const schema = schemaVersionOf(cfg.version);
  log('INF', `Firely Server ${cfg.version} (simulator '${cfg.name}') starting`);
  const client = new MongoClient(cfg.mongoUrl, { serverSelectionTimeoutMS: 10_000 });
  const col = entries(client.db(cfg.database), cfg.collection);
  try {
    const found = await readSystemDoc(col);
    if (!found) log('INF', `Provisioning database ${cfg.database} (schema version ${schema})`);
    const have = found ? found.schemaVersion : await provision(col, schema, `Firely Server ${cfg.version}`);
    if (have !== schema) {
      const advice = have < schema ? 'migrate it to the new schema with Firely Server Ingest (zero-downtime migration)' : 'it belongs to a newer Firely Server';
      log('FTL', `Database ${cfg.database} has schema version ${have}; Firely Server ${cfg.version} needs ${schema}: ${advice}`);
      await client.close();
      process.exit(1);
    }
  } catch (e) {
    log('FTL', `Cannot use MongoDB database ${cfg.database} at ${maskPassword(cfg.mongoUrl)}: ${(e as Error).message}`);
    await client.close().catch(() => undefined);
    process.exit(1);
  }

  const adminClient = new MongoClient(cfg.adminMongoUrl, { serverSelectionTimeoutMS: 10_000 });
  const adminCol = adminClient.db(cfg.adminDatabase).collection('vonkentries');
  try {
    if (await loadSpecification(adminCol, cfg.version)) log('INF', `Administration database ${cfg.adminDatabase} initialised: the specification's conformance resources loaded`);
    log('INF', 'Conformance resource loading finished successfully. Server is ready to receive requests.');
  } catch (e) {
    log('FTL', `Cannot use the administration database ${cfg.adminDatabase} at ${maskPassword(cfg.adminMongoUrl)}: ${(e as Error).message}`);
    await Promise.all([client.close(), adminClient.close()]).catch(() => undefined);
    process.exit(1);
  }

  const knobs = new ServerKnobs(cfg.stateDir);
  const admin: AdminContext = { col: adminCol, loading: () => knobs.takeAdminLoading(), forbidden: () => knobs.adminForbidden(), notServed: (t) => knobs.adminNotServed(t) };
  const ctx: RestContext = {
    col, writes: new WriteQueue(), clock: new SeqClock(), defaultTotal: Number(cfg.version.split('.')[0]) >= 6 ? 'none' : 'accurate', differ: (r) => knobs.differ(r),
  };

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const base = `http://${req.headers.host ?? `${cfg.listen}:${cfg.port}`}`;
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    if (knobs.licenseInvalid()) return new FhirError(402, 'security', 'The license of this Firely Server is expired or otherwise invalid').toReply();
    checkFormat(url.searchParams, req.headers.accept);
    const [first] = segments;
    if (segments.length === 1 && (first === '$liveness' || first === '$readiness' || first === 'metadata')) {
      if (method !== 'GET') throw new FhirError(405, 'not-supported', `${method} is not allowed on ${first}`);
      if (first === 'metadata') return { status: 200, body: capabilityStatement(base, cfg.name, cfg.version) };
      if (first === '$readiness' && knobs.takeReadinessLocked()) {
        return { status: 423, body: operationOutcome('error', 'lock-error', 'Firely Server is busy with a long running operation and cannot process requests') };
      }
      return { status: 200, body: operationOutcome('information', 'informational', 'Firely Server is up and running') };
    }
    if (!segments.length) throw notImplemented(`${method} on the base (batch, transaction, whole-system search)`);
    if (first === 'administration') {
      return handleAdmin({ method, segments: segments.slice(1), query: url.searchParams, base, body: () => parseJson(req) }, admin);
    }
    if (ADMIN_TYPES.includes(first) && !RESOURCE_TYPES.includes(first)) {
      throw new FhirError(404, 'not-supported', `Request for not-supported ResourceType(s) ${first}: conformance resources are managed on /administration/${first} (the simulator does not store them on the data endpoint)`);
    }
    return handleRest({ method, segments, query: url.searchParams, headers: req.headers, base, body: () => parseJson(req) }, ctx);
  }

  const server = createServer((req, res) => {
    route(req).then((reply) => send(res, cfg.name, reply), (err) => {
      if (err instanceof FhirError) return send(res, cfg.name, err.toReply());
      log('ERR', `${req.method} ${req.url} failed: ${(err as Error).stack ?? String(err)}`);
      send(res, cfg.name, { status: 500, body: operationOutcome('error', 'exception', (err as Error).message) });
    });
  });
  server.listen(cfg.port, cfg.listen, () => {
    const { port } = server.address() as { port: number };
    log('INF', `Now listening on: http://${cfg.listen}:${port}`);
    log('INF', 'Application started. Press Ctrl+C to shut down.');
  });

  const shutdown = () => {
    log('INF', 'Application is shutting down...');
    server.close(() => { Promise.all([client.close(), adminClient.close()]).finally(() => process.exit(0)); });
    server.closeIdleConnections();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((e) => {
  log('FTL', `Unhandled exception: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
