/** Inputs of the Firely Server migration runbook (so far: the reverse proxy it switches). */
import { z } from 'zod';
import { absolutePath, approvalPolicy, defaultApprovalPolicy, duration, runbookInputFields } from '../input';
import { sshHost } from '../ssh';
import { allowedMongoOptions, httpBaseUrl, httpUrl, mongoConnectionString, parseMongoConnectionString } from '../endpoints';

export const hostPort = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port, e.g. 10.0.0.5:4080');

export const nginxProxy = z.strictObject({
  kind: z.literal('nginx'),
  host: sshHost.describe('Where nginx runs'),
  upstreamFile: absolutePath.describe('The include file that holds only the upstream block, e.g. /etc/nginx/conf.d/firely-upstream.conf'),
  upstreamName: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an upstream name').default('firely'),
  nginx: absolutePath.default('/usr/sbin/nginx'),
  configFile: absolutePath.optional().describe('nginx -c; default: nginx\'s own'),
  sudo: z.boolean().default(false).describe('Run nginx -t / -s reload and the file move with sudo -n'),
  verifyUrl: httpUrl.describe('A URL through the proxy, asked after the switch'),
  upstreamHeader: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').default('X-Upstream')
    .describe('The response header that names the upstream which answered (add_header X-Upstream $upstream_addr always;)'),
});
export type NginxProxy = z.infer<typeof nginxProxy>;

/** Goes into socat's address (UNIX-CONNECT:<path>): no characters socat reads as separators. */
const socketPath = z.string().regex(/^\/[A-Za-z0-9_./+@-]{1,200}$/, 'an absolute path of letters, digits and _ . / + @ - (socat reads , : ! as separators)')
  .refine((p) => !p.split('/').includes('..'), 'must not contain ".."');

export const haproxyProxy = z.strictObject({
  kind: z.literal('haproxy'),
  host: sshHost.describe('Where HAProxy runs (its admin socket is reached through SSH)'),
  adminSocket: socketPath.default('/run/haproxy/admin.sock')
    .describe('The runtime API socket: stats socket <path> level admin, usable by the SSH user (or with sudo)'),
  backend: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a backend name: letters, digits, _ . : - (at most 64)').default('firely')
    .describe('The backend that holds both Firely servers as server lines: the old one ready, the new one disabled (maint)'),
  socat: absolutePath.default('/usr/bin/socat').describe('socat on the proxy host, which talks to the admin socket'),
  sudo: z.boolean().default(false).describe('Run socat (and the state file move) with sudo -n'),
  stateFile: absolutePath.optional()
    .describe('Where `show servers state` is written after a switch (server-state-file, read back by load-server-state-from-file on a reload); without it the switch lives in memory only and a reload or restart returns to the configuration file\'s states'),
  verifyUrl: httpUrl.describe('A URL through the proxy, asked after the switch'),
  upstreamHeader: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').default('X-Upstream')
    .describe('The response header that names the server which answered (http-response set-header X-Upstream %si:%sp)'),
});
export type HaproxyProxy = z.infer<typeof haproxyProxy>;

export const reverseProxy = z.discriminatedUnion('kind', [nginxProxy, haproxyProxy]);
export type ReverseProxy = z.infer<typeof reverseProxy>;

/** A MongoDB connection string without credentials: it is passed to the ingest tool on the migration host's command line and kept in the run's history. */
const mongoUrl = mongoConnectionString.describe('mongodb://host:27017/database with only these options: ' + allowedMongoOptions.join(', '));
const collection = z.string().regex(/^[A-Za-z0-9_.-]{1,120}$/, 'a collection name').default('vonkentries');
const resourceType = z.string().regex(/^[A-Z][A-Za-z]{1,63}$/, 'a FHIR resource type, e.g. Patient');

const firelyServer = {
  baseUrl: httpBaseUrl.describe('The server\'s own base URL (not through the proxy), e.g. http://10.0.0.5:4080'),
  upstream: hostPort.describe('The server as the proxy reaches it: host:port in the upstream block'),
  database: z.strictObject({ connectionString: mongoUrl, collection }).describe('Its MongoDB database (Firely\'s MongoDbOptions)'),
};

/**
 * The resource types Firely Server's Administration API serves (firely-docs maintenance/administration_api.rst:
 * conformance and terminology resources, Subscription; security/permissions.rst: AccessPolicyDefinition).
 */
export const CONFORMANCE_TYPES = ['StructureDefinition', 'SearchParameter', 'CompartmentDefinition', 'ValueSet', 'CodeSystem', 'StructureMap',
  'ConceptMap', 'Library', 'Measure', 'Questionnaire', 'Subscription', 'AccessPolicyDefinition'] as const;

/** Resources under this canonical base are the FHIR specification's (specification.zip and errata), which every server loads itself. */
export const CORE_CANONICAL_BASE = 'http://hl7.org/fhir/';

/**
 * The administration database (vonkadmin) and its conformance resources. Firely's zero-downtime
 * migration covers the data database only: the new server initialises a new vonkadmin from scratch
 * and custom conformance resources are created again through its /administration endpoint
 * (firely-docs releasenotes/zero_downtime_migration.rst, "Migration of Admin Database").
 */
export const adminInput = z.strictObject({
  oldDatabase: mongoUrl.optional()
    .describe('The old server\'s Administration:MongoDbOptions:ConnectionString, when its admin repository is MongoDB'),
  newDatabase: mongoUrl.optional()
    .describe('The new server\'s Administration:MongoDbOptions:ConnectionString, when MongoDB: must name another database than the old server\'s (and than either data database)'),
  types: z.array(z.enum(CONFORMANCE_TYPES)).min(1).max(CONFORMANCE_TYPES.length).default([...CONFORMANCE_TYPES])
    .describe('The Administration API resource types compared between the servers'),
  importMissing: z.boolean().default(true)
    .describe('Create the old server\'s custom resources that the new server lacks through its /administration endpoint (PUT, same id); false: refuse, listing them'),
}).describe('The administration database (vonkadmin): a new one, and the old server\'s custom conformance resources on the new server before the cutover');
export type AdminInput = z.infer<typeof adminInput>;
export const defaultAdminInput: AdminInput = { types: [...CONFORMANCE_TYPES], importMissing: true };

/** The problem when two MongoDB connection strings name one database (same name, a host in common), else undefined. */
export function sameMongoDatabase(a: string, b: string): string | undefined {
  const pa = parseMongoConnectionString(a);
  const pb = parseMongoConnectionString(b);
  if (!pa.ok || !pb.ok) return undefined; // each is checked on its own field
  // Database names compared without case: MongoDB refuses two names that differ only in case on one server.
  if (pa.value.database.toLowerCase() !== pb.value.database.toLowerCase()) return undefined;
  const hosts = new Set(pa.value.hosts.map((h) => `${h.host}:${h.port}`));
  const common = pb.value.hosts.find((h) => hosts.has(`${h.host}:${h.port}`));
  return common ? `database ${pa.value.database} on ${common.host}:${common.port}` : undefined;
}

export const migrateFirelyServerInput = z.strictObject({
  ...runbookInputFields,
  oldServer: z.strictObject({
    ...firelyServer,
    stop: z.strictObject({
      host: sshHost,
      command: z.array(z.string().min(1).max(500).regex(/^[^\0\n]*$/, 'one line')).min(1).max(20)
        .describe('The command that stops it, one argument per item (each is quoted), e.g. ["sudo", "-n", "systemctl", "stop", "firely-server"]'),
    }).describe('How the decommission stops the old server'),
  }),
  newServer: z.strictObject({
    ...firelyServer,
    expectedVersion: z.string().regex(/^\d+(\.\d+){0,2}$/, 'a version or its prefix, e.g. 6 or 6.1.0').describe('What /metadata must name (a prefix: "6" accepts 6.1.0)'),
  }),
  migrationHost: sshHost.describe('Where the ingest tool runs (it reaches both databases)'),
  ingest: z.strictObject({
    command: z.string().regex(/^[A-Za-z0-9_./-]{1,200}$/, 'a command name or path').default('fsi')
      .describe('The ingest tool on the migration host (the dotnet tool Firely.Server.Ingest installs `fsi`)'),
    license: absolutePath.describe('The license file on the migration host'),
    journalDir: absolutePath.describe('The recovery journal directory on the migration host: empty for a fresh migration'),
    fhirVersion: z.literal('R4').default('R4'),
    mongoBatch: z.number().int().min(1).max(10_000).default(500),
    idleLinesInARow: z.number().int().min(2).max(100).default(3)
      .describe('Caught up = this many checks in a row (a second apart) found the old server\'s newest write of each type on the new one and the counts within countTolerance. (The name is kept for inputs written before: the tool\'s log is no longer read for it.)'),
    maxRestarts: z.number().int().min(0).max(20).default(3).describe('A tool that dies is restarted with its journal this many times; then the run stops'),
    minFreeMegabytes: z.number().int().min(0).default(1024).describe('Free space wanted where the journal lives'),
    catchUpWithin: duration.default('12h'),
  }).describe('Firely Server Ingest, run continuously from the old database into the new one'),
  sharding: z.strictObject({ enabled: z.boolean().default(false) }).default({ enabled: false })
    .describe('Provision the target schema first and shard its entries collection ({im:1, type:1, res_id:"hashed"}); needs the sharding token'),
  proxy: reverseProxy,
  resourceTypes: z.array(resourceType).min(1).max(200).describe('The types counted on both servers (and sampled)'),
  countTolerance: z.number().int().min(0).max(1_000_000).default(0)
    .describe('How far a type\'s counts may differ while clients write (the writes in flight); 0 for a quiet system'),
  sampleSize: z.number().int().min(0).max(1000).default(20).describe('Resources per type compared field by field'),
  oldServerIdleSeconds: z.number().int().min(1).max(3600).default(10)
    .describe('After the switch: the old server counts as drained when it saw no write for this long'),
  cutoverApproval: approvalPolicy.default(defaultApprovalPolicy),
  decommissionApproval: approvalPolicy.default(defaultApprovalPolicy),
  admin: adminInput.default(defaultAdminInput),
}).refine((i) => i.oldServer.upstream !== i.newServer.upstream, { message: 'the old and the new server are the same upstream', path: ['newServer', 'upstream'] })
  .refine((i) => i.oldServer.database.connectionString !== i.newServer.database.connectionString || i.oldServer.database.collection !== i.newServer.database.collection,
    { message: 'the old and the new server use the same database', path: ['newServer', 'database'] })
  .superRefine((i, ctx) => {
    const fresh = i.admin.newDatabase;
    if (!fresh) return;
    const others: Array<[string | undefined, string]> = [
      [i.admin.oldDatabase, 'the old server\'s administration database (admin.oldDatabase): the new server must initialise a new vonkadmin from scratch, not share or reuse the old one (Firely\'s zero-downtime migration, "Migration of Admin Database"); give it another connection string'],
      [i.oldServer.database.connectionString, 'the old server\'s data database: the administration database is a database of its own'],
      [i.newServer.database.connectionString, 'the new server\'s data database: the administration database is a database of its own'],
    ];
    for (const [other, what] of others) {
      const same = other && sameMongoDatabase(fresh, other);
      if (same) ctx.addIssue({ code: 'custom', message: `names the same database (${same}) as ${what}`, path: ['admin', 'newDatabase'] });
    }
  });
export type MigrateFirelyServerInput = z.infer<typeof migrateFirelyServerInput>;

/** One run at a time per proxy and per target database. */
export const migrationLocks = (i: MigrateFirelyServerInput) => [
  i.proxy.kind === 'nginx' ? `firely-proxy:${i.proxy.host.address}:${i.proxy.upstreamFile}` : `firely-proxy:${i.proxy.host.address}:${i.proxy.adminSocket}:${i.proxy.backend}`,
  `firely-db:${i.newServer.database.connectionString}:${i.newServer.database.collection}`,
];

/** Every secret a run sends, where, and why: checked before anything connects. */
export const migrationSecretUses = (i: MigrateFirelyServerInput) => [i.migrationHost, i.proxy.host, i.oldServer.stop.host]
  .map((h) => ({ secret: h.ssh.privateKey.secret, host: h.address, purpose: 'ssh-key' as const }));

/**
 * The ingest job of a run on the migration host, made safe for a shell and a directory name. With
 * `runId` (the run's first run id, kept by a reset or a retry of the same run): the run's own job,
 * which a later run with the same workflow id never adopts; the workflow id's first characters are
 * there only for an operator reading ~/.runbooks-jobs. Without it: the id runs started before
 * this rule used (workflow id only), which they keep.
 */
export const ingestJobId = (workflowId: string, runId?: string) => {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '_');
  return runId === undefined ? `fsi-${safe(workflowId).slice(0, 150)}` : `fsi-${safe(workflowId).slice(0, 40)}-${safe(runId).slice(0, 64)}`;
};
