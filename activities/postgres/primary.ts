/**
 * Preparing a primary for a streaming standby. Each activity looks first, acts only if needed,
 * and in a dry-run says what it would do.
 */
import { isIP } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import type { Client as PgClient } from 'pg';
import type { ChangeReport } from '../../contracts/messages';
import { walSizeMb, type PgHost } from '../../contracts/postgres/schema';
import { resolveSecret } from '../lib/secrets';
import { scramMatches, scramVerifier } from '../lib/scram';
import { cmd, shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { onHost, profileOf, withSql, writeChecked } from './hosts';

export interface RoleRequest { host: PgHost; user: string; password: { secret: string }; dryRun: boolean; rewind?: boolean }
export interface HbaRequest { host: PgHost; user: string; standbyAddress: string; dryRun: boolean; rewind?: boolean }

/** What pg_rewind needs from a non-superuser on the source server. */
const rewindFunctions = [
  'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'pg_catalog.pg_stat_file(text, boolean)',
  'pg_catalog.pg_read_binary_file(text)', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)',
];
export interface SettingsRequest {
  host: PgHost;
  maxWalSenders: number;
  /** max_slot_wal_keep_size, e.g. "16GB" (absent in runs started before the cap: then left as it is). */
  maxSlotWalKeepSize?: string;
  dryRun: boolean;
}
export interface SlotRequest { host: PgHost; slot: string; dryRun: boolean }

const report = (changed: boolean, actions: string[]): ChangeReport => ({ changed, actions });

/** A LOGIN REPLICATION role whose SCRAM verifier matches the named secret. The password never appears in SQL. */
export async function ensureReplicationRole(req: RoleRequest): Promise<ChangeReport> {
  const password = resolveSecret(req.password.secret, { host: req.host.address, purpose: 'replication-password' });
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

/**
 * `host replication <user> <address>/32 scram-sha-256` in pg_hba.conf, for the standby only. A host
 * name is resolved on the primary and written as its addresses. The file is the input's (never a
 * path the database reports), written as its owner through a temporary file; it is checked with
 * pg_hba_file_rules BEFORE the reload and put back as it was if PostgreSQL finds an error.
 */
export async function ensureReplicationHba(req: HbaRequest): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    const sources = await standbySources(s, req.host, req.standbyAddress);
    return withSql(req.host, s, async (db) => {
      const reported = (await db.query('SHOW hba_file')).rows[0].hba_file as string;
      if (reported !== profile.hbaFileForDb) {
        throw ApplicationFailure.nonRetryable(`${req.host.name} reads its pg_hba.conf from ${reported}, not ${profile.hbaFileForDb} as the input says: ` +
          'set "hbaFile" in the host\'s profile. Nothing was changed.', 'HbaFileMismatch');
      }
      const missing: string[] = [];
      for (const database of req.rewind ? ['replication', 'postgres'] : ['replication']) {
        for (const address of sources.addresses) {
          if (!(await hbaLinePresent(db, req.user, database, address))) missing.push(hbaLine(database, req.user, address));
        }
      }
      const notes = sources.note ? [sources.note] : [];
      if (!missing.length) {
        // Present in the file but written after the last reload (a retry after a crash): apply it.
        const stale = (await db.query(`SELECT (pg_stat_file(current_setting('hba_file'))).modification > pg_conf_load_time() AS stale`)).rows[0].stale;
        if (!stale) return report(false, []);
        if (req.dryRun) return report(false, ['would reload the configuration to apply pg_hba.conf']);
        await db.query('SELECT pg_reload_conf()');
        return report(true, [...notes, `reloaded ${req.host.name} to apply pg_hba.conf`]);
      }
      if (req.dryRun) return report(false, [...notes, ...missing.map((l) => `would add "${l}" to ${profile.hbaFile} and reload`)]);

      const file = profile.hbaFile;
      const before = await s.run(profile.asDbOwner(`test ! -L ${shq(file)} && cat ${shq(file)}`), { what: `reading ${file}` });
      // The first backup is kept: a later run never overwrites it with a file it changed itself.
      await s.run(profile.asDbOwner(`test -e ${shq(`${file}.before-runbooks`)} || cp -p ${shq(file)} ${shq(`${file}.before-runbooks`)}`), { what: 'keeping a copy of pg_hba.conf' });
      const write = (content: string) => writeChecked(s, profile.writeForDb(file, `"$(stat -c %a ${shq(file)})"`), { stdin: content, what: `writing ${file}` });
      const added = `${before.replace(/\n?$/, '\n')}# added by runbooks for the standby at ${req.standbyAddress}\n${missing.join('\n')}\n`;
      await write(added);
      const errors = (await db.query('SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL')).rows;
      if (errors.length) {
        await write(before);
        throw ApplicationFailure.nonRetryable(`PostgreSQL on ${req.host.name} finds errors in pg_hba.conf with the new lines (${errors.map((e) => `line ${e.line_number}: ${e.error}`).join('; ')}); ` +
          `the file was put back as it was and not reloaded. Nothing was changed.`, 'HbaInvalid');
      }
      await db.query('SELECT pg_reload_conf()');
      return report(true, [...notes, ...missing.map((l) => `added "${l}" to ${file} and reloaded`)]);
    });
  });
}

/** The standby's addresses, canonical, as its connections will come from. */
async function standbySources(s: SshSession, primary: PgHost, address: string): Promise<{ addresses: string[]; note?: string }> {
  if (isIP(address)) return { addresses: [canonicalAddress(address)] };
  const r = await s.exec(cmd('getent', 'ahosts', address));
  const addresses = [...new Set(r.stdout.split('\n').map((l) => l.split(/\s+/)[0]).filter((a) => isIP(a)).map(canonicalAddress))];
  if (r.code !== 0 || !addresses.length) {
    throw ApplicationFailure.nonRetryable(`The standby's address ${address} does not resolve on the primary ${primary.name}: give its IP address, or fix name resolution there. Nothing was changed.`, 'StandbyUnresolved');
  }
  return { addresses, note: `${address} resolves to ${addresses.join(', ')} on ${primary.name}; pg_hba.conf names the address${addresses.length > 1 ? 'es' : ''}` };
}

/** An IP address as PostgreSQL prints it: IPv6 compressed and in lower case. */
export function canonicalAddress(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

export const hbaLine = (database: string, user: string, address: string): string =>
  `host ${database} ${user} ${address}/${isIP(address) === 6 ? 128 : 32} scram-sha-256`;

async function hbaLinePresent(db: PgClient, user: string, database: string, address: string): Promise<boolean> {
  const mask = isIP(address) === 6 ? 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' : '255.255.255.255';
  // Compared as inet values, so any spelling of the same address counts (casts only on rows that hold an address).
  const r = await db.query(`SELECT 1 FROM pg_hba_file_rules WHERE type = 'host' AND database = ARRAY[$3::text]
    AND user_name = ARRAY[$1::text] AND auth_method = 'scram-sha-256' AND error IS NULL
    AND CASE WHEN address ~ '^[0-9A-Fa-f.:]+$' AND netmask IS NOT NULL THEN address::inet = $2::inet AND netmask::inet = $4::inet ELSE false END`,
  [user, address, database, mask]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * wal_level, max_wal_senders, wal_log_hints (for pg_rewind), hot_standby, and the cap on what a slot
 * may hold back (max_slot_wal_keep_size: a standby down or gone must not fill the primary's disk).
 * Says whether a restart is needed.
 */
export async function ensureReplicationSettings(req: SettingsRequest): Promise<ChangeReport & { restartNeeded: boolean }> {
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const rows = (await db.query(`SELECT name, setting, context, pending_restart FROM pg_settings
      WHERE name IN ('wal_level', 'max_wal_senders', 'wal_log_hints', 'hot_standby', 'max_replication_slots', 'max_slot_wal_keep_size')`)).rows;
    const current = Object.fromEntries(rows.map((r) => [r.name, r.setting as string]));
    const context = Object.fromEntries(rows.map((r) => [r.name, r.context as string]));
    const wanted: Array<[string, string, boolean]> = [
      ['wal_level', 'replica', current.wal_level === 'replica' || current.wal_level === 'logical'],
      ['max_wal_senders', String(req.maxWalSenders), Number(current.max_wal_senders) >= req.maxWalSenders],
      ['max_replication_slots', String(Math.max(req.maxWalSenders, 10)), Number(current.max_replication_slots) >= 1],
      ['wal_log_hints', 'on', current.wal_log_hints === 'on'],
      ['hot_standby', 'on', current.hot_standby === 'on'],
      // pg_settings gives it in MB; -1 (the default) is no cap at all.
      ...(req.maxSlotWalKeepSize ? [['max_slot_wal_keep_size', req.maxSlotWalKeepSize, Number(current.max_slot_wal_keep_size) === walSizeMb(req.maxSlotWalKeepSize)] as [string, string, boolean]] : []),
    ];
    const changes = wanted.filter(([, , ok]) => !ok);
    // Settings of context "postmaster" take effect only at a restart (pending_restart shows it only after the reload is processed).
    const restartNeeded = rows.some((r) => r.pending_restart) || changes.some(([name]) => context[name] === 'postmaster');
    const shown = (name: string) => (name === 'max_slot_wal_keep_size' ? (current[name] === '-1' ? 'no cap' : `${current[name]}MB`) : current[name]);
    const actions = changes.map(([name, value]) => `ALTER SYSTEM SET ${name} = ${value} (was ${shown(name)})`);
    if (req.dryRun) return { changed: false, actions: actions.map((a) => `would ${a}`), restartNeeded };
    for (const [name, value] of changes) await db.query(`ALTER SYSTEM SET ${db.escapeIdentifier(name)} = ${db.escapeLiteral(value)}`);
    if (changes.length) await db.query('SELECT pg_reload_conf()');
    return { changed: changes.length > 0, actions, restartNeeded };
  }));
}

/**
 * The physical slot the standby streams from. A slot the primary invalidated (wal_status "lost": the
 * standby fell further behind than max_slot_wal_keep_size) is said so and made again: the standby
 * cannot stream from it, and the run gives it a fresh copy.
 */
export async function ensureReplicationSlot(req: SlotRequest): Promise<ChangeReport & { invalidated?: boolean }> {
  return onHost(req.host, (s) => withSql(req.host, s, async (db) => {
    const exists = (await db.query(`SELECT slot_type, wal_status, active, current_setting('max_slot_wal_keep_size') AS cap
      FROM pg_replication_slots WHERE slot_name = $1`, [req.slot])).rows[0];
    if (exists && exists.slot_type !== 'physical') throw new Error(`Slot ${req.slot} on ${req.host.name} is a ${exists.slot_type} slot; choose another name`);
    if (exists && exists.wal_status !== 'lost') return report(false, []);
    if (exists) {
      const why = `the replication slot ${req.slot} on ${req.host.name} was INVALIDATED: its standby fell more than max_slot_wal_keep_size (${exists.cap}) behind, ` +
        'so the primary dropped the WAL it needed; the standby needs a fresh copy';
      if (req.dryRun) return { ...report(false, [why, `would drop and create the physical replication slot ${req.slot}`]), invalidated: true };
      if (exists.active) throw new Error(`${why}, but the slot is still in use; run again once its walsender has exited`);
      await db.query('SELECT pg_drop_replication_slot($1)', [req.slot]);
      await db.query('SELECT pg_create_physical_replication_slot($1)', [req.slot]);
      return { ...report(true, [why, `dropped and created the physical replication slot ${req.slot} again`]), invalidated: true };
    }
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

