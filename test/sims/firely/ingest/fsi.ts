/**
 * The Firely Server Ingest (fsi) simulator: `bin/fsi [options]` (see options.ts and the README).
 * It copies the entries of an old Firely Server's MongoDB database into a new one, in the order
 * they were written, batch by batch; in Continuous mode it then polls for new ones.
 *
 * Exit codes (the real tool documents none; these are the simulator's): 0 when done (AdHoc caught
 * up, provisioning only, stopped by SIGTERM/SIGINT after the current batch, the Essentials cap
 * reached); 1 for any refusal or failure, with one FTL line saying why. The crash knob ends it by SIGKILL.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { MongoClient, type Collection, type Document } from 'mongodb';
import { UsageError } from '../args';
import { entries, provision, readSystemDoc, SeqClock, type Entry } from '../entries';
import { consumeIngestFault, loadIngestFaults } from '../faults';
import { log, maskPassword, setMinimumLevel, timeSpan } from '../log';
import { applyEntry, type Outcome } from './apply';
import { identify, JournalError, openJournal, saveJournal, type Journal } from './journal';
import { checkLicense, LicenseError, readLicense } from './license';
import { parseIngestOptions, POLICY_NAMES, USAGE, type IngestOptions } from './options';

const VERSION = '6.0.0-sim';
const TARGET_SCHEMA = 26;   // Firely Server 6 (the simulator's numbering: 20 + major)
const OLDEST_SOURCE_SCHEMA = 25;   // Firely Server 5.0.0
const POLL_MS = Number(process.env.FSI_SIM_POLL_INTERVAL_MS ?? 5000);

class Fatal extends Error {}

let stopping = false;
let wake: (() => void) | undefined;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => { stopping = true; wake?.(); });
}

const pause = (ms: number) => new Promise<void>((resolve) => {
  const timer = setTimeout(resolve, ms);
  wake = () => { clearTimeout(timer); resolve(); };
});

async function connect(url: string, what: string): Promise<MongoClient> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.db().command({ ping: 1 });
    return client;
  } catch (e) {
    await client.close().catch(() => undefined);
    throw new Fatal(`Cannot connect to the ${what} database at ${maskPassword(url)}: ${(e as Error).message}`);
  }
}

async function prepareTarget(col: Collection<Document>, opts: IngestOptions): Promise<void> {
  if (opts.provisionTarget) {
    const schema = await provision(col, TARGET_SCHEMA, `Firely Server Ingest ${VERSION}`);
    if (schema !== TARGET_SCHEMA) throw new Fatal(`The target database has schema version ${schema}; this tool writes schema ${TARGET_SCHEMA} (Firely Server 6)`);
    log('INF', `Target database provisioned (schema version ${TARGET_SCHEMA}, collection ${col.collectionName})`);
    return;
  }
  const sys = await readSystemDoc(col);
  if (!sys) throw new Fatal('The target database is not provisioned: run Firely Server 6 on it once, or pass --provisionTargetDatabase true');
  if (sys.schemaVersion !== TARGET_SCHEMA) throw new Fatal(`The target database has schema version ${sys.schemaVersion}; this tool writes schema ${TARGET_SCHEMA} (Firely Server 6)`);
}

type Tally = Record<Outcome, number>;
const emptyTally = (): Tally => ({ current: 0, historical: 0, skipped: 0, unchanged: 0, error: 0 });
const summarize = (t: Tally) => `${t.current} saved as current, ${t.historical} saved as historical, ${t.skipped} skipped, ${t.unchanged} already present, ${t.error} errors`;

/** Copies the source from the journal's position on; returns when caught up (AdHoc), stopped, or capped. */
async function migrate(source: Collection<Document>, target: Collection<Document>, opts: IngestOptions, journal: Journal, cap: number | null): Promise<Tally> {
  const total = emptyTally();
  const faultsFile = process.env.FSI_SIM_FAULTS;
  const crashAfter = loadIngestFaults(faultsFile).crashAfterItems;
  const runLimit = Math.min(opts.limit < 0 ? Infinity : opts.limit, cap ?? Infinity);
  const clock = new SeqClock();
  let written = 0;
  let done = 0;
  while (!stopping) {
    const want = Math.min(opts.target.batch, runLimit - done);
    if (want <= 0) {
      log('WRN', cap !== null && done >= cap ? `The license allows ${cap} resources per run (Firely Essentials): stopping. Run again to continue.` : `Limit of ${opts.limit} resources reached: stopping.`);
      break;
    }
    const batch = (await source.find({ seq: { $gt: journal.lastSeq } }).sort({ seq: 1 }).limit(want).toArray()) as unknown as Entry[];
    if (!batch.length) {
      if (!opts.source!.continuous) break;
      log('INF', `No new items found in the database. Waiting for ${timeSpan(POLL_MS)} before retrying...`);
      await pause(POLL_MS);
      continue;
    }
    const tally = emptyTally();
    for (const e of batch) {
      const { outcome, message } = await applyEntry(target, clock, e, opts.updateExisting);
      tally[outcome]++;
      if (outcome === 'error') {
        log('ERR', message!);
        if (opts.haltOnError) throw new Fatal(`Stopping on the first error (--haltOnError true): ${message}`);
      }
      if (outcome === 'current' || outcome === 'historical') written++;
      if (crashAfter !== undefined && written >= crashAfter) {
        consumeIngestFault(faultsFile!, 'crashAfterItems');
        process.kill(process.pid, 'SIGKILL');   // mid-batch: the journal still points before this batch
        await new Promise(() => undefined);     // never resumes
      }
    }
    journal.lastSeq = batch[batch.length - 1].seq;
    journal.processed += batch.length;
    journal.batches++;
    done += batch.length;
    if (opts.journalDir) saveJournal(opts.journalDir, journal);
    for (const k of Object.keys(tally) as Outcome[]) total[k] += tally[k];
    log(tally.error ? 'WRN' : 'INF', `Batch ${journal.batches}: ${batch.length} items read, ${summarize(tally)}. ${journal.processed} items processed in total.`);
  }
  return total;
}

/**
 * --extraParameters (firely-server-ingest.rst, "Custom Search Parameters"): an .ndjson file, one
 * SearchParameter a line. Those derived from the specification's (derivedFrom http://hl7.org/fhir...)
 * are ignored, as the documentation says. The simulator indexes nothing (its search has no custom
 * parameters): it checks the file and says what it would index.
 */
function readExtraParameters(file: string): void {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) { throw new Fatal(`Cannot read the extra search parameters file '${file}': ${(e as Error).message}`); }
  const used: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let sp: Record<string, unknown>;
    try { sp = JSON.parse(line) as Record<string, unknown>; } catch { throw new Fatal(`${file} line ${i + 1} is not JSON`); }
    if (sp.resourceType !== 'SearchParameter' || typeof sp.url !== 'string' || typeof sp.code !== 'string' || !Array.isArray(sp.base) || typeof sp.expression !== 'string') {
      throw new Fatal(`${file} line ${i + 1} is not a SearchParameter with url, code, base and expression`);
    }
    if (typeof sp.derivedFrom === 'string' && sp.derivedFrom.startsWith('http://hl7.org/fhir')) log('WRN', `Ignoring extra search parameter ${sp.url}: derived from a core search parameter`);
    else used.push(sp.url);
  });
  log('INF', `Indexing ${used.length} extra search parameters at load time: ${used.join(', ') || 'none'}`);
}

async function run(opts: IngestOptions): Promise<void> {
  setMinimumLevel(loadIngestFaults(process.env.FSI_SIM_FAULTS).minimumLevel ?? 'VRB');
  log('INF', `Firely Server Ingest ${VERSION} (simulator)`);
  let cap: number | null;
  try {
    const lic = readLicense(opts.license);
    ({ perRunLimit: cap } = checkLicense(lic, opts));
    log('INF', `License of ${lic.Licensee}, valid until ${lic.Expires}`);
  } catch (e) {
    if (e instanceof LicenseError) throw new Fatal(e.message);
    throw e;
  }
  if (opts.extraParameters) readExtraParameters(opts.extraParameters);
  const targetClient = await connect(opts.target.url, 'target');
  const clients = [targetClient];
  try {
    const target = entries(targetClient.db(), opts.target.collection);
    await prepareTarget(target, opts);
    if (opts.sourceType === 'None') return log('INF', 'Source type None: nothing to ingest.');
    if (opts.sourceType === 'Filesystem') {
      if (readdirSync(opts.sourceDir!).length) throw new Fatal(`Reading files from '${opts.sourceDir}' is not implemented by the simulator (only an empty --source, to provision)`);
      return log('INF', `No files found in '${opts.sourceDir}': nothing to ingest.`);
    }
    const src = opts.source!;
    const sourceClient = await connect(src.url, 'source');
    clients.push(sourceClient);
    const source = entries(sourceClient.db(), src.collection);
    const sys = await readSystemDoc(source);
    if (!sys) throw new Fatal(`The source collection ${src.collection} in ${maskPassword(src.url)} is not a Firely Server database (no system document)`);
    if (sys.schemaVersion < OLDEST_SOURCE_SCHEMA) throw new Fatal(`The source database has schema version ${sys.schemaVersion}: migration needs Firely Server 5.0.0 or later (schema ${OLDEST_SOURCE_SCHEMA})`);
    log('INF', `Source: MongoDb ${maskPassword(src.url)} collection ${src.collection}, running mode ${src.continuous ? 'Continuous' : 'AdHoc'}`);
    log('INF', `Target: MongoDb ${maskPassword(opts.target.url)} collection ${opts.target.collection}, update existing resources: ${POLICY_NAMES[opts.updateExisting]}, batch size ${opts.target.batch}`);

    const ids = [identify(src.url, src.collection), identify(opts.target.url, opts.target.collection)] as const;
    let journal: Journal;
    if (opts.journalDir) {
      const opened = openJournal(opts.journalDir, ...ids);
      journal = opened.journal;
      log('INF', opened.resumed
        ? `Recovery journal '${opts.journalDir}': resuming after ${journal.processed} processed items (batch ${journal.batches}, source sequence ${journal.lastSeq})`
        : `Recovery journal '${opts.journalDir}' is empty: starting a fresh migration`);
    } else {
      const now = new Date().toISOString();
      journal = { format: 'fsi-sim-journal/1', source: ids[0], target: ids[1], lastSeq: 0, processed: 0, batches: 0, startedAt: now, updatedAt: now };
    }
    const tally = await migrate(source, target, opts, journal, cap);
    if (stopping) log('INF', 'Application is shutting down...');
    log('INF', `Migration ${stopping ? 'stopped' : 'finished'}: ${journal.processed} items processed in total; this run: ${summarize(tally)}.`);
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version')) { process.stdout.write(`${VERSION}\n`); return 0; }
  if (argv.some((a) => a === '-h' || a === '--help' || a === '-?')) { process.stdout.write(USAGE); return 0; }
  let opts: IngestOptions;
  try {
    opts = parseIngestOptions(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n\n${USAGE}`);
    return 1;
  }
  try {
    await run(opts);
    return 0;
  } catch (e) {
    if (e instanceof Fatal || e instanceof JournalError) log('FTL', e.message);
    else log('FTL', `Unhandled exception: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
