/**
 * Firely Server Ingest (`fsi`) on the migration host: checked before anything starts (license
 * tokens, the tool, the recovery journal, disk), run detached in Continuous mode with its journal and
 * OnlyIfNewer so a worker that dies leaves it running and the next one adopts it, followed through its
 * log, restarted with its journal when it dies, and stopped at the end (or by a rollback).
 *
 * Its console output is not documented: caught up is decided by comparing the two servers (the old
 * server's newest writes on the new one, the counts), and the log is read only to show progress.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import { CORE_CANONICAL_BASE, type MigrateFirelyServerInput } from '../../contracts/firely/schema';
import type { SshHost } from '../../contracts/ssh';
import { forgetJob, jobRestarts, jobState, killJob, readJobLog, restartJob, startJob } from '../lib/remote-job';
import { cmd, shq } from '../lib/shell';
import { onSshHost, sshTargetOf, withSsh } from '../lib/ssh-pool';
import { countBoth, countsLine, newestWrites, writesNotArrived, type TypeCount, type Write } from './servers';
import { mongoEndpointOf } from './databases';
import { fhir, search } from './fhir-client';
import { refuse } from '../../contracts/refuse';

export const FSI_TOKENS = {
  migration: 'http://fire.ly/vonk/plugins/migration',
  /** The migration token as the procedure (the seed, an early draft of Firely's page) names it; current docs name the one above. */
  migrationAsTheSeedNamesIt: 'http://fire.ly/vonk/plugins/bulk-data-import/migration',
  unlimited: 'http://fire.ly/vonk/plugins/bulk-data-import/unlimited',
  sharding: 'http://fire.ly/vonk/plugins/repository/mongo-db/sharding',
} as const;



type Ingest = MigrateFirelyServerInput['ingest'];
export interface IngestRequest {
  host: SshHost;
  ingest: Ingest;
  source: MigrateFirelyServerInput['oldServer']['database'];
  target: MigrateFirelyServerInput['newServer']['database'];
  /** The run's job on the migration host (one per run: a second start adopts it). */
  jobId: string;
  /** The old server: its custom SearchParameters are given to the tool (--extraParameters). Runs started before this was passed have none. */
  oldUrl?: string;
}

/** The tool's command line: the migration, continuous, with the journal and OnlyIfNewer (late writes never overwrite newer ones). */
export function ingestCommand(r: IngestRequest): string {
  [r.source, r.target].forEach(mongoEndpointOf);
  return cmd(r.ingest.command, '-f', r.ingest.fhirVersion, '--license', r.ingest.license,
    '--sourceType', 'MongoDb', '--srcMongoConnectionString', r.source.connectionString, '--srcMongoCollection', r.source.collection,
    '--srcMongoRunningMode', 'Continuous', '--useRecoveryJournal', r.ingest.journalDir, '--update-existing-resources', 'OnlyIfNewer',
    '--dbType', 'MongoDb', '--provisionTargetDatabase', 'true', '--mongoConnectionstring', r.target.connectionString,
    '--mongoCollection', r.target.collection, '--mongoBatch', r.ingest.mongoBatch);
}

/**
 * The migration host can run this migration: the tool is there, the license has the tokens (the
 * migration, the journal's unlimited one, sharding when asked) and has not expired, the journal
 * directory is empty (or this run's), and there is room for it.
 */
export async function preflightMigrationHost(r: IngestRequest & { sharding: boolean }): Promise<{ resuming: boolean; freeMegabytes: number; licensee: string }> {
  return onSshHost(r.host, async (s) => {
    const tool = await s.exec(`command -v ${shq(r.ingest.command)}`);
    if (tool.code !== 0) throw refuse(`The ingest tool \`${r.ingest.command}\` is not on ${r.host.name}'s PATH (install it: dotnet tool install --global Firely.Server.Ingest).`);
    const text = await s.exec(`head -c 1048576 -- ${shq(r.ingest.license)}`);
    if (text.code !== 0) throw refuse(`The license file ${r.ingest.license} cannot be read on ${r.host.name}: ${text.stderr.trim()}.`);
    // Firely does not document the license file's layout: the tokens are looked for as strings
    // anywhere in it (top-level Plugins or not), and an expiry only where one is found.
    let license: unknown;
    try { license = JSON.parse(text.stdout); } catch { throw refuse(`The license file ${r.ingest.license} on ${r.host.name} is not JSON.`); }
    const strings = stringsIn(license);
    const has = (token: string) => strings.has(token);
    const migration = has(FSI_TOKENS.migration) || has(FSI_TOKENS.migrationAsTheSeedNamesIt);
    const missing = [
      ...(migration ? [] : [`${FSI_TOKENS.migration} (or ${FSI_TOKENS.migrationAsTheSeedNamesIt})`]),
      ...[FSI_TOKENS.unlimited, ...(r.sharding ? [FSI_TOKENS.sharding] : [])].filter((t) => !has(t)),
    ];
    if (missing.length) throw refuse(`The license ${r.ingest.license} lacks ${missing.join(' and ')}. Ask Firely for a license with them.`);
    const expires = fieldIn(license, 'Expires');
    if (expires !== undefined && !(Date.parse(String(expires)) > Date.now())) throw refuse(`The license ${r.ingest.license} expired (${String(expires)}).`);
    const licensee = fieldIn(license, 'Licensee');

    const state = await jobState(s, r.jobId);
    const resuming = state.state !== 'none';
    const journal = await s.exec(`[ -d ${shq(r.ingest.journalDir)} ] && ls -A -- ${shq(r.ingest.journalDir)} | head -5`);
    if (!resuming && journal.stdout.trim()) {
      throw refuse(`The recovery journal directory ${r.ingest.journalDir} on ${r.host.name} is not empty (${journal.stdout.trim().split('\n').join(', ')}): ` +
        'a migration that ran before? For a fresh migration empty it and the target database, or give another directory.');
    }
    // Free space where the journal will be: the nearest directory that exists.
    const df = await s.run(`d=${shq(r.ingest.journalDir)}; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; df -Pk -- "$d" | tail -1`, { what: 'df' });
    const freeMegabytes = Math.floor(Number(df.trim().split(/\s+/)[3]) / 1024);
    if (!(freeMegabytes >= r.ingest.minFreeMegabytes)) throw refuse(`Only ${freeMegabytes} MB free for the journal ${r.ingest.journalDir} on ${r.host.name}; ${r.ingest.minFreeMegabytes} MB wanted.`);
    return { resuming, freeMegabytes, licensee: String(licensee ?? '') };
  });
}

/** Every string in a JSON value, at any depth. */
function stringsIn(v: unknown, out = new Set<string>(), depth = 0): Set<string> {
  if (depth > 20) return out;
  if (typeof v === 'string') out.add(v.trim());
  else if (Array.isArray(v)) v.forEach((x) => stringsIn(x, out, depth + 1));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => stringsIn(x, out, depth + 1));
  return out;
}

/** The first value of a key of that name (any case), at any depth. */
function fieldIn(v: unknown, key: string, depth = 0): unknown {
  if (!v || typeof v !== 'object' || depth > 20) return undefined;
  for (const [k, x] of Object.entries(v)) if (k.toLowerCase() === key.toLowerCase() && (typeof x === 'string' || typeof x === 'number')) return x;
  for (const x of Object.values(v)) { const found = fieldIn(x, key, depth + 1); if (found !== undefined) return found; }
  return undefined;
}

/** Provisions the target's schema without ingesting (`--sourceType None`): the step before sharding its collection. */
export async function provisionTarget(r: IngestRequest & { dryRun: boolean }): Promise<ChangeReport> {
  mongoEndpointOf(r.target);
  const line = cmd(r.ingest.command, '-f', r.ingest.fhirVersion, '--license', r.ingest.license, '--sourceType', 'None', '--dbType', 'MongoDb',
    '--provisionTargetDatabase', 'true', '--mongoConnectionstring', r.target.connectionString, '--mongoCollection', r.target.collection);
  if (r.dryRun) return { changed: false, actions: [`would provision the target schema: ${line}`] };
  const out = await onSshHost(r.host, (s) => s.exec(line, { timeoutMs: 600_000 }));
  if (out.code !== 0) throw ApplicationFailure.nonRetryable(`Provisioning the target failed on ${r.host.name} (exit ${out.code}):\n${lastLines(out.stdout + out.stderr)}`, 'ProvisionFailed');
  return { changed: true, actions: [`provisioned the target schema (${r.target.collection})`] };
}

/** Where the custom SearchParameters are written for the tool: beside the journal directory (which must hold only the tool's files). */
export const extraParametersFile = (journalDir: string) => `${journalDir.replace(/\/+$/, '')}.extra-search-parameters.ndjson`;

/**
 * The old server's custom SearchParameters (its Administration API, outside the specification's
 * canonical base), as the .ndjson the tool's --extraParameters reads: the tool indexes only the
 * specification's search parameters otherwise (firely-docs connecting_data_sources/firely-server-ingest.rst,
 * "Custom Search Parameters"). None when the old server's Administration API has no SearchParameter type.
 */
async function customSearchParameters(oldUrl: string): Promise<Array<Record<string, unknown>>> {
  const probe = await fhir(oldUrl, '/administration/SearchParameter?_count=1&_elements=url');
  if (probe.status === 404) return [];
  const found = await search(`${oldUrl}/administration`, 'SearchParameter', '_count=100', 10_000);
  return found.map((e) => e.resource).filter((sp) => typeof sp.url === 'string' && !sp.url.startsWith(CORE_CANONICAL_BASE))
    .map(({ meta: _meta, ...sp }) => sp);
}

/** Starts the tool detached, or adopts the one this run started before (a retry or a new worker never starts a second one). */
export async function startIngest(r: IngestRequest & { dryRun: boolean }): Promise<ChangeReport & { adopted: boolean; extraParameters?: string[] }> {
  const extra = r.oldUrl ? await customSearchParameters(r.oldUrl).catch((err: Error) => {
    throw new Error(`Listing the old server's custom SearchParameters for the ingest tool (--extraParameters): ${err.message}`);
  }) : [];
  const file = extraParametersFile(r.ingest.journalDir);
  const line = extra.length ? `${ingestCommand(r)} ${cmd('--extraParameters', file)}` : ingestCommand(r);
  const extraParameters = extra.map((sp) => String(sp.url));
  const given = extra.length ? `; custom SearchParameters indexed at load time (--extraParameters ${file}): ${extraParameters.join(', ')}` : '';
  if (r.dryRun) return { changed: false, adopted: false, extraParameters, actions: [`would start on ${r.host.name}: ${line}${given}`] };
  return onSshHost(r.host, async (s) => {
    await s.run(`umask 077; mkdir -p -- ${shq(r.ingest.journalDir)}`, { what: 'creating the journal directory' });
    const before = await jobState(s, r.jobId);
    // Written only for a tool about to start: an adopted one read its own already.
    if (before.state === 'none' && extra.length) {
      await s.run(`umask 077; cat > ${shq(`${file}.tmp`)} && mv -f -- ${shq(`${file}.tmp`)} ${shq(file)}`, { stdin: extra.map((sp) => JSON.stringify(sp)).join('\n') + '\n', what: 'writing the extra search parameters' });
    }
    const { attached, state } = await startJob(s, r.jobId, line);
    // Adopted: running (or ended: waitForIngest restarts it with its journal); what it was given is in its own command line and file.
    if (attached || state.state !== 'running') {
      const had = await s.exec(`grep -q -e --extraParameters "$HOME"/.runbooks-jobs/${shq(r.jobId)}/command && cat -- ${shq(file)}`);
      const urls = had.code === 0 ? had.stdout.split('\n').flatMap((l) => { try { return [String((JSON.parse(l) as { url?: unknown }).url)]; } catch { return []; } }) : [];
      return { changed: false, adopted: true, extraParameters: urls, actions: [] };
    }
    return { changed: true, adopted: false, extraParameters, actions: [`started the ingest tool on ${r.host.name} (job ${r.jobId}): ${line}${given}`] };
  });
}

export interface IngestStatus {
  batches: number;
  /** Items processed in total, as the tool last said. */
  processed: number;
  errors: number;
  restarts: number;
  /** Checks in a row that found the target caught up (the databases compared; the log reader's own count until then). */
  atEndInARow: number;
  lastBatch: string;
  counts: TypeCount[];
}

const IDLE = /\bINF\] No new items found in the database\./;
const BATCH = /\] Batch (\d+): .*?(\d+) items processed in total\./;
const READ = /\] Batch \d+: (\d+) items read\b/;
const ERR = /^\[[0-9:]+ (ERR|FTL)\] /;

/**
 * Progress for the UI only; no decision reads it (the lines are the simulator's guess at FSI's output).
 * What the tool's log says, line by line: batches, items, errors, and the run of polls that
 * reached the end of the changes. A poll reached the end when the tool says "No new items found",
 * and also when its batch read fewer items than the batch size: it asked for a full batch and got
 * all there was. Under a steady write load the tool may never print an idle line (each poll finds
 * the writes made while it saved the previous batch) yet keep up within a second; a full batch
 * means a backlog, and the run starts afresh. A batch line that does not say how many items it read
 * counts by the growth of the total. Lines read before `restart()` (or before following began)
 * never count.
 */
export class IngestLogReader {
  readonly status: IngestStatus = { batches: 0, processed: 0, errors: 0, restarts: 0, atEndInARow: 0, lastBatch: '', counts: [] };
  /** Idle lines since following began (the drain's "cycles"). */
  idleSinceStart = 0;

  constructor(private readonly batchSize: number) {}

  /** Progress only (batches, items) from the log before following began. */
  history(lines: string[]): void {
    for (const line of lines) { const m = BATCH.exec(line); if (m) Object.assign(this.status, { batches: Number(m[1]), processed: Number(m[2]), lastBatch: line }); }
  }

  /** Returns whether a poll reached the end in these lines. */
  feed(lines: string[]): boolean {
    let atEnd = false;
    for (const line of lines) {
      const batch = BATCH.exec(line);
      let polled: boolean | undefined;
      if (batch) {
        const read = READ.exec(line);
        const items = read ? Number(read[1]) : Math.max(0, Number(batch[2]) - this.status.processed);
        Object.assign(this.status, { batches: Number(batch[1]), processed: Number(batch[2]), lastBatch: line });
        polled = items < this.batchSize;
      } else if (IDLE.test(line)) {
        this.idleSinceStart += 1;
        polled = true;
      }
      if (polled !== undefined) {
        // The first poll seen counts only if it is at the end; a full batch breaks the run.
        this.status.atEndInARow = polled ? this.status.atEndInARow + 1 : 0;
        atEnd ||= polled;
      }
      if (ERR.test(line)) this.status.errors += 1;
    }
    return atEnd;
  }

  /** The tool was started again: its run of polls starts afresh. */
  restart(): void { this.status.atEndInARow = 0; }
}

const lastLines = (log: string, n = 15) => log.trim().split('\n').slice(-n).join('\n');

export interface WaitForIngestRequest extends IngestRequest {
  /**
   * caughtUp: the servers agree, `ingest.idleLinesInARow` checks in a row (the old server's newest
   * write of each type at the previous check is on the new one, and the counts are within the tolerance).
   * cycles: what runs started before asked ("N more idle lines"): now the tool kept running for N of
   * its documented 5 s polls, the log unread.
   */
  until: { caughtUp: CaughtUpCheck } | { cycles: number };
  withinSeconds: number;
  dryRun: boolean;
}

export interface CaughtUpCheck {
  oldUrl: string; newUrl: string; types: string[]; tolerance: number;
  /** After the proxy switch clients write to the new server, so the counts part ways: only the old server's newest writes are checked. */
  afterSwitch?: boolean;
}

/** FSI's poll interval, as the procedure prints it ("Waiting for 00:00:05 before retrying"). */
const FSI_POLL_MS = 5_000;
/** The databases are compared at most this often. */
const COMPARE_EVERY_MS = 1_000;

/**
 * Whether the target has caught up, decided from the servers alone: the old server's newest write
 * of each type as the previous check saw it (a second ago) is on the new one now, in that version or
 * a newer one (so the tool is less than a check behind, even under a steady write load), and the
 * counts agree within the tolerance. The tool's log format is not documented (Firely Server's own
 * default minimum level is Error), so no decision reads it.
 */
async function compareServers(c: CaughtUpCheck, previous: Write[] | undefined): Promise<{ agree: boolean; behind: string[]; counts: TypeCount[]; newest: Write[] }> {
  const behind = previous ? await writesNotArrived(c.newUrl, previous) : ['(first check: the newest writes are noted)'];
  const newest = await newestWrites(c.oldUrl, c.types);
  const counts = await countBoth(c);
  const countsAgree = c.afterSwitch || counts.every((x) => Math.abs(x.old - x.new) <= c.tolerance);
  return { agree: !!previous && !behind.length && countsAgree, behind: previous ? behind : [], counts, newest };
}

/**
 * Follows the tool until the databases agree, heartbeating its progress (batches, items and errors
 * as far as its log tells them, which the UI shows on the pending activity, and the checks in a
 * row that found the target caught up). A tool that died is restarted with its journal, at most
 * `maxRestarts` times over the run; then the run stops with the log's last lines.
 */
export async function waitForIngest(r: WaitForIngestRequest): Promise<IngestStatus> {
  const reader = new IngestLogReader(r.ingest.mongoBatch);
  const status = reader.status;
  if (r.dryRun) return status;
  const context = Context.current();
  const began = Date.now();
  const deadline = began + r.withinSeconds * 1000;
  // Its own heartbeats carry the progress (whileHeartbeating's would blank it).
  return withSsh(sshTargetOf(r.host), async (s) => {
    const { size } = await readJobLog(s, r.jobId, 0, 0);
    const tail = await readJobLog(s, r.jobId, Math.max(0, size - 65_536), 65_536);
    let offset = tail.next;
    reader.history(tail.text.split('\n'));
    let agreedInARow = 0;
    let compared = 0;
    let behind: string[] = [];
    let previous: Write[] | undefined;
    let carry = '';
    for (;;) {
      const state = await jobState(s, r.jobId);
      status.restarts = await jobRestarts(s, r.jobId);
      if (state.state === 'none') throw ApplicationFailure.nonRetryable(`The ingest job ${r.jobId} is not on ${r.host.name}: was its directory removed?`, 'IngestGone');
      if (state.state === 'exited' || state.state === 'lost' || state.state === 'stopping') {
        if (state.state === 'stopping') throw ApplicationFailure.nonRetryable(`The ingest job ${r.jobId} is being stopped.`, 'IngestStopped');
        const why = state.state === 'exited' ? `exit code ${state.code}` : 'its process is gone';
        if (status.restarts >= r.ingest.maxRestarts) {
          throw ApplicationFailure.nonRetryable(`The ingest tool on ${r.host.name} died (${why}) after ${status.restarts} restarts. Its last lines:\n${lastLines(state.log)}`, 'IngestDied');
        }
        status.restarts = await restartJob(s, r.jobId);
        context.log.warn(`The ingest tool on ${r.host.name} died (${why}); restarted with its journal (restart ${status.restarts}/${r.ingest.maxRestarts})`);
        offset = 0; carry = ''; agreedInARow = 0;
        reader.restart();
      }
      // The log is read for progress only.
      const chunk = await readJobLog(s, r.jobId, offset);
      offset = chunk.next;
      const lines = (carry + chunk.text).split('\n');
      carry = lines.pop() ?? '';
      reader.feed(lines);
      if ('cycles' in r.until) {
        if (Date.now() - began >= r.until.cycles * FSI_POLL_MS) return status;
      } else if (Date.now() - compared >= COMPARE_EVERY_MS) {
        compared = Date.now();
        const c = await compareServers(r.until.caughtUp, previous);
        ({ behind, newest: previous } = c);
        status.counts = c.counts;
        agreedInARow = c.agree ? agreedInARow + 1 : 0;
        status.atEndInARow = agreedInARow;
        if (agreedInARow >= r.ingest.idleLinesInARow) return status;
      }
      if (Date.now() > deadline) {
        throw ApplicationFailure.nonRetryable(`The ingest has not caught up within ${r.withinSeconds} s: ` +
          `${behind.length ? `the new server lacks the old one's newest writes (${behind.slice(0, 5).join('; ')})` : 'the newest writes arrived'}` +
          `${status.counts.length ? `, counts old -> new ${countsLine(status.counts)}` : ''}; ${status.processed} items processed as the tool's log says. ` +
          `Last batch: ${status.lastBatch || 'none'}`, 'IngestNotCaughtUp');
      }
      context.heartbeat({ batches: status.batches, processed: status.processed, errors: status.errors, restarts: status.restarts, caughtUpChecksInARow: agreedInARow,
        ...(status.counts.length ? { counts: countsLine(status.counts) } : {}), ...(behind.length ? { behind: behind.slice(0, 3) } : {}) });
      await context.sleep(500);
    }
  });
}

/**
 * Stops the tool (SIGTERM: it finishes its batch and saves its journal), waits until it is gone, and
 * forgets its job: the run is over (rolled back or decommissioned), and no later run may adopt it.
 */
export async function stopIngest(r: { host: SshHost; jobId: string; dryRun: boolean }): Promise<ChangeReport> {
  if (r.dryRun) return { changed: false, actions: [`would stop the ingest tool on ${r.host.name}`] };
  return onSshHost(r.host, async (s) => {
    const state = await jobState(s, r.jobId);
    if (state.state === 'none') return { changed: false, actions: [] };
    const running = state.state === 'running' || state.state === 'stopping';
    if (running) await killJob(s, r.jobId);
    await forgetJob(s, r.jobId);
    return { changed: true, actions: [`${running ? 'stopped the ingest tool' : 'removed the ended ingest job'} on ${r.host.name} (job ${r.jobId})`] };
  });
}
