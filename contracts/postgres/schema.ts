/** Inputs of the PostgreSQL runbooks (OpenELIS standby set-up and promotion). */
import { z } from 'zod';
import { absolutePath, approvalPolicy, approvalPolicyFields, approversCoverNotify, defaultApprovalPolicy, runbookInputFields, secretRef, sqlIdentifier } from '../input';
import { hostAddress, hostLabel, sshEndpoint } from '../ssh';


const pgCtlProfile = z.strictObject({
  kind: z.literal('pg_ctl'),
  dataDir: absolutePath.describe('The cluster data directory'),
  binDir: absolutePath.default('/usr/lib/postgresql/15/bin'),
  logFile: absolutePath.optional().describe('pg_ctl start -l; defaults to <dataDir>.log'),
  hbaFile: absolutePath.optional().describe('pg_hba.conf on the host; defaults to <dataDir>/pg_hba.conf (Debian: /etc/postgresql/<v>/<cluster>/pg_hba.conf)'),
  /** Commands that stop / start the application using the database (e.g. "systemctl stop openelis"). */
  appStop: z.string().max(2000).optional(),
  appStart: z.string().max(2000).optional(),
  systemd: z.strictObject({
    unit: z.string().regex(/^[A-Za-z0-9@._-]+$/, 'a systemd unit name, e.g. postgresql@15-main.service'),
    sudo: z.boolean().default(true),
  }).optional().describe('The cluster is a systemd unit: it is started through it, and a fence masks it (undone by the undo)'),
}).describe('A plain cluster driven with pg_ctl as the SSH user');

const openelisDockerProfile = z.strictObject({
  kind: z.literal('openelis-docker'),
  appDir: absolutePath.default('/var/lib/openelis-global'),
  dataDir: absolutePath.default('/var/lib/openelis-global/data').describe('The data directory on the host'),
  containerDataDir: absolutePath.default('/var/lib/postgresql/data').describe('The same directory inside the database container'),
  backupsDir: absolutePath.default('/var/lib/openelis-global/backups'),
  containerBackupsDir: absolutePath.default('/backups'),
  image: z.string().regex(/^[\w./-]+:[\w.-]+$/, 'an image with a tag, e.g. postgres:14.4').optional()
    .describe('The image PostgreSQL tools (pg_basebackup, pg_rewind) run in; default: the image of openelisglobal-database itself, so they match the server'),
  sudo: z.boolean().default(true).describe('Prefix docker and file commands with sudo -n'),
  healthUrl: z.string().url().max(2000).refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL')
    .default('https://localhost:8443/api/OpenELIS-Global/health')
    .describe("The webapp's own health answer, asked on the host (curl) after the application is started: OpenELIS answers {\"status\":\"UP\"}"),
  healthWithinSeconds: z.number().int().min(1).max(3600).default(300)
    .describe('How long the webapp may take to answer healthy after a start (its compose healthcheck allows a 2 minute start period)'),
}).describe('The OpenELIS installer layout: containers openelisglobal-database, -webapp, external-fhir-api, autoheal-oe, -proxy, -frontend');

/** A file name inside a directory: no slashes, no "..". */
const relativeFile = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$/, 'a file name (letters, digits, _ . -; no slash)');

export const pgHost = z.strictObject({
  name: hostLabel.describe('A label for messages and the application_name of a standby'),
  address: hostAddress.describe('Host name or IP: SSH goes there, and so do replication connections'),
  ssh: sshEndpoint,
  postgres: z.strictObject({
    port: z.number().int().min(1).max(65535).default(5432),
    user: z.string().min(1).default('postgres'),
    database: z.string().min(1).default('postgres'),
    socketDir: absolutePath.optional().describe('Connect through this Unix socket directory (peer auth as the SSH user)'),
    password: secretRef.optional().describe('Or connect over TCP to 127.0.0.1 on the host with this password'),
  }).refine((p) => p.socketDir || p.password, { message: 'give socketDir (Unix socket, peer auth) or password (TCP on the host)' }),
  profile: z.discriminatedUnion('kind', [pgCtlProfile, openelisDockerProfile]),
});
export type PgHost = z.infer<typeof pgHost>;

/** A WAL size as PostgreSQL spells it for max_slot_wal_keep_size: a whole number of MB, GB or TB. */
export const walSize = z.string().regex(/^[1-9]\d{0,8}(MB|GB|TB)$/, 'a size such as "16GB" or "500MB" (MB, GB or TB)');
/** walSize in megabytes (the unit of max_slot_wal_keep_size in pg_settings). */
export const walSizeMb = (size: string): number => Number(size.slice(0, -2)) * { MB: 1, GB: 1024, TB: 1024 * 1024 }[size.slice(-2) as 'MB' | 'GB' | 'TB'];

export const replicationSettings = z.strictObject({
  user: sqlIdentifier.default('replicator'),
  password: secretRef,
  slot: sqlIdentifier.describe('The physical replication slot the standby streams from'),
  maxWalSenders: z.number().int().min(2).max(100).default(10),
  maxSlotWalKeepSize: walSize.default('16GB')
    .describe('max_slot_wal_keep_size on the primary: the most WAL the slot may hold back for a standby that is down or gone (the procedure kept wal_keep_size=16000 MB). Past it the slot is invalidated and the standby needs a new copy; the primary\'s disk never fills'),
  baseBackupMaxRate: z.string().regex(/^\d+[kM]?$/, 'pg_basebackup --max-rate, e.g. "50M" (bytes/s; k or M suffix)').optional()
    .describe('Throttle the base backup so it does not saturate the primary'),
});

export const setupStandbyInput = z.strictObject({
  ...runbookInputFields,
  primary: pgHost,
  standby: pgHost,
  replication: replicationSettings,
  replaceStandbyData: z.boolean().default(false)
    .describe('Allow replacing a standby data directory that holds a database (it is kept aside under a dated name)'),
  rewind: z.boolean().default(false).describe('Try pg_rewind of the standby data directory before a fresh base backup (rejoining an old primary)'),
  appDir: z.strictObject({
    path: absolutePath.default('/var/lib/openelis-global'),
    includeSecrets: z.boolean().default(true)
      .describe('Copy secrets/ too: the OpenELIS installer generates the database passwords and the encryption key per install, and the standby serves the primary\'s database'),
    exclude: z.array(z.string().regex(/^[^/\0][^\0]*$/, 'a path relative to the application directory')).default([]),
    certificates: z.strictObject({
      dir: absolutePath.default('/etc/openelis-global'),
      required: z.array(relativeFile).default(['keystore', 'truststore', 'client_facing_keystore'])
        .describe('Files the standby must have in dir (docker-compose.yml mounts them as secrets of the webapp)'),
      sameAsPrimary: z.array(relativeFile).default(['keystore', 'truststore'])
        .describe('Files that must be identical on both (the copied common.properties holds the primary\'s keystore and truststore passwords)'),
    }).default(() => ({ dir: '/etc/openelis-global', required: ['keystore', 'truststore', 'client_facing_keystore'], sameAsPrimary: ['keystore', 'truststore'] }))
      .describe('Checked, never copied (the procedure leaves /etc/openelis-global to each server): only checksums are compared'),
  }).optional().describe('Copy the application directory from primary to standby (never data/ or backups/), and check the certificates of /etc/openelis-global'),
  restartApproval: approvalPolicy.default(defaultApprovalPolicy),
  verifyWithinSeconds: z.number().int().min(1).max(3600).default(60),
}).refine((i) => i.primary.address !== i.standby.address || i.primary.postgres.port !== i.standby.postgres.port, {
  message: 'primary and standby are the same server', path: ['standby', 'address'],
});
export type SetupStandbyInput = z.infer<typeof setupStandbyInput>;

export const promoteStandbyInput = z.strictObject({
  ...runbookInputFields,
  mode: z.enum(['switchover', 'failover']).describe('switchover: the old primary is reachable (planned); failover: it is down'),
  oldPrimary: pgHost,
  standby: pgHost,
  maxLagBytes: z.number().int().min(0).default(16 * 1024 * 1024).describe('Refuse to promote a standby with more WAL than this not yet replayed'),
  tryRestartFirst: z.boolean().default(false).describe('Failover: restart the old primary first and stop if it comes back healthy'),
  catchupWithinSeconds: z.number().int().min(1).max(3600).default(120),
  fenceStopSeconds: z.number().int().min(1).max(3600).default(60)
    .describe('Fencing: how long a fast shutdown may take before an immediate one, then the postmaster is killed'),
  promotionApproval: approversCoverNotify(z.strictObject({
    ...approvalPolicyFields,
    required: z.boolean().optional().describe('Default: on for failover, off for switchover'),
  })).default(defaultApprovalPolicy),
  fencingApproval: approvalPolicy.default(defaultApprovalPolicy)
    .describe('Who may confirm that an old primary which cannot be reached (or is still up) may be left behind'),
  rejoin: z.strictObject({ replication: replicationSettings }).optional()
    .describe('Turn the old primary into a standby of the new one (pg_rewind, else a fresh base backup)'),
});
export type PromoteStandbyInput = z.infer<typeof promoteStandbyInput>;

/** Every secret a run's input would send, where, and why: checked against the worker's scopes before anything connects. */
export function secretUses(hosts: PgHost[], replication?: { password: { secret: string }; between: PgHost[] }) {
  return [
    ...hosts.flatMap((h) => [
      { secret: h.ssh.privateKey.secret, host: h.address, purpose: 'ssh-key' as const },
      ...(h.postgres.password ? [{ secret: h.postgres.password.secret, host: h.address, purpose: 'db-password' as const }] : []),
    ]),
    ...(replication ? replication.between.map((h) => ({ secret: replication.password.secret, host: h.address, purpose: 'replication-password' as const })) : []),
  ];
}

/** The lock keys of a run on these hosts: one run at a time per PostgreSQL server. */
export const serverLocks = (...hosts: PgHost[]) => hosts.map((h) => `postgres:${h.address}:${h.postgres.port}`);
