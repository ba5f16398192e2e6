/**
 * Asking a Firely Server over its REST API, as a hostile network allows: every request has a
 * deadline, every body a size limit, and an answer that is not what the FHIR specification says
 * is an error naming the server and the request, never a crash.
 */
import { Context } from '@temporalio/activity';
import { request } from 'undici';
import { activitySignal } from '../lib/heartbeat';
import { AnswerTooLarge, MiB, parseLimited, readLimited } from '../lib/http';

/** One resource, a CapabilityStatement, a count: what a single answer needs. */
const MAX_BODY = 2 * MiB;
/** A search page of up to 1,000 resources (`_count=1000`). */
const MAX_PAGE = 8 * MiB;

export interface FhirAnswer { status: number; body: Record<string, unknown> | undefined; headers: Record<string, string> }

/** One request to `base` + `path`; the body parsed when it is JSON. */
export async function fhir(base: string, path: string, opts: { method?: string; body?: unknown; timeoutMs?: number; maxBytes?: number } = {}): Promise<FhirAnswer> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  // The headers within timeoutMs, the whole answer within twice that: a body that drips never ends otherwise.
  const deadline = AbortSignal.timeout(2 * timeoutMs);
  const cancelled = activitySignal();
  const signal = cancelled ? AbortSignal.any([deadline, cancelled]) : deadline;
  const failed = (err: Error): unknown => {
    // Cancelled: the activity ends as cancelled, not as a failed request.
    if (cancelled?.aborted) return cancelled.reason;
    return new Error(`${opts.method ?? 'GET'} ${url}: ${deadline.aborted ? `no whole answer within ${2 * timeoutMs / 1000} s, the most this request waits` : err.message}`);
  };
  const res = await request(url, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { accept: 'application/fhir+json', ...(opts.body ? { 'content-type': 'application/fhir+json' } : {}) },
    body: opts.body ? JSON.stringify(opts.body) : undefined,
    headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal,
  }).catch((err: Error) => { throw failed(err); });
  const maxBytes = opts.maxBytes ?? MAX_BODY;
  const text = await readLimited(res.body, maxBytes).catch((err: Error) => { res.body.destroy(); throw failed(err); });
  let body: Record<string, unknown> | undefined;
  if (text) {
    try {
      const parsed: unknown = parseLimited(text, maxBytes);
      body = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : undefined;
    } catch (err) {
      if (err instanceof AnswerTooLarge) throw new Error(`${opts.method ?? 'GET'} ${url}: ${err.message}`);
      body = undefined;
    }
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : String(v ?? '');
  return { status: res.statusCode, body, headers };
}

/** What an OperationOutcome (or any answer) says, for an error message. */
export function outcomeText(a: FhirAnswer): string {
  const issue = Array.isArray(a.body?.issue) ? (a.body!.issue as Array<Record<string, unknown>>)[0] : undefined;
  const text = issue ? `${String(issue.code ?? '')}: ${String(issue.diagnostics ?? '')}` : '';
  return `${a.status}${text ? ` (${text.slice(0, 300)})` : ''}`;
}

/** `GET [base]/{type}?_summary=count&_total=accurate`: v6 has DefaultTotal=none, so `_total` must be asked for. */
export async function countOf(base: string, type: string): Promise<number> {
  const a = await fhir(base, `/${type}?_summary=count&_total=accurate`);
  const total = a.body?.total;
  if (a.status !== 200 || typeof total !== 'number' || !Number.isSafeInteger(total) || total < 0) {
    throw new Error(`${base} did not count ${type}: ${outcomeText(a)}${a.status === 200 ? ' (no total in the Bundle)' : ''}`);
  }
  return total;
}

export interface Entry { id: string; versionId: string; lastUpdated: string; resource: Record<string, unknown> }

/** Pages one search follows at most: the 10,000 resources the runbook reads at most, even from a server that pages by 10 (Firely Server's default count). */
export const MAX_SEARCH_PAGES = 1000;

/** Heartbeats when running in an activity (the unit tests call the client outside one too). */
function heartbeat(details: unknown): void {
  try { Context.current().heartbeat(details); } catch { /* not in an activity */ }
}

/**
 * Resources of a search Bundle (current versions), following `next` links up to `limit`. A server
 * that pages forever is stopped: at most MAX_SEARCH_PAGES pages, and a page that adds no resource
 * or links back to a page already read ends the search with an error. Each page heartbeats, and a
 * cancelled activity's signal aborts the request in flight.
 */
export async function search(base: string, type: string, query: string, limit: number): Promise<Entry[]> {
  // By id, the last version read kept (a resource written while the search pages comes again, newer).
  const found = new Map<string, Entry>();
  const versions = new Set<string>();
  let path: string | undefined = `/${type}?${query}`;
  const origin = new URL(base);
  const seen = new Set<string>();
  for (let page = 1; path && found.size < limit; page++) {
    if (page > MAX_SEARCH_PAGES) throw new Error(`${base}: the search ${type}?${query} did not end within ${MAX_SEARCH_PAGES} pages (the cap on pages followed); ${found.size} resources read. Is the server paging forever?`);
    seen.add(path);
    activitySignal()?.throwIfAborted();
    const a = await fhir(base, path, { maxBytes: MAX_PAGE });
    if (a.status !== 200 || a.body?.resourceType !== 'Bundle') throw new Error(`${base}${path}: ${outcomeText(a)}`);
    const before = versions.size;
    for (const e of Array.isArray(a.body.entry) ? a.body.entry as Array<{ resource?: Record<string, unknown> }> : []) {
      const r = e.resource;
      const meta = r?.meta as { versionId?: unknown; lastUpdated?: unknown } | undefined;
      if (!r || typeof r.id !== 'string' || !meta) continue;
      versions.add(`${r.id}/${String(meta.versionId)}`);
      found.set(r.id, { id: r.id, versionId: String(meta.versionId), lastUpdated: String(meta.lastUpdated), resource: r });
    }
    heartbeat({ search: `${type}?${query}`, page, resources: found.size });
    const next = Array.isArray(a.body.link) ? (a.body.link as Array<{ relation?: string; url?: string }>).find((l) => l.relation === 'next')?.url : undefined;
    if (!next) break;
    // A next link after a page that added nothing, or back to a page read before, would never end.
    if (versions.size === before) throw new Error(`${base}${path}: page ${page} of the search added no resource yet links to a next page: the server pages without end; stopped.`);
    // Only links to the same server are followed: a hostile answer must not send the worker elsewhere.
    const u = new URL(next, base);
    if (u.origin !== origin.origin) throw new Error(`${base} answered a next link to another server (${u.origin})`);
    path = `${u.pathname.slice(origin.pathname.replace(/\/+$/, '').length)}${u.search}`;
    if (seen.has(path)) throw new Error(`${base}${path}: page ${page} of the search links back to a page already read: the server pages in a circle; stopped.`);
  }
  return [...found.values()].slice(0, limit);
}
