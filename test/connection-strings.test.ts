/**
 * Addresses are parsed, not pattern-matched: a MongoDB connection string names hosts, a database
 * and allowed options only (no authentication mechanism, no file, no credential), and an http(s)
 * URL carries no credential, no other scheme and no fragment. A run given anything else fails at
 * its first line naming the field, and nothing connects to the host it names.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { parseMongoConnectionString } from '../contracts/endpoints';
import { migrateFirelyServerInput } from '../contracts/firely/schema';
import { describeIssues } from '../contracts/input';
import { switchIrisMirrorInput } from '../contracts/iris/schema';
import { channelConfig } from '../activities/approvals/channels';
import { syncConfigSchema } from '../activities/dhis2/config';
import { checkDatabases } from '../activities/firely/databases';
import { useLabs } from './lab/suite';
import { repoRoot, runCli } from './support/processes';

/** An example file (whole-line // comments allowed, as the sync configuration has them). */
const example = (name: string) => JSON.parse(readFileSync(path.join(repoRoot, 'examples', name), 'utf8').replace(/^\s*\/\/.*$/gm, ''));
/** The problems a schema names for an input, one "field: problem" line each ([] when it is accepted). */
const problemsOf = (schema: { safeParse(v: unknown): { success: boolean; error?: unknown } }, input: unknown): string[] => {
  const r = schema.safeParse(input);
  return r.success ? [] : describeIssues(r.error as Parameters<typeof describeIssues>[0]);
};
const firely = example('migrateFirelyServer.json');
const withNewDatabase = (connectionString: string) => ({ ...firely, newServer: { ...firely.newServer, database: { ...firely.newServer.database, connectionString } } });
const oidc = (host: string) => `mongodb://${host}/vonkdata?authMechanism=MONGODB-OIDC&authMechanismProperties=ENVIRONMENT:k8s`;

/** A TCP listener on 127.0.0.1 that counts the connections made to it (and answers none). */
async function countingListener() {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((s) => { connections += 1; sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    get connections() { return connections; },
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

describe('a MongoDB connection string in migrateFirelyServer\'s input', () => {
  test.each([
    ['the OIDC identity of the worker', oidc('evil:27017'), 'option "authMechanism" is refused: an authentication mechanism makes the driver fetch a credential by itself'],
    ['an authentication mechanism', 'mongodb://db:27017/vonkdata?authMechanism=MONGODB-AWS', 'option "authMechanism" is refused'],
    ['its properties alone', 'mongodb://db:27017/vonkdata?authMechanismProperties=ENVIRONMENT:azure,TOKEN_RESOURCE:x', 'option "authMechanismProperties" is refused'],
    ['a mechanism in other letters', 'mongodb://db:27017/vonkdata?AUTHMECHANISM=GSSAPI', 'option "AUTHMECHANISM" is refused'],
    ['a mechanism percent-encoded', 'mongodb://db:27017/vonkdata?%61uthMechanism=MONGODB-OIDC', 'option "authMechanism" is refused'],
    ['a client key file', 'mongodb://db:27017/vonkdata?tls=true&tlsCertificateKeyFile=/etc/worker/key.pem', 'option "tlsCertificateKeyFile" is refused: it makes the driver read a file of the worker'],
    ['a CA file', 'mongodb://db:27017/vonkdata?tls=true&tlsCAFile=/etc/worker/ca.pem', 'option "tlsCAFile" is refused'],
    ['an unknown option', 'mongodb://db:27017/vonkdata?compressors=zlib', 'option "compressors" is not allowed; allowed: replicaSet, tls, '],
    ['an option turning certificate checks off', 'mongodb://db:27017/vonkdata?tlsInsecure=true', 'option "tlsInsecure" is not allowed'],
    ['an allowed option with a bad value', 'mongodb://db:27017/vonkdata?readPreference=anywhere', 'option "readPreference" has the value "anywhere"'],
    ['an option given twice', 'mongodb://db:27017/vonkdata?replicaSet=a&replicaset=b', 'option "replicaset" is given twice'],
    ['a password', 'mongodb://u:secret@db:27017/vonkdata', 'must not hold a password'],
    ['a user name', 'mongodb://CN=worker@db:27017/vonkdata', 'must not hold a user name: credentials come only from secret references'],
    ['a Unix socket', 'mongodb://%2Ftmp%2Fmongodb-27017.sock/vonkdata', 'the host "%2Ftmp%2Fmongodb-27017.sock" is not a host name'],
    ['no database', 'mongodb://db:27017/?tls=true', 'must name the database'],
    ['another scheme', 'http://db:27017/vonkdata', 'must start with mongodb:// or mongodb+srv://'],
  ])('%s is refused, naming the field and the option', (_what, connectionString, problem) => {
    expect(problemsOf(migrateFirelyServerInput, withNewDatabase(connectionString)))
      .toEqual([expect.stringContaining(`newServer.database.connectionString: ${problem}`)]);
  });

  test.each([
    'mongodb://127.0.0.1:27017/vonkdata',
    'mongodb://mongo-0.example.org:27017,mongo-1.example.org:27017,[fd00::5]:27018/vonkdata?replicaSet=rs0&tls=true&readPreference=primary&w=majority&retryWrites=true',
    'mongodb+srv://mongo.example.org/vonkdata?tls=true&appName=runbooks',
    'mongodb://db/vonkdata?directConnection=true&serverSelectionTimeoutMS=5000&connectTimeoutMS=5000',
  ])('%s is accepted, read into hosts, database and options', (connectionString) => {
    expect(problemsOf(migrateFirelyServerInput, withNewDatabase(connectionString))).toEqual([]);
  });

  test('the pieces are what the driver reads: hosts (IPv6 without brackets, default port), database, options', () => {
    expect(parseMongoConnectionString('mongodb://Mongo-0.example.org,[fd00::5]:27018/vonkdata?replicaSet=rs0')).toEqual({
      ok: true, value: { srv: false, hosts: [{ host: 'mongo-0.example.org', port: 27017 }, { host: 'fd00::5', port: 27018 }], database: 'vonkdata', options: { replicaSet: 'rs0' } },
    });
  });
});

describe('an http(s) URL in any runbook input or worker configuration', () => {
  test.each([
    ['a user and password', 'http://admin:secret@firely-old.example.org:4080', 'must not hold a user name or password (user@ or user:password@): credentials come only from secret references'],
    ['a user name', 'http://admin@firely-old.example.org:4080', 'must not hold a user name or password'],
    ['javascript:', 'javascript:alert(1)', 'the scheme "javascript" is not allowed: only http and https'],
    ['file:', 'file:///etc/passwd', 'the scheme "file" is not allowed: only http and https'],
    ['a fragment', 'http://firely-old.example.org:4080#x', 'must not have a fragment'],
    ['a query on a base URL', 'http://firely-old.example.org:4080?_format=xml', 'a base URL takes no query'],
    ['a tab the URL parser would drop', 'http://firely-old.exa\tmple.org:4080', 'must not contain spaces or control characters'],
  ])('a Firely base URL with %s is refused, naming the field', (_what, baseUrl, problem) => {
    expect(problemsOf(migrateFirelyServerInput, { ...firely, oldServer: { ...firely.oldServer, baseUrl } }))
      .toEqual([expect.stringContaining(`oldServer.baseUrl: ${problem}`)]);
  });

  test('the proxy\'s verify URL, IRIS\'s application and mirror status URLs, DHIS2\'s base URLs and webhook URLs follow the same rule', () => {
    expect(problemsOf(migrateFirelyServerInput, { ...firely, proxy: { ...firely.proxy, verifyUrl: 'https://u:p@fhir.example.org/metadata' } }))
      .toEqual([expect.stringContaining('proxy.verifyUrl: must not hold a user name or password')]);
    const iris = example('switchIrisMirror.json');
    expect(problemsOf(switchIrisMirrorInput, { ...iris, applicationUrl: 'http://ops:secret@loadbalancer:8080/csp/sys/UtilHome.csp' }))
      .toEqual([expect.stringContaining('applicationUrl: must not hold a user name or password')]);
    expect(problemsOf(switchIrisMirrorInput, { ...iris, primary: { ...iris.primary, mirrorStatusUrl: 'file:///usr/irissys/mgr/messages.log' } }))
      .toEqual([expect.stringContaining('primary.mirrorStatusUrl: the scheme "file" is not allowed')]);
    const sync = example('orgunit-sync.config.json');
    expect(problemsOf(syncConfigSchema, { ...sync, source: { ...sync.source, baseUrl: 'https://admin:district@mfr.health.example.org' } }))
      .toEqual([expect.stringContaining('source.baseUrl: must not hold a user name or password')]);
    expect(problemsOf(channelConfig, { webhooks: { ops: { url: 'javascript:fetch(1)' } } }))
      .toEqual([expect.stringContaining('webhooks.ops.url: the scheme "javascript" is not allowed')]);
    expect(problemsOf(channelConfig, { webhooks: { ops: { url: 'https://hooks.example.org/runbooks?channel=ops' } } })).toEqual([]);
  });

  test('the CLI refuses such an input before it starts anything, naming the field and the option', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'connstr-')), 'input.json');
    writeFileSync(file, JSON.stringify({ ...withNewDatabase(oidc('evil:27017')), dryRun: true }));
    const r = await runCli(['start', 'migrateFirelyServer', '--input', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/newServer\.database\.connectionString: option "authMechanism" is refused(.|\n)*Nothing was started/);
  });
});

describe('nothing connects to the host an OIDC connection string names', () => {
  const suite = useLabs('connstr', async () => ({ stop: async () => undefined }));

  test('checkDatabases (as a run started before this rule would call it) refuses before the driver connects', async () => {
    const listener = await countingListener();
    try {
      const hostile = { connectionString: oidc(listener.host), collection: 'vonkentries' };
      const err = await checkDatabases({ source: hostile, target: hostile, resuming: false }).then(() => undefined, (e: unknown) => e);
      expect(listener.connections).toBe(0);
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect(err).toMatchObject({ type: 'InvalidInput', nonRetryable: true, message: expect.stringContaining(`The MongoDB connection string mongodb://${listener.host}/vonkdata is refused: option "authMechanism" is refused`) });
      // The listener does count: a string without those options is tried (and does not answer).
      const plain = { connectionString: `mongodb://${listener.host}/vonkdata?serverSelectionTimeoutMS=500&connectTimeoutMS=500`, collection: 'vonkentries' };
      await expect(checkDatabases({ source: plain, target: plain, resuming: false })).rejects.toThrow(/does not answer/);
      expect(listener.connections).toBeGreaterThan(0);
    } finally {
      listener.close();
    }
  }, 60_000);

  test('a dry-run migrateFirelyServer with the OIDC string fails at once with InvalidInput, and the named host sees no connection', async () => {
    const listener = await countingListener();
    try {
      const handle = await suite.client.workflow.start('migrateFirelyServer', {
        taskQueue: suite.queue, workflowId: `connstr-oidc-${Date.now()}`, args: [{ ...withNewDatabase(oidc(listener.host)), dryRun: true }],
      });
      const err = await handle.result().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
      expect(cause.type).toBe('InvalidInput');
      expect(cause.message).toContain('newServer.database.connectionString: option "authMechanism" is refused');
      // It failed at its first line: no activity ran.
      const history = await handle.fetchHistory();
      expect(history.events?.some((e) => e.activityTaskScheduledEventAttributes)).toBe(false);
      expect(listener.connections).toBe(0);
    } finally {
      listener.close();
    }
  }, 60_000);
});
