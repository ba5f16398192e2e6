/**
 * Making a host a streaming standby: stop, keep the old data aside, base backup (detached, so a
 * dying worker does not kill it), start, copy the application directory, verify with a canary.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { PgHost } from '../../contracts/postgres/schema';
import { forgetJob, jobState, runDetached } from '../lib/remote-job';
import { resolveSecret } from '../lib/secrets';
import { cmd, shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { conninfo, onHost, profileOf, withSql, writeChecked } from './hosts';
import { dataDirState } from './inspect';

const report = (changed: boolean, actions: string[]): ChangeReport => ({ changed, actions });

/** Stops the database, and first the application that uses it (it cannot run against a standby). */
export async function stopDatabase(req: { host: PgHost; dryRun: boolean }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    if ((await s.exec(profile.dbRunning)).code !== 0) return report(false, []);
    if (req.dryRun) return report(false, [`would stop the application and the database on ${req.host.name}`]);
    if (profile.stopApp) await s.run(profile.stopApp, { what: 'stopping the application' });
    await s.run(profile.stopDb('fast'), { what: 'stopping the database' });
    return report(true, [`stopped the application and the database on ${req.host.name}`]);
  });
}

/** Compensation for a data directory moved aside by a run that then failed: put it back (what replaced it is kept too). */
export async function restoreDataDir(req: { host: PgHost; asideDir: string; stamp: string }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  const dir = profile.dataDir;
  const failed = `${dir}.failed-${req.stamp}`;
  return onHost(req.host, async (s) => {
    if ((await s.exec(profile.asAdmin(cmd('test', '-d', req.asideDir)))).code !== 0) return report(false, []);
    if ((await s.exec(profile.dbRunning)).code === 0) await s.run(profile.stopDb('fast'), { what: 'stopping the database' });
    await s.run(profile.asAdmin(`{ test ! -e ${shq(dir)} || mv ${shq(dir)} ${shq(failed)}; } && mv ${shq(req.asideDir)} ${shq(dir)}`), { what: 'restoring the data directory' });
    return report(true, [`put ${req.asideDir} back as ${dir} (the incomplete copy is kept as ${failed})`]);
  });
}

/** Starts the database; `unfence` first lifts a fence (only for a host that is now a standby). */
export async function startDatabase(req: { host: PgHost; dryRun: boolean; unfence?: boolean }): Promise<ChangeReport> {
  const profile = profileOf(req.host);
  return onHost(req.host, async (s) => {
    const actions: string[] = [];
    const fenced = (await s.exec(profile.restartDisabled)).code === 0;
    if (fenced && req.unfence) {
      if (req.dryRun) actions.push(`would lift the fence of the database on ${req.host.name} (it is a standby now)`);
      else {
        await s.run(profile.enableRestart, { what: 'lifting the fence' });
        await s.run(profile.asDbOwner(profile.forgetDataDirFence), { what: 'lifting the fence' });
        actions.push(`lifted the fence of the database on ${req.host.name}`);
      }
    }
    if ((await s.exec(profile.dbRunning)).code === 0) return report(actions.length > 0, actions);
    if (req.dryRun) return report(false, [...actions, `would start the database on ${req.host.name}`]);
    await s.run(profile.startDb, { what: 'starting the database' });
    await withSql(req.host, s, (db) => db.query('SELECT 1'));
    return report(true, [...actions, `started the database on ${req.host.name}`]);
  });
}

/** Moves a data directory that holds anything aside as <dir>.replaced-<stamp>; never deletes an earlier fallback. */
export async function setDataDirAside(req: { host: PgHost; stamp: string; dryRun: boolean }): Promise<ChangeReport & { asideDir?: string }> {
  const profile = profileOf(req.host);
  const dir = profile.dataDir;
  const aside = `${dir}.replaced-${req.stamp}`;
  return onHost(req.host, async (s) => {
    const { dataDir } = await dataDirState(s, req.host);
    if (dataDir === 'missing' || dataDir === 'empty') {
      // Already moved by an earlier attempt of this run, or nothing to keep.
      const earlier = (await s.exec(profile.asAdmin(cmd('test', '-d', aside)))).code === 0;
      return { ...report(false, []), asideDir: earlier ? aside : undefined };
    }
    if (req.dryRun) return { ...report(false, [`would move ${dir} aside to ${aside}`]), asideDir: aside };
    if ((await s.exec(profile.dbRunning)).code === 0) throw new Error(`The database on ${req.host.name} still runs; stop it before moving its data directory`);
    await s.run(profile.asAdmin(`test ! -e ${shq(aside)} && mv ${shq(dir)} ${shq(aside)} && mkdir -m 700 ${shq(dir)} && chown --reference=${shq(aside)} ${shq(dir)}`),
      { what: 'moving the data directory aside' });
    return { ...report(true, [`moved ${dir} aside to ${aside} (kept as a fallback)`]), asideDir: aside };
  });
}

export interface BaseBackupRequest {
  primary: PgHost;
  standby: PgHost;
  user: string;
  password: { secret: string };
  slot: string;
  maxRate?: string;
  dryRun: boolean;
}

/**
 * Writes the replication passfile (0600) from stdin, as the owner of the data directory (never as
 * root), through a temporary file and a rename: the password is never on a command line, and a
 * symlink planted at the path is refused, not followed.
 */
async function writePassfile(req: BaseBackupRequest, s: SshSession): Promise<void> {
  const profile = profileOf(req.standby);
  const password = resolveSecret(req.password.secret, { host: req.standby.address, purpose: 'replication-password' });
  const line = ['*', String(req.primary.postgres.port), '*', req.user, password]
    .map((f) => f.replace(/\\/g, '\\\\').replace(/:/g, '\\:')).join(':');
  await writeChecked(s, profile.writeForDb(profile.passfile, '600'), { stdin: `${line}\n`, what: 'writing the replication passfile' });
}

const jobIdOf = (what: string) => {
  const run = Context.current().info.workflowExecution;
  return `${run?.workflowId}-${run?.runId}-${what}`.replace(/[^A-Za-z0-9_.-]/g, '_');
};

/** How the standby reaches the primary: every value quoted, so a path or a name cannot break the string. */
const sourceConninfo = (req: BaseBackupRequest, dbname?: string) => conninfo({
  host: req.primary.address, port: req.primary.postgres.port, user: req.user, ...(dbname ? { dbname } : {}),
  application_name: req.standby.name, passfile: profileOf(req.standby).passfileForDb,
});

/** pg_basebackup -X stream -R from the slot, into the empty data directory. A retry re-attaches to a copy already running; cancellation kills it. */
export async function baseBackup(req: BaseBackupRequest): Promise<ChangeReport> {
  const profile = profileOf(req.standby);
  const jobId = jobIdOf('basebackup');
  const tool = profile.tool('pg_basebackup', [
    '-D', profile.dataDirForDb, '-X', 'stream', '-R', '-S', req.slot, '-c', 'fast', '-w', '-d', sourceConninfo(req),
    ...(req.maxRate ? ['--max-rate', req.maxRate] : []),
  ], {}, jobId);
  if (req.dryRun) return report(false, [`would write the replication passfile ${profile.passfile} (0600) and run: ${tool}`]);
  return onHost(req.standby, async (s) => {
    if ((await jobState(s, jobId)).state === 'none') {
      const { dataDir } = await dataDirState(s, req.standby);
      if (dataDir !== 'missing' && dataDir !== 'empty') {
        throw ApplicationFailure.nonRetryable(`The data directory ${profile.dataDir} on ${req.standby.name} is not empty; it must be moved aside before a base backup`, 'DataDirNotEmpty');
      }
      await writePassfile(req, s);
    }
    const result = await runDetached(s, jobId, tool, { onKill: profile.stopTool?.(jobId) });
    if (result.code === 0) {
      return report(true, [`base backup of ${req.primary.name} into ${profile.dataDir} through slot ${req.slot}${result.attached ? ' (re-attached to the copy already running)' : ''}`]);
    }
    // The directory was empty when this run's copy started: what is in it now is that copy's partial output.
    await s.run(profile.asAdmin(`find ${shq(profile.dataDir)} -mindepth 1 -delete`), { what: 'removing a partial base backup' });
    await forgetJob(s, jobId);
    throw ApplicationFailure.retryable(`pg_basebackup on ${req.standby.name} failed (exit ${result.code}): ${result.log.trim().slice(-1500)}`, 'BaseBackupFailed');
  });
}

/**
 * Rejoining an old primary: pg_rewind its data directory onto the new primary's timeline (it runs
 * crash recovery first if the server was killed), detached and killed on cancellation like a base
 * backup. Says why when it cannot, so the runbook falls back to a fresh base backup.
 */
export async function rewindDataDir(req: BaseBackupRequest): Promise<ChangeReport & { rewound: boolean; reason?: string }> {
  const profile = profileOf(req.standby);
  const jobId = jobIdOf('rewind');
  const tool = profile.tool('pg_rewind', ['-D', profile.dataDirForDb, `--source-server=${sourceConninfo(req, 'postgres')}`, '-R'], { LC_ALL: 'C' }, jobId);
  if (req.dryRun) return { changed: false, rewound: false, actions: [`would try: ${tool} (a fresh base backup if it fails)`] };
  return onHost(req.standby, async (s) => {
    if ((await jobState(s, jobId)).state === 'none') {
      const { dataDir } = await dataDirState(s, req.standby);
      if (dataDir !== 'cluster') return { changed: false, rewound: false, reason: `no cluster in ${profile.dataDir}`, actions: [] };
      if ((await s.exec(profile.dbRunning)).code === 0) throw new Error(`The database on ${req.standby.name} still runs; stop it before pg_rewind`);
      await writePassfile(req, s);
    }
    const r = await runDetached(s, jobId, tool, { onKill: profile.stopTool?.(jobId) });
    if (r.code !== 0) {
      await forgetJob(s, jobId);
      return { changed: false, rewound: false, reason: r.log.trim().slice(-1500), actions: [`pg_rewind failed; falling back to a fresh base backup`] };
    }
    const auto = `${profile.dataDir}/postgresql.auto.conf`;
    await s.run(profile.asDbOwner(`test ! -L ${shq(auto)} && printf '%s\\n' ${shq(`primary_slot_name = '${req.slot}'`)} >> ${shq(auto)}`), { what: 'setting the replication slot' });
    return { changed: true, rewound: true, actions: [`rewound ${profile.dataDir} onto ${req.primary.name}'s timeline with pg_rewind; it follows slot ${req.slot}`] };
  });
}
