/**
 * Making a host a streaming standby: stop, keep the old data aside, base backup (detached, so a
 * dying worker does not kill it), start, copy the application directory, verify with a canary.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../workflows/kit/runbook';
import type { PgHost } from '../../workflows/postgres/schema';
import { forgetJob, jobState, runDetached } from '../lib/remote-job';
import { resolveSecret } from '../lib/secrets';
import { cmd, shq } from '../lib/shell';
import { onHost, profileOf, withSql } from './hosts';
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
    const fenced = (await s.exec(profile.isFenced)).code === 0;
    if (fenced && req.unfence) {
      if (req.dryRun) actions.push(`would lift the fence of the database on ${req.host.name} (it is a standby now)`);
      else { await s.run(profile.unfenceDb, { what: 'lifting the fence' }); actions.push(`lifted the fence of the database on ${req.host.name}`); }
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

/** Writes the replication passfile (0600) from stdin: the password is never on a command line. */
async function writePassfile(req: BaseBackupRequest, s: Parameters<Parameters<typeof onHost>[1]>[0]): Promise<void> {
  const profile = profileOf(req.standby);
  const line = ['*', String(req.primary.postgres.port), '*', req.user, resolveSecret(req.password.secret)]
    .map((f) => f.replace(/\\/g, '\\\\').replace(/:/g, '\\:')).join(':');
  const owner = shq(profile.dataDir);
  await s.run(profile.asAdmin(`umask 077 && cat > ${shq(profile.passfile)} && chown --reference=${owner} ${shq(profile.passfile)} && chmod 600 ${shq(profile.passfile)}`),
    { stdin: `${line}\n`, what: 'writing the replication passfile' });
}

/** pg_basebackup -X stream -R from the slot, into the empty data directory. A retry re-attaches to a copy already running. */
export async function baseBackup(req: BaseBackupRequest): Promise<ChangeReport> {
  const profile = profileOf(req.standby);
  const run = Context.current().info.workflowExecution;
  const jobId = `${run?.workflowId}-${run?.runId}-basebackup`.replace(/[^A-Za-z0-9_.-]/g, '_');
  const tool = profile.tool('pg_basebackup', [
    '-D', profile.dataDirForDb, '-X', 'stream', '-R', '-S', req.slot, '-c', 'fast', '-w',
    '-h', req.primary.address, '-p', String(req.primary.postgres.port), '-U', req.user,
    '-d', `application_name=${req.standby.name} passfile=${profile.passfileForDb}`,
    ...(req.maxRate ? ['--max-rate', req.maxRate] : []),
  ]);
  if (req.dryRun) return report(false, [`would write the replication passfile ${profile.passfile} (0600) and run: ${tool}`]);
  return onHost(req.standby, async (s) => {
    if ((await jobState(s, jobId)).state === 'none') {
      const { dataDir } = await dataDirState(s, req.standby);
      if (dataDir !== 'missing' && dataDir !== 'empty') {
        throw ApplicationFailure.nonRetryable(`The data directory ${profile.dataDir} on ${req.standby.name} is not empty; it must be moved aside before a base backup`, 'DataDirNotEmpty');
      }
      await writePassfile(req, s);
    }
    const result = await runDetached(s, jobId, tool);
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
 * crash recovery first if the server was killed). Says why when it cannot, so the runbook falls
 * back to a fresh base backup.
 */
export async function rewindDataDir(req: BaseBackupRequest): Promise<ChangeReport & { rewound: boolean; reason?: string }> {
  const profile = profileOf(req.standby);
  const source = `host=${req.primary.address} port=${req.primary.postgres.port} user=${req.user} dbname=postgres ` +
    `application_name=${req.standby.name} passfile=${profile.passfileForDb}`;
  const tool = profile.tool('pg_rewind', ['-D', profile.dataDirForDb, `--source-server=${source}`, '-R'], { LC_ALL: 'C' });
  if (req.dryRun) return { changed: false, rewound: false, actions: [`would try: ${tool} (a fresh base backup if it fails)`] };
  return onHost(req.standby, async (s) => {
    const { dataDir } = await dataDirState(s, req.standby);
    if (dataDir !== 'cluster') return { changed: false, rewound: false, reason: `no cluster in ${profile.dataDir}`, actions: [] };
    if ((await s.exec(profile.dbRunning)).code === 0) throw new Error(`The database on ${req.standby.name} still runs; stop it before pg_rewind`);
    await writePassfile(req, s);
    const r = await s.exec(tool, { timeoutMs: 30 * 60_000 });
    if (r.code !== 0) return { changed: false, rewound: false, reason: (r.stderr || r.stdout).trim().slice(-1500), actions: [`pg_rewind failed; falling back to a fresh base backup`] };
    await s.run(profile.asAdmin(`printf '%s\\n' ${shq(`primary_slot_name = '${req.slot}'`)} >> ${shq(`${profile.dataDir}/postgresql.auto.conf`)}`), { what: 'setting the replication slot' });
    return { changed: true, rewound: true, actions: [`rewound ${profile.dataDir} onto ${req.primary.name}'s timeline with pg_rewind; it follows slot ${req.slot}`] };
  });
}
