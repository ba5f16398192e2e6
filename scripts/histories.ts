/**
 * Recorded histories of real runs, replayed in CI against today's workflows (test/replay.test.ts):
 * a change that would break a run waiting at a gate fails there, not when the approver clicks.
 *
 *   npm run histories -- capture [--out test/histories] [--open] [--query "<visibility query>"] [--secrets-dir DIR]...
 *
 * Connects as every process here does (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE: workers/connection.ts),
 * lists the closed runs (with --open, the running ones too: a run waiting at a gate is what must
 * survive a deploy) of every workflow type the worker runs, and writes each run's history as
 * <out>/<workflow type>/<path>.json, the path being what the run went through (gate, approved,
 * rejected, rolled-back, parked, continued-as-new...). Of the runs that took the same path the one
 * with the fewest events is kept, across captures too. The file is the JSON history that
 * `temporal workflow show --output json` writes, plus the run's workflowId (a workflow that reads its
 * own id must replay with it). A history that holds a secret is not written.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { temporal } from '@temporalio/proto';
import type * as workflows from '../workflows';
import { connectClient } from '../workers/connection';

/** Every workflow type the worker runs (workflows/index.ts): the compiler fails here when one is added or renamed. */
export const workflowTypes = Object.keys({
  setupPostgresStandby: true, promotePostgresStandby: true, orgUnitSyncSetup: true, orgUnitSnapshot: true, mirrorHssys: true,
  createMirroredNamespace: true, switchIrisMirror: true, migrateFirelyServer: true, orgUnitSync: true, orgUnitBatch: true, runbookLock: true,
} satisfies Record<keyof typeof workflows, true>);

export const historiesDir = path.resolve(__dirname, '../test/histories');

/**
 * Proto JSON, as `temporal workflow show --output json` writes it. Not the SDK's historyToJSON /
 * historyFromJSON: with @temporalio/common and @temporalio/proto each holding its own copy of
 * protobufjs (as our lockfile installs them) those throw "type must be a Type". The protojson of the
 * copy that built the History type works.
 */
const History = temporal.api.history.v1.History;
interface ProtoJson {
  toJson(type: unknown, message: unknown): { events: HistoryEvent[] };
  fromJson(type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }): temporal.api.history.v1.History;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const protojson = require(require.resolve('protobufjs/ext/protojson', { paths: [require.resolve('@temporalio/proto')] })) as ProtoJson;
const historyToJson = (history: temporal.api.history.v1.IHistory) => protojson.toJson(History, History.fromObject(history));
/** A history file's events as the History a replay worker takes. */
export const historyFromJson = (file: HistoryFile) => protojson.fromJson(History, { events: file.events }, { ignoreUnknownFields: true });

/** A history file: the JSON history plus the id of the run it came from. */
export interface HistoryFile { workflowId: string; workflowType: string; events: HistoryEvent[] }
type HistoryEvent = Record<string, unknown> & { eventType: string };
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Statuses the runs publish (RunbookStatus), in the words a file name uses; the everyday ones say nothing. */
const statusWords: Record<string, string | undefined> = {
  waiting_for_lock: 'waited-for-lock', waiting_for_approval: 'gate', compensating: 'compensated', rolled_back: 'rolled-back',
  parked: 'parked', waiting_for_reference: 'waited-for-parent', planned: 'dry-run', failed: 'failed', cancelled: 'cancelled', completed: 'completed',
};
const signalWords: Record<string, string | undefined> = { approve: 'approved', reject: 'rejected', retry: 'retried', drop: 'dropped', release: 'released' };
const closeWords: Record<string, string> = {
  EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: 'completed', EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: 'failed',
  EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: 'cancelled', EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: 'terminated',
  EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: 'timed-out', EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: 'continued-as-new',
};

const attributesOf = (e: HistoryEvent): Record<string, Json> =>
  (Object.entries(e).find(([k]) => k.endsWith('EventAttributes'))?.[1] ?? {}) as Record<string, Json>;

/** A payload's value: JSON payloads decoded, anything else as its raw text. */
function decode(payload: Json): Json {
  const p = payload as { data?: string; metadata?: { encoding?: string } } | null;
  if (!p || typeof p.data !== 'string') return null;
  const text = Buffer.from(p.data, 'base64').toString('utf8');
  if (Buffer.from(p.metadata?.encoding ?? '', 'base64').toString() !== 'json/plain') return text;
  try { return JSON.parse(text) as Json; } catch { return text; }
}

/** The innermost failure's type: what the operator was told (PreflightRefused, ApprovalRejected...). */
function failureType(failure: Json): string | undefined {
  const f = failure as { cause?: Json; applicationFailureInfo?: { type?: string } } | null;
  return (f?.cause && failureType(f.cause)) || f?.applicationFailureInfo?.type || undefined;
}
const kebab = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/**
 * The path a run took, e.g. "gate.approved.completed", "parked.retried.continued-as-new", "carried-over.waiting"
 * (a run a continue-as-new started); "waiting" when it still runs.
 */
export function pathOf(history: HistoryFile): string {
  const words: string[] = [];
  const say = (w: string | undefined) => { if (w && !words.includes(w)) words.push(w); };
  let closed = false;
  for (const e of history.events) {
    const a = attributesOf(e);
    if (e.eventType === 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED') {
      if (a.continuedExecutionRunId) say('carried-over'); // started by a continue-as-new, from what the last run carried
    } else if (e.eventType === 'EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES') {
      const fields = (a.searchAttributes as { indexedFields?: Record<string, Json> } | undefined)?.indexedFields ?? {};
      if (fields.RunbookStatus) say(statusWords[String(decode(fields.RunbookStatus))]);
    } else if (e.eventType === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED') {
      say(signalWords[String(a.signalName)]);
    } else if (e.eventType === 'EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED') {
      // A decision sent as a decideGate update (the gateway's way) is another path than the same decision as a signal.
      const input = (a.acceptedRequest as { input?: { name?: string; args?: { payloads?: Json[] } } } | undefined)?.input;
      const decision = input?.name === 'decideGate' ? (decode(input.args?.payloads?.[0] ?? null) as { decision?: string } | null)?.decision : undefined;
      say(input?.name === 'reviewGate' ? 'reviewed' : decision ? `${signalWords[decision] ?? 'decided'}-by-update` : undefined);
    } else if (closeWords[e.eventType]) {
      closed = true;
      say(closeWords[e.eventType]);
      const type = e.eventType === 'EVENT_TYPE_WORKFLOW_EXECUTION_FAILED' ? failureType(a.failure) : undefined;
      if (type) say(kebab(type));
    }
  }
  if (!closed) say('waiting');
  return words.join('.');
}

/** Keys whose value must be a secret's name ({ "secret": "..." }), never the value itself. */
const secretKeys = /^(password|passphrase|privateKey|token|apiKey|apiToken|clientSecret)$/i;

/** What in this history looks like a secret: a literal where a reference belongs, a private key, or one of `known`. */
export function findSecrets(history: HistoryFile, known: string[] = []): string[] {
  const found: string[] = [];
  const walk = (v: Json, where: string): void => {
    if (typeof v === 'string') {
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v)) found.push(`${where}: a private key`);
      for (const s of known) if (v.includes(s)) found.push(`${where}: the value of a secret`);
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${where}[${i}]`));
    } else if (v && typeof v === 'object') {
      if (typeof v.data === 'string' && v.metadata) return walk(decode(v), `${where} (payload)`);
      for (const [k, x] of Object.entries(v)) {
        if (secretKeys.test(k) && typeof x === 'string' && x) found.push(`${where}.${k}: a literal ${k}, not a secret reference`);
        walk(x, `${where}.${k}`);
      }
    }
  };
  history.events.forEach((e, i) => walk(e as Json, `event ${i + 1}`));
  return found;
}

/** The values of the secrets the worker can see (RUNBOOKS_SECRET_*, files in the secrets directories). */
function knownSecrets(dirs: string[]): string[] {
  const fromEnv = Object.entries(process.env).filter(([k]) => k.startsWith('RUNBOOKS_SECRET_') && k !== 'RUNBOOKS_SECRET_SCOPES').map(([, v]) => v ?? '');
  const fromFiles = dirs.filter((d) => existsSync(d)).flatMap((d) => readdirSync(d).map((f) => readFileSync(path.join(d, f), 'utf8')));
  // Short values (a port, "x") would match everywhere and protect nothing.
  return [...fromEnv, ...fromFiles].flatMap((v) => [v, v.trim()]).filter((v) => v.length >= 6);
}

export function readHistory(file: string): HistoryFile {
  return JSON.parse(readFileSync(file, 'utf8')) as HistoryFile;
}

/** Every history file under `dir`, as <type>/<path>.json. */
export function historyFiles(dir = historiesDir): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory())
    .flatMap((d) => readdirSync(path.join(dir, d.name)).filter((f) => f.endsWith('.json')).map((f) => path.join(d.name, f))).sort();
}

interface CaptureOptions { out: string; open: boolean; query?: string; secretsDirs: string[] }

export async function capture(opts: CaptureOptions): Promise<number> {
  const client = await connectClient();
  const types = workflowTypes.map((t) => `'${t}'`).join(', ');
  const query = [`WorkflowType IN (${types})`, opts.open ? '' : `ExecutionStatus != 'Running'`, opts.query ? `(${opts.query})` : '']
    .filter(Boolean).join(' AND ');
  const known = knownSecrets(opts.secretsDirs);
  let written = 0;
  try {
    for await (const run of client.workflow.list({ query })) {
      const handle = client.workflow.getHandle(run.workflowId, run.runId);
      const { events } = historyToJson(await handle.fetchHistory());
      const history: HistoryFile = { workflowId: run.workflowId, workflowType: run.type, events };
      const name = `${pathOf(history)}.json`;
      const secrets = findSecrets(history, known);
      if (secrets.length) {
        console.error(`NOT written: ${run.type} ${run.workflowId} (${run.runId}) holds secrets:\n  ${secrets.slice(0, 5).join('\n  ')}`);
        continue;
      }
      const file = path.join(opts.out, run.type, name);
      if (existsSync(file) && readHistory(file).events.length <= events.length) continue;
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, `${JSON.stringify(history, null, 2)}\n`);
      written++;
      console.log(`${path.relative(process.cwd(), file)}  ${events.length} events  (${run.workflowId})`);
    }
  } finally {
    await client.connection.close();
  }
  return written;
}

const usage = 'Usage: npm run histories -- capture [--out DIR] [--open] [--query "<visibility query>"] [--secrets-dir DIR]...';

async function main(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv, allowPositionals: true,
    options: { out: { type: 'string' }, open: { type: 'boolean' }, query: { type: 'string' }, 'secrets-dir': { type: 'string', multiple: true } },
  });
  if (positionals[0] !== 'capture') throw new Error(usage);
  const secretsDirs = [...(values['secrets-dir'] ?? []), ...(process.env.RUNBOOKS_SECRETS_DIR ? [process.env.RUNBOOKS_SECRETS_DIR] : [])];
  const written = await capture({ out: path.resolve(values.out ?? historiesDir), open: Boolean(values.open), query: values.query, secretsDirs });
  console.log(`${written} history file(s) written. Replay them: npx jest test/replay.test.ts`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => { console.error((err as Error).message); process.exit(1); });
}
