/**
 * The org-unit sync's CLI commands: the listener's lag, and the per-resource sync workflows.
 *   sync-status [--json]                       the change listener's lag and the syncs by state
 *   syncs [--target T] [--state S]             the sync workflows still running (state: active, waiting_for_reference, waiting_for_approval, parked)
 *   parked [--target T]                        the parked changes (the dead letters) and why
 *   retry <id> [--by NAME] / drop <id> --reason R [--by NAME]
 */
import type { Client } from '@temporalio/client';
import { currentSyncConfig } from '../../activities/dhis2/config';
import { dropSyncSignal, retrySyncSignal, syncProgressQuery, syncWorkflowType, type SyncProgress } from '../../contracts/dhis2/messages';

/** The listener's /status, or why it cannot be read. */
export async function listenerStatus(): Promise<{ ok: true; status: Record<string, unknown>; url: string } | { ok: false; error: string; url?: string }> {
  let port: number;
  try { port = currentSyncConfig().listener.statusPort; } catch (err) { return { ok: false, error: (err as Error).message }; }
  const url = `http://127.0.0.1:${port}/status`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return { ok: false, error: `HTTP ${res.status}`, url };
    return { ok: true, status: await res.json() as Record<string, unknown>, url };
  } catch (err) {
    return { ok: false, error: `the listener does not answer (${(err as Error).message}): is it running?`, url };
  }
}

const quote = (v: string) => `'${v.replace(/['\\]/g, '')}'`;

export async function syncCounts(client: Client, target?: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const base = `WorkflowType = ${quote(syncWorkflowType)} AND ExecutionStatus = 'Running'${target ? ` AND RunbookTarget = ${quote(target)}` : ''}`;
  for (const state of ['active', 'waiting_for_reference', 'waiting_for_approval', 'parked']) {
    counts[state] = (await client.workflow.count(`${base} AND RunbookStatus = ${quote(state)}`)).count;
  }
  return counts;
}

/** Prints the listener's lag and the syncs by state; false when the listener cannot be reached. */
export async function printSyncStatus(client: Client, json: boolean): Promise<boolean> {
  const listener = await listenerStatus();
  const counts = await syncCounts(client);
  if (json) {
    console.log(JSON.stringify({ listener: listener.ok ? listener.status : { error: listener.error, url: listener.url }, syncs: counts }, null, 2));
    return listener.ok;
  }
  if (listener.ok) {
    const s = listener.status as { connected?: boolean; lagBytes?: number; lagSeconds?: number; pendingTransactions?: number; confirmedLsn?: string; lastCommitAt?: string; handedOver?: number; slot?: string };
    console.log(`listener (${listener.url}): ${s.connected ? 'streaming' : 'NOT connected'} from slot ${s.slot}`);
    console.log(`  behind: ${s.lagBytes ?? '?'} bytes, ${(s.lagSeconds ?? 0).toFixed(3)} s; ${s.pendingTransactions ?? 0} transaction(s) waiting; confirmed ${s.confirmedLsn}`);
    console.log(`  handed over: ${s.handedOver ?? 0}; last source commit: ${s.lastCommitAt ?? 'none since start'}`);
  } else {
    console.log(`listener: ${listener.error}`);
  }
  console.log(`syncs running: ${Object.entries(counts).map(([k, v]) => `${v} ${k.replace(/_/g, ' ')}`).join(', ')}`);
  return listener.ok;
}

export async function printSyncs(client: Client, opts: { target?: string; state?: string; json?: boolean }): Promise<void> {
  const filters = [`WorkflowType = ${quote(syncWorkflowType)}`, "ExecutionStatus = 'Running'"];
  if (opts.target) filters.push(`RunbookTarget = ${quote(opts.target)}`);
  if (opts.state) filters.push(`RunbookStatus = ${quote(opts.state)}`);
  const rows: Array<{ workflowId: string; state?: unknown; resource?: unknown; target?: unknown; since: string }> = [];
  for await (const wf of client.workflow.list({ query: filters.join(' AND ') })) {
    rows.push({
      workflowId: wf.workflowId, state: wf.searchAttributes?.RunbookStatus?.[0], resource: wf.searchAttributes?.RunbookResource?.[0],
      target: wf.searchAttributes?.RunbookTarget?.[0], since: wf.startTime.toISOString(),
    });
    if (rows.length >= 1000) break;
  }
  if (opts.json) { console.log(JSON.stringify(rows, null, 2)); return; }
  for (const r of rows) console.log(`${String(r.state ?? '?').padEnd(22)} ${String(r.target).padEnd(16)} ${String(r.resource).padEnd(40)} ${r.workflowId}`);
  if (!rows.length) console.log('(none)');
}

export const isSyncProgress = (p: unknown): p is SyncProgress => typeof p === 'object' && p !== null && 'passes' in p && 'changesSeen' in p;

/** The parked syncs (the dead letters), each with why it is parked. */
export async function printParked(client: Client, opts: { target?: string; json?: boolean }): Promise<number> {
  const filters = [`WorkflowType = ${quote(syncWorkflowType)}`, "ExecutionStatus = 'Running'", "RunbookStatus = 'parked'"];
  if (opts.target) filters.push(`RunbookTarget = ${quote(opts.target)}`);
  const rows: Array<{ workflowId: string; target?: string; resource?: string; since?: string; queued?: number; error?: string }> = [];
  for await (const wf of client.workflow.list({ query: filters.join(' AND ') })) {
    const p = await client.workflow.getHandle(wf.workflowId).query(syncProgressQuery).catch(() => undefined);
    rows.push({ workflowId: wf.workflowId, target: p?.target, resource: p && `${p.type}:${p.uid}`, since: p?.parked?.at, queued: p?.parked?.queued, error: p?.parked?.error });
    if (rows.length >= 500) break;
  }
  if (opts.json) { console.log(JSON.stringify(rows, null, 2)); return rows.length; }
  for (const r of rows) console.log(`${r.workflowId}\n  parked since ${r.since ?? '?'}, ${r.queued ?? 0} change(s) queued: ${r.error ?? '(no worker answered)'}`);
  if (!rows.length) console.log('(nothing parked)');
  return rows.length;
}

/** Sends retry / drop to a parked sync and waits until it records what it did with it. */
export async function decideParked(client: Client, kind: 'retry' | 'drop', workflowId: string, by: string, reason?: string): Promise<{ applied: boolean; text: string }> {
  const handle = client.workflow.getHandle(workflowId);
  const seen = new Set((await handle.query(syncProgressQuery)).recent.map((r) => JSON.stringify(r)));
  await handle.signal(kind === 'retry' ? retrySyncSignal : dropSyncSignal, { by, reason });
  for (let i = 0; i < 50; i++) {
    const p = await handle.query(syncProgressQuery);
    const answer = p.recent.find((r) => !seen.has(JSON.stringify(r)) && (r.action === (kind === 'retry' ? 'retried' : 'dropped') || r.action === `${kind} ignored`));
    if (answer) return { applied: !answer.action.endsWith('ignored'), text: `${answer.action}: ${answer.note ?? ''}` };
    await new Promise((r) => setTimeout(r, 200));
  }
  return { applied: false, text: 'sent, but the sync did not answer within 10 s (is a worker running?)' };
}
