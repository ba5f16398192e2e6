/** Inputs of the Firely Server migration runbook (so far: the reverse proxy it switches). */
import { z } from 'zod';
import { absolutePath, approvalPolicy, defaultApprovalPolicy, duration, runbookInputFields } from '../input';
import { sshHost } from '../ssh';
import { allowedMongoOptions, httpBaseUrl, httpUrl, mongoConnectionString } from '../endpoints';

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
}).refine((i) => i.oldServer.upstream !== i.newServer.upstream, { message: 'the old and the new server are the same upstream', path: ['newServer', 'upstream'] })
  .refine((i) => i.oldServer.database.connectionString !== i.newServer.database.connectionString || i.oldServer.database.collection !== i.newServer.database.collection,
    { message: 'the old and the new server use the same database', path: ['newServer', 'database'] });
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
