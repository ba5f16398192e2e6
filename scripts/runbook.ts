/**
 * The runbook CLI: npm run runbook -- <command>
 *
 * Exit codes a CI job can branch on:
 *   0 completed (or the command did what it said)   1 the runbook failed, was cancelled or rolled back
 *   2 bad input or usage                            3 timed out waiting
 *   4 Temporal could not be reached or the run does not exist
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { CatalogEntry } from '../contracts/catalog';
import { failureText } from '../contracts/failure';
import { describeIssues, durationSeconds, InvalidInputError, validateInput } from '../contracts/input';
import { approveSignal, progressQuery, rejectSignal, type Progress } from '../contracts/messages';
import { RunbookName, RunbookStatus } from '../contracts/search-attributes';
import { approvalSecret, approvalUrl, inboxUrl, linkExpiry, maxLinkTtlSeconds } from '../activities/lib/approval-token';
import { connectClient, taskQueue, TemporalUnreachableError } from '../workers/connection';
import { checkBuildId, deploymentName, listVersions, runVersioning, setCurrentVersion } from '../workers/deployment';
import { formatProgress } from '../contracts/progress-text';
import { renderSync } from '../contracts/dhis2/render';
import { decideParked, isSyncProgress, printParked, printSyncs, printSyncStatus } from './lib/sync-commands';

const repoRoot = path.resolve(__dirname, '..');
export const exitCodes = { ok: 0, failed: 1, usage: 2, timedOut: 3, unreachable: 4 } as const;

class CliError extends Error {
  constructor(message: string, readonly code: number) { super(message); }
}

const usage = `Usage: npm run runbook -- <command>
  list                                              the runbooks and their required input fields
  start <runbook> --input FILE [--id ID] [--by NAME] [--wait] [--timeout 30m]
  status <workflowId> [--json]                      current step, checklist, pending approvals, the build it runs on
  approve <workflowId> --gate G --by NAME [--reason TEXT] [--fingerprint F]   (F: the draft version "status" shows, for a gate that approves a draft)
  reject  <workflowId> --gate G --by NAME --reason TEXT
  link    <workflowId> --gate G --for APPROVER [--ttl 24h]   a signed approval URL for an open gate (7d at most)
  inbox-link --for APPROVER [--ttl 7d]              a signed URL of APPROVER's inbox: every gate waiting for them (7d at most)
  sync-status [--json]                              the org-unit change listener's lag; the syncs by state (exit 4: listener down)
  syncs [--target T] [--state S] [--json]           the org-unit sync workflows running (state: active, waiting_for_reference, waiting_for_approval, parked)
  parked [--target T] [--json]                      org-unit changes a target refused for good, waiting for a person
  retry <workflowId> [--by NAME]                    try a parked change again (the source's latest state)
  drop  <workflowId> --reason TEXT [--by NAME]      give a parked change up; the changes queued behind it apply
  versions [--json]                                 the worker builds (deployment RUNBOOKS_DEPLOYMENT, runbooks): state, runs each still holds
  versions --set-current BUILD                      new runs go to BUILD (its workers must be running); pinned runs stay on theirs`;

function loadCatalog(): CatalogEntry[] {
  const modulePath = process.env.RUNBOOKS_CATALOG ? path.resolve(process.env.RUNBOOKS_CATALOG) : '../contracts/catalog';
  return (require(modulePath) as { catalog: CatalogEntry[] }).catalog;
}

function findRunbook(name: string | undefined): CatalogEntry {
  const catalog = loadCatalog();
  const entry = catalog.find((e) => e.name === name);
  if (!entry) throw new CliError(`Unknown runbook "${name ?? ''}". Known: ${catalog.map((e) => e.name).join(', ') || '(none)'}`, exitCodes.usage);
  return entry;
}

function requiredFields(entry: CatalogEntry): string[] {
  return Object.entries(entry.schema.shape)
    .filter(([, field]) => !(field as { safeParse(v: unknown): { success: boolean } }).safeParse(undefined).success)
    .map(([name]) => name);
}

function list(): void {
  for (const e of loadCatalog()) console.log(`${e.name.padEnd(28)} ${e.title}  (required: ${requiredFields(e).join(', ') || 'none'}; example: ${e.example})`);
}

function readInput(file: string | undefined): unknown {
  if (!file) throw new CliError('--input FILE is required (a JSON file; see examples/)', exitCodes.usage);
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (err) { throw new CliError(`Cannot read --input ${file}: ${(err as Error).message}`, exitCodes.usage); }
  try { return JSON.parse(text); } catch (err) { throw new CliError(`--input ${file} is not valid JSON: ${(err as Error).message}`, exitCodes.usage); }
}

function durationMs(text: string, flag: string): number {
  const seconds = durationSeconds(text);
  if (Number.isNaN(seconds)) throw new CliError(`${flag} must be a duration such as 90s, 30m, 2h (got "${text}")`, exitCodes.usage);
  return seconds * 1000;
}

async function start(client: () => Promise<Client>, name: string | undefined, opts: Record<string, string | boolean | undefined>): Promise<number> {
  const entry = findRunbook(name);
  const input = readInput(opts.input as string | undefined) as Record<string, unknown>;
  if (opts.by && typeof input === 'object' && input && 'requestedBy' in entry.schema.shape && !input.requestedBy) input.requestedBy = opts.by;
  let parsed: { dryRun?: boolean; requestedBy?: string };
  try {
    parsed = validateInput(entry.name, entry.schema, input) as typeof parsed;
  } catch (err) {
    if (err instanceof InvalidInputError) throw new CliError(`${err.message}\nNothing was started.`, exitCodes.usage);
    throw err;
  }
  const workflowId = (opts.id as string) || `${entry.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const handle = await (await client()).workflow.start(entry.name, {
    taskQueue: taskQueue(),
    workflowId,
    args: [input],
    staticSummary: `${entry.title}${parsed.dryRun ? ' (dry-run)' : ''}${parsed.requestedBy ? `, requested by ${parsed.requestedBy}` : ''}`,
    typedSearchAttributes: [{ key: RunbookName, value: entry.name }],
  });
  console.log(`Started ${entry.name} as ${workflowId} (run ${handle.firstExecutionRunId})`);
  if (!opts.wait) return exitCodes.ok;
  return waitFor(await client(), workflowId, opts.timeout ? durationMs(opts.timeout as string, '--timeout') : undefined);
}

async function waitFor(client: Client, workflowId: string, timeoutMs?: number): Promise<number> {
  const handle = client.workflow.getHandle(workflowId);
  let last = '';
  const ticker = setInterval(async () => {
    const p = await handle.query(progressQuery).catch(() => undefined);
    const line = p ? summaryLine(p) : '';
    if (line && line !== last) console.log(line);
    last = line || last;
  }, 1000);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<'timeout'>((resolve) => { if (timeoutMs) timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    const outcome = await Promise.race([handle.result(), timeout]);
    if (outcome === 'timeout') {
      console.error(`Still running after ${timeoutMs} ms: ${workflowId} (see: npm run runbook -- status ${workflowId})`);
      return exitCodes.timedOut;
    }
    console.log(JSON.stringify(outcome, null, 2));
    // A run that took its safe path completes, but did not do what was asked.
    const status = (await handle.describe()).typedSearchAttributes.get(RunbookStatus);
    if (status === 'rolled_back') console.error(`Runbook ${workflowId} rolled back instead of completing.`);
    return status === 'rolled_back' ? exitCodes.failed : exitCodes.ok;
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      console.error(`Runbook ${workflowId} failed: ${failureText(err.cause ?? err)}`);
      return exitCodes.failed;
    }
    throw err;
  } finally {
    clearInterval(ticker);
    if (timer) clearTimeout(timer);
  }
}

function summaryLine(p: Progress): string {
  const gate = p.approvals.find((g) => g.state === 'open');
  const step = p.steps.find((s) => s.name === p.currentStep);
  return `[${p.status}] ${step ? `${step.title}` : ''}${gate ? ` — waiting for approval "${gate.gate}" (${gate.approvedBy.length}/${gate.quorum})` : ''}`;
}

async function status(client: Client, workflowId: string, json: boolean): Promise<number> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe();
  const progress = await handle.query(progressQuery).catch(() => undefined);
  const build = runVersioning(description.raw);
  if (json) {
    console.log(JSON.stringify({ workflowId, type: description.type, temporalStatus: description.status.name, build, progress }, null, 2));
  } else {
    console.log(`${workflowId} (${description.type}): ${description.status.name}`);
    console.log(build.buildId ? `build ${build.buildId}${build.behavior ? ` (${build.behavior})` : ''}` : 'build: none yet (no worker has run it)');
    const text = isSyncProgress(progress) ? renderSync(progress) : progress ? formatProgress(progress) : undefined;
    console.log(text ?? '(no progress: the run is not a runbook, or no worker has picked it up yet)');
  }
  return exitCodes.ok;
}

async function decide(client: () => Promise<Client>, kind: 'approve' | 'reject', workflowId: string, opts: Record<string, string | boolean | undefined>): Promise<number> {
  const gate = opts.gate as string | undefined;
  const by = opts.by as string | undefined;
  const reason = opts.reason as string | undefined;
  const missing = [!gate && '--gate', !by && '--by', kind === 'reject' && !reason && '--reason'].filter(Boolean);
  if (missing.length) throw new CliError(`${kind} needs ${missing.join(', ')}`, exitCodes.usage);
  const handle = (await client()).workflow.getHandle(workflowId);
  const fingerprint = opts.fingerprint as string | undefined;
  await handle.signal(kind === 'approve' ? approveSignal : rejectSignal, {
    gate: gate!, by: by!, reason, via: 'cli', origin: `${os.userInfo().username}@${os.hostname()}`, ...(fingerprint ? { fingerprint } : {}),
  });
  const receivedBefore = Date.now();
  for (let i = 0; i < 20; i++) {
    const p = await handle.query(progressQuery).catch(() => undefined);
    const record = p?.decisions.filter((d) => d.gate === gate && d.by === by && Date.parse(d.receivedAt) >= receivedBefore - 60_000).pop();
    if (record) {
      console.log(`${kind} of gate "${gate}" by ${by}: ${record.outcome}${record.note ? ` (${record.note})` : ''}`);
      return record.outcome === 'ignored' ? exitCodes.failed : exitCodes.ok;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`Signal sent; no worker has recorded it yet (it will be counted when the run resumes).`);
  return exitCodes.ok;
}

/** The deployment's builds and the runs each still holds; --set-current moves new runs to a build. */
async function versions(client: Client, opts: Record<string, string | boolean | undefined>): Promise<number> {
  const deployment = deploymentName();
  const next = opts['set-current'] as string | undefined;
  if (next !== undefined) {
    try { checkBuildId(next, '--set-current'); } catch (err) { throw new CliError((err as Error).message, exitCodes.usage); }
    try {
      await setCurrentVersion(client, next, { deployment, timeoutMs: 10_000, identity: `${os.userInfo().username}@${os.hostname()} (runbook CLI)` });
    } catch (err) {
      throw new CliError((err as Error).message, exitCodes.failed);
    }
    console.log(`Build ${next} is now the current version of deployment ${deployment}: new runs start on it; pinned runs finish on their own build.`);
  }
  const { current, versions: list } = await listVersions(client, deployment);
  if (opts.json) {
    console.log(JSON.stringify({ deployment, current, versions: list }, null, 2));
    return exitCodes.ok;
  }
  if (!list.length) {
    console.log(`No versions of deployment ${deployment} yet: no versioned worker has polled.`);
    return exitCodes.ok;
  }
  console.log(`Deployment ${deployment}, current build ${current ?? '(none)'}`);
  console.log(`${'BUILD'.padEnd(24)} ${'STATE'.padEnd(9)} ${'PINNED RUNS'.padStart(11)} ${'AUTO-UPGRADE'.padStart(12)}  WORKERS`);
  for (const v of list) {
    const workers = v.state === 'current' || v.state === 'ramping' ? 'needed (new runs)' : v.retirable ? 'may be stopped' : `needed until ${v.pinnedRuns} pinned run(s) end`;
    console.log(`${v.buildId.padEnd(24)} ${v.state.padEnd(9)} ${String(v.pinnedRuns).padStart(11)} ${String(v.autoUpgradeRuns).padStart(12)}  ${workers}`);
  }
  return exitCodes.ok;
}

/** The gateway's secret and the --ttl of a link to sign (7 days at most). */
function linkSigning(opts: Record<string, string | boolean | undefined>, defaultTtl: string): { secret: string; ttlSeconds: number } {
  const secret = approvalSecret();
  if (!secret) throw new CliError('No approval secret: set APPROVAL_SECRET (32+ characters) or APPROVAL_SECRET_FILE, as the gateway has', exitCodes.usage);
  const ttlSeconds = durationMs((opts.ttl as string) || defaultTtl, '--ttl') / 1000;
  if (ttlSeconds > maxLinkTtlSeconds) throw new CliError('--ttl is at most 7d: approval links live 7 days at most', exitCodes.usage);
  return { secret, ttlSeconds };
}

/** A signed link for the open gate of the run's current execution: bound to that run and that opening of the gate. */
async function link(client: () => Promise<Client>, workflowId: string, opts: Record<string, string | boolean | undefined>): Promise<number> {
  const gate = opts.gate as string | undefined;
  const approver = opts.for as string | undefined;
  if (!gate || !approver) throw new CliError('link needs --gate and --for', exitCodes.usage);
  // Every argument is checked before Temporal is contacted: a usage error is exit 2 whether or not a server runs.
  const { secret, ttlSeconds } = linkSigning(opts, '24h');
  const handle = (await client()).workflow.getHandle(workflowId);
  const { runId } = await handle.describe();
  const progress = await handle.query(progressQuery).catch(() => undefined);
  if (!progress) throw new CliError(`Cannot read the progress of ${workflowId} (no worker running?): a link needs the gate's nonce`, exitCodes.failed);
  const open = progress.approvals.find((g) => g.gate === gate && g.state === 'open');
  if (!open) {
    const waiting = progress.approvals.filter((g) => g.state === 'open').map((g) => g.gate);
    throw new CliError(`Gate "${gate}" of ${workflowId} is not open (open now: ${waiting.join(', ') || 'none'}); a link can only be made for an open gate`, exitCodes.failed);
  }
  const exp = linkExpiry(ttlSeconds, Date.parse(open.deadline) / 1000);
  console.log(approvalUrl({ workflowId, runId, gate, nonce: open.nonce, approver, exp }, secret));
  return exitCodes.ok;
}

/** A signed link to one approver's inbox (no Temporal needed: the gateway reads the runs when it is opened). */
function inboxLink(opts: Record<string, string | boolean | undefined>): number {
  const approver = opts.for as string | undefined;
  if (!approver) throw new CliError('inbox-link needs --for', exitCodes.usage);
  const { secret, ttlSeconds } = linkSigning(opts, '7d');
  console.log(inboxUrl({ approver, exp: Date.now() / 1000 + ttlSeconds }, secret));
  return exitCodes.ok;
}

export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      input: { type: 'string' }, id: { type: 'string' }, wait: { type: 'boolean' }, timeout: { type: 'string' },
      json: { type: 'boolean' }, gate: { type: 'string' }, by: { type: 'string' }, reason: { type: 'string' }, fingerprint: { type: 'string' },
      for: { type: 'string' }, ttl: { type: 'string' }, target: { type: 'string' }, state: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      'set-current': { type: 'string' },
    },
  });
  const [command, target] = positionals;
  const client = (() => { let c: Promise<Client> | undefined; return () => (c ??= connectClient()); })();
  const needId = () => { if (!target) throw new CliError(`${command} needs a workflow id\n${usage}`, exitCodes.usage); return target; };
  switch (command) {
    case 'list': list(); return exitCodes.ok;
    case 'start': return start(client, target, values);
    case 'status': { const id = needId(); return status(await client(), id, Boolean(values.json)); }
    case 'approve': case 'reject': return decide(client, command, needId(), values);
    case 'link': return link(client, needId(), values);
    case 'inbox-link': return inboxLink(values);
    case 'sync-status': return (await printSyncStatus(await client(), Boolean(values.json))) ? exitCodes.ok : exitCodes.unreachable;
    case 'parked': await printParked(await client(), { target: values.target as string | undefined, json: Boolean(values.json) }); return exitCodes.ok;
    case 'retry': case 'drop': {
      if (command === 'drop' && !values.reason) throw new CliError('drop needs --reason', exitCodes.usage);
      const by = (values.by as string | undefined) ?? `${os.userInfo().username}@${os.hostname()}`;
      const id = needId();
      const r = await decideParked(await client(), command, id, by, values.reason as string | undefined);
      console.log(r.text);
      return r.applied ? exitCodes.ok : exitCodes.failed;
    }
    case 'versions': return versions(await client(), values);
    case 'syncs': await printSyncs(await client(), { target: values.target as string | undefined, state: values.state as string | undefined, json: Boolean(values.json) }); return exitCodes.ok;
    default:
      console.log(usage);
      return values.help ? exitCodes.ok : exitCodes.usage;
  }
}

/**
 * The gateway that start.sh started: its development secret under RUNBOOKS_STATE_DIR (.temporal by
 * default, as start.ts resolves it) and its address on APPROVAL_PORT, unless APPROVAL_SECRET(_FILE)
 * and APPROVAL_BASE_URL say otherwise. Never the gateway's cookie key: the CLI only signs links.
 */
export function gatewayDefaults(env: NodeJS.ProcessEnv = process.env): void {
  const devSecret = path.join(path.resolve(repoRoot, env.RUNBOOKS_STATE_DIR || '.temporal'), 'approval-secret');
  if (!env.APPROVAL_SECRET && !env.APPROVAL_SECRET_FILE && existsSync(devSecret)) env.APPROVAL_SECRET_FILE = devSecret;
  if (!env.APPROVAL_BASE_URL && env.APPROVAL_PORT) env.APPROVAL_BASE_URL = `http://127.0.0.1:${env.APPROVAL_PORT}`;
}

if (require.main === module) {
  gatewayDefaults();
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      if (err instanceof CliError) { console.error(err.message); process.exit(err.code); }
      if (err instanceof TemporalUnreachableError) { console.error(err.message); process.exit(exitCodes.unreachable); }
      if (err instanceof WorkflowNotFoundError) { console.error(`No such run: ${err.message}`); process.exit(exitCodes.unreachable); }
      if ((err as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string })?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
        console.error(`${(err as Error).message}\n${usage}`); process.exit(exitCodes.usage);
      }
      console.error(`Error: ${failureText(err)}`);
      process.exit(exitCodes.unreachable);
    });
}

export { describeIssues };
