/**
 * Preparing a primary for a streaming standby. Each activity looks first, acts only if needed,
 * and in a dry-run says what it would do.
 */
import path from 'node:path';
import type { ChangeReport } from '../../workflows/kit/runbook';
import type { PgHost } from '../../workflows/postgres/schema';
import { resolveSecret } from '../lib/secrets';
import { scramMatches, scramVerifier } from '../lib/scram';
import { shq } from '../lib/shell';
import { onHost, profileOf, withSql } from './hosts';

export interface RoleRequest { host: PgHost; user: string; password: { secret: string }; dryRun: boolean; rewind?: boolean }
export interface HbaRequest { host: PgHost; user: string; standbyAddress: string; dryRun: boolean; rewind?: boolean }

/** What pg_rewind needs from a non-superuser on the source server. */
const rewindFunctions = [
  'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'pg_catalog.pg_stat_file(text, boolean)',
  'pg_catalog.pg_read_binary_file(text)', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)',
];
export interface SettingsRequest { host: PgHost; maxWalSenders: number; dryRun: boolean }
export interface SlotRequest { host: PgHost; slot: string; dryRun: boolean }

const report = (changed: boolean, actions: string[]): ChangeReport => ({ changed, actions });

/** A LOGIN REPLICATION role whose SCRAM verifier matches the named secret. The password never appears in SQL. */
export async function ensureReplicationRole(req: RoleRequest): Promise<ChangeReport> {
  const password = resolveSecret(req.password.secret);
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const row = (await db.query('SELECT rolreplication, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1', [req.user])).rows[0];
    const actions: string[] = [];
    if (!(row && row.rolreplication && row.rolcanlogin && scramMatches(row.rolpassword, password))) {
      const verb = row ? 'ALTER' : 'CREATE';
      actions.push(`${verb} ROLE ${req.user} WITH LOGIN REPLICATION and its SCRAM password from secret "${req.password.secret}"`);
      if (!req.dryRun) await db.query(`${verb} ROLE ${db.escapeIdentifier(req.user)} WITH LOGIN REPLICATION PASSWORD ${db.escapeLiteral(scramVerifier(password))}`);
    }
    if (req.rewind) {
      for (const fn of rewindFunctions) {
        const has = row && (await db.query('SELECT has_function_privilege($1, $2, \'EXECUTE\') AS ok', [req.user, fn])).rows[0].ok;
        if (has) continue;
        actions.push(`GRANT EXECUTE ON FUNCTION ${fn} TO ${req.user} (for pg_rewind)`);
        if (!req.dryRun) await db.query(`GRANT EXECUTE ON FUNCTION ${fn} TO ${db.escapeIdentifier(req.user)}`);
      }
    }
    return report(actions.length > 0 && !req.dryRun, req.dryRun ? actions.map((a) => `would ${a}`) : actions);
  }));
}

/** `host replication <user> <standby>/32 scram-sha-256` in pg_hba.conf, for the standby's address only. */
export async function ensureReplicationHba(req: HbaRequest): Promise<ChangeReport> {
  const cidr = req.standbyAddress.includes(':') ? `${req.standbyAddress}/128` : `${req.standbyAddress}/32`;
  const profile = profileOf(req.host);
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const missing: string[] = [];
    for (const database of req.rewind ? ['replication', 'postgres'] : ['replication']) {
      const present = (await db.query(`SELECT 1 FROM pg_hba_file_rules WHERE type = 'host' AND database = ARRAY[$3::text]
        AND user_name = ARRAY[$1::text] AND address = $2 AND auth_method = 'scram-sha-256' AND error IS NULL`, [req.user, req.standbyAddress, database])).rowCount;
      if (!present) missing.push(`host ${database} ${req.user} ${cidr} scram-sha-256`);
    }
    if (!missing.length) return report(false, []);
    if (req.dryRun) return report(false, missing.map((l) => `would add "${l}" to pg_hba.conf and reload`));
    const hbaFile = (await db.query('SHOW hba_file')).rows[0].hba_file as string;
    // The database reports its own path; on the docker layout map it back to the host.
    const onHostPath = hbaFile.startsWith(profile.dataDirForDb) ? path.posix.join(profile.dataDir, path.posix.relative(profile.dataDirForDb, hbaFile)) : hbaFile;
    await s.run(profile.asAdmin(`cp -p ${shq(onHostPath)} ${shq(`${onHostPath}.before-runbooks`)} && printf '%s\\n' ${shq(`# added by runbooks for the standby at ${req.standbyAddress}`)} ${missing.map(shq).join(' ')} >> ${shq(onHostPath)}`), { what: 'adding the pg_hba line' });
    await db.query('SELECT pg_reload_conf()');
    const errors = (await db.query('SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL')).rows;
    if (errors.length) throw new Error(`pg_hba.conf on ${req.host.name} has errors after the change: ${JSON.stringify(errors)}; the previous file is ${onHostPath}.before-runbooks`);
    return report(true, missing.map((l) => `added "${l}" to ${onHostPath} and reloaded`));
  }));
}

/** wal_level, max_wal_senders, wal_log_hints (for pg_rewind), hot_standby. Says whether a restart is needed. */
export async function ensureReplicationSettings(req: SettingsRequest): Promise<ChangeReport & { restartNeeded: boolean }> {
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const rows = (await db.query(`SELECT name, setting, context, pending_restart FROM pg_settings
      WHERE name IN ('wal_level', 'max_wal_senders', 'wal_log_hints', 'hot_standby', 'max_replication_slots')`)).rows;
    const current = Object.fromEntries(rows.map((r) => [r.name, r.setting as string]));
    const context = Object.fromEntries(rows.map((r) => [r.name, r.context as string]));
    const wanted: Array<[string, string, boolean]> = [
      ['wal_level', 'replica', current.wal_level === 'replica' || current.wal_level === 'logical'],
      ['max_wal_senders', String(req.maxWalSenders), Number(current.max_wal_senders) >= req.maxWalSenders],
      ['max_replication_slots', String(Math.max(req.maxWalSenders, 10)), Number(current.max_replication_slots) >= 1],
      ['wal_log_hints', 'on', current.wal_log_hints === 'on'],
      ['hot_standby', 'on', current.hot_standby === 'on'],
    ];
    const changes = wanted.filter(([, , ok]) => !ok);
    // Settings of context "postmaster" take effect only at a restart (pending_restart shows it only after the reload is processed).
    const restartNeeded = rows.some((r) => r.pending_restart) || changes.some(([name]) => context[name] === 'postmaster');
    const actions = changes.map(([name, value]) => `ALTER SYSTEM SET ${name} = ${value} (was ${current[name]})`);
    if (req.dryRun) return { changed: false, actions: actions.map((a) => `would ${a}`), restartNeeded };
    for (const [name, value] of changes) await db.query(`ALTER SYSTEM SET ${db.escapeIdentifier(name)} = ${db.escapeLiteral(value)}`);
    if (changes.length) await db.query('SELECT pg_reload_conf()');
    return { changed: changes.length > 0, actions, restartNeeded };
  }));
}

export async function ensureReplicationSlot(req: SlotRequest): Promise<ChangeReport> {
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const exists = (await db.query('SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1', [req.slot])).rows[0];
    if (exists && exists.slot_type !== 'physical') throw new Error(`Slot ${req.slot} on ${req.host.name} is a ${exists.slot_type} slot; choose another name`);
    if (exists) return report(false, []);
    if (req.dryRun) return report(false, [`would create the physical replication slot ${req.slot}`]);
    await db.query('SELECT pg_create_physical_replication_slot($1)', [req.slot]);
    return report(true, [`created the physical replication slot ${req.slot}`]);
  }));
}

/** Stops and starts the database (a restart), then waits until it answers SQL. */
export async function restartDatabase(req: { host: PgHost; dryRun: boolean }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  if (req.dryRun) return report(false, [`would restart the database on ${req.host.name} (downtime)`]);
  await onHost(req.host, async (s) => {
    await s.run(profile.stopDb('fast'), { what: 'stopping the database' });
    await s.run(profile.startDb, { what: 'starting the database' });
    await withSql(req.host, s, (db) => db.query('SELECT 1'));
  });
  return report(true, [`restarted the database on ${req.host.name}`]);
}

