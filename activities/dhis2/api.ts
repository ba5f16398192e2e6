/**
 * A small DHIS2 Web API client (undici): auth from a secret reference, bounded bodies and
 * timeouts, and errors that say which server failed and whether a retry can help.
 * A peer's answer is data: nothing it sends can throw anything but an ApplicationFailure.
 *
 * These calls run inside the workflow worker (the sync's fast path is a local activity there), so
 * no answer may take that process down: each call reads at most what its answer needs
 * (`maxBytes`, 256 KiB unless the call says more), parses it within that bound (parseLimited:
 * ~8× its size in heap at worst), within one deadline for the whole answer; and all DHIS2 answers
 * being read or parsed at once share one budget of 32 MiB. So whatever the number of targets, their
 * concurrency or what they send, DHIS2 answers hold at most ~300 MB of the worker's heap (Node's
 * default limit is 2-4 GB); a call past the budget fails as retryable and is tried again later.
 * This keeps the fast path in the worker (a process of its own would cost each pass a round trip).
 */
import { ApplicationFailure } from '@temporalio/common';
import { Agent, request } from 'undici';
import { activitySignal } from '../lib/heartbeat';
import { AnswerTooLarge, ByteBudget, KiB, MiB, parseLimited, readLimited, sizeOf } from '../lib/http';
import { resolveSecret } from '../lib/secrets';
import { endpointOf, parseHttpUrl } from '../../contracts/endpoints';
import type { ApiAuth } from './config';

export interface Dhis2Server {
  /** The name used in messages: "source" or the target's name. */
  name: string;
  baseUrl: string;
  auth: ApiAuth;
  /** Requests in flight at most. */
  concurrency?: number;
}

export interface Dhis2Response<T = unknown> { status: number; body: T; text: string }

/** What an answer may be, by what the call asks for. */
export const answerLimits = {
  /** A status or an id: /api/me, a delete, a message posted, a ticket's status; the default. */
  small: 256 * KiB,
  /** The import report of one resource, or the tickets found by their reference. */
  report: 1 * MiB,
  /** One org unit, group or group set, or a draft holding one: a polygon geometry or a group of 100,000 members is ~2 MiB. */
  resource: 4 * MiB,
  /** A page of a list: this much per resource asked for, at most `listMax`. */
  perListed: 32 * KiB,
  listMax: 16 * MiB,
  /** The import report of a page (one error report per refused resource). */
  pageReport: 4 * MiB,
};

/** The bytes of DHIS2 answers being read or parsed at once, across every call in this process. */
const answersInFlight = new ByteBudget(32 * MiB);
const agents = new Map<string, Agent>();

function agentFor(server: Dhis2Server): Agent {
  const key = `${server.baseUrl}|${server.concurrency ?? 8}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({ connections: server.concurrency ?? 8, keepAliveTimeout: 30_000, connectTimeout: 10_000 });
    agents.set(key, agent);
  }
  return agent;
}

/** Closes the kept-alive connections (worker shutdown, tests). */
export async function closeDhis2Agents(): Promise<void> {
  await Promise.all([...agents.values()].map((a) => a.close().catch(() => undefined)));
  agents.clear();
}

function authorization(server: Dhis2Server): string {
  // The host as the scope file names it (an IPv6 address without brackets), from the one URL parser.
  const { host } = endpointOf(parseHttpUrl, server.baseUrl, `The base URL of DHIS2 ${server.name}`);
  if ('token' in server.auth) return `ApiToken ${resolveSecret(server.auth.token.secret, { host, purpose: 'api-token' })}`;
  const password = resolveSecret(server.auth.basic.password.secret, { host, purpose: 'api-password' });
  return `Basic ${Buffer.from(`${server.auth.basic.username}:${password}`).toString('base64')}`;
}

/** Thrown for answers a retry can fix (the server down, 5xx, 429); the activity's retry policy backs off. */
export function unavailable(server: Dhis2Server, what: string): ApplicationFailure {
  return ApplicationFailure.retryable(`DHIS2 ${server.name} (${server.baseUrl}) ${what}`, 'Dhis2Unavailable');
}

/** Thrown for answers no retry fixes: the message says what to do. */
export function refused(server: Dhis2Server, what: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ message: `DHIS2 ${server.name} (${server.baseUrl}) ${what}`, type: 'Dhis2Refused', nonRetryable: true, details: details === undefined ? [] : [details] });
}

export interface CallOptions {
  query?: Record<string, string>;
  json?: unknown;
  text?: string;
  /** The whole answer, headers and body, within this (default 30 s). */
  timeoutMs?: number;
  /** The most this call's answer may be (default answerLimits.small): what the answer needs. */
  maxBytes?: number;
  /** What to do when the answer is larger, for the error (e.g. "use a smaller pageSize"). */
  whenTooLarge?: string;
}

/**
 * One call. Network failures, 5xx and 429 throw `unavailable`; 401/403 throw `refused`;
 * any other status is returned for the caller to judge (404 and 409 mean things in DHIS2).
 */
export async function call<T = unknown>(server: Dhis2Server, method: 'GET' | 'POST' | 'PUT' | 'DELETE', apiPath: string, opts: CallOptions = {}): Promise<Dhis2Response<T>> {
  const url = new URL(`${server.baseUrl}/api/${apiPath}`);
  for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
  const headers: Record<string, string> = { authorization: authorization(server), accept: 'application/json' };
  let body: string | undefined;
  if (opts.json !== undefined) { headers['content-type'] = 'application/json'; body = JSON.stringify(opts.json); }
  if (opts.text !== undefined) { headers['content-type'] = 'text/plain; charset=utf-8'; body = opts.text; }
  const maxBytes = opts.maxBytes ?? answerLimits.small;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const what = `${method} /api/${apiPath}`;
  const tooLarge = (err: AnswerTooLarge) => refused(server, `answered ${what} with an ${err.message}${opts.whenTooLarge ? `: ${opts.whenTooLarge}` : ''}`);
  const lease = answersInFlight.lease((held) => unavailable(server, `answered ${what} while this worker already holds ${sizeOf(held)} of DHIS2 answers (its limit, so that no peer can fill its memory); try again shortly`));
  let status: number;
  let text: string;
  let parsed: unknown;
  try {
    const deadline = AbortSignal.timeout(timeoutMs);
    const cancelled = activitySignal();
    try {
      const res = await request(url, {
        method, headers, body, dispatcher: agentFor(server), signal: cancelled ? AbortSignal.any([cancelled, deadline]) : deadline,
        headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
      });
      status = res.statusCode;
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > maxBytes) {
        res.body.destroy();
        throw new AnswerTooLarge(`answer of ${declared} bytes (Content-Length), more than the ${sizeOf(maxBytes)} this call accepts (not read)`);
      }
      text = await readLimited(res.body, maxBytes, lease.take);
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      if (err instanceof AnswerTooLarge) throw tooLarge(err);
      if (deadline.aborted) throw unavailable(server, `did not finish answering ${what} within ${timeoutMs / 1000} s, the most this call waits`);
      const e = err as { code?: string; name?: string; message?: string };
      throw unavailable(server, `could not be reached for ${what}: ${e.code ?? e.name ?? 'error'}${e.message ? ` (${e.message})` : ''}`);
    }
    parsed = text;
    if (text && /^\s*[[{]/.test(text)) {
      try { parsed = parseLimited(text, maxBytes); } catch (err) {
        if (err instanceof AnswerTooLarge) throw tooLarge(err);
        /* not JSON: keep the text, callers check the shape */
      }
    }
  } finally {
    lease.release();
  }
  if (status >= 500 || status === 429 || status === 408) throw unavailable(server, `answered ${what} with HTTP ${status}: ${snippet(text)}`);
  if (status === 401 || status === 403) {
    throw refused(server, `refused our credentials (HTTP ${status}) for ${what}: check the ${'token' in server.auth ? 'token' : 'user and password'} secret in the sync configuration`);
  }
  return { status, body: parsed as T, text };
}

export const snippet = (text: string, max = 300): string => (text.length > max ? `${text.slice(0, max)}…` : text).replace(/\s+/g, ' ');

/** The import report's errors, flattened: [{ code, message, uid, property }]. */
export interface ImportError { code: string; message: string; uid?: string; property?: string; properties?: string[] }

const maxImportErrors = 50;

export function importErrors(report: unknown, max = maxImportErrors): ImportError[] {
  const out: ImportError[] = [];
  const response = (report as { response?: { typeReports?: unknown[]; errorReports?: unknown[] } })?.response;
  const reports = Array.isArray(response?.typeReports) ? response!.typeReports : [];
  for (const tr of reports) {
    const objectReports = (tr as { objectReports?: unknown[] })?.objectReports;
    for (const or of Array.isArray(objectReports) ? objectReports : []) {
      const o = or as { uid?: unknown; errorReports?: unknown[] };
      for (const er of Array.isArray(o.errorReports) ? o.errorReports : []) out.push(errorOf(er, typeof o.uid === 'string' ? o.uid : undefined));
    }
  }
  for (const er of Array.isArray(response?.errorReports) ? response!.errorReports : []) out.push(errorOf(er));
  // A peer's report lands in a run's history: a few dozen errors say enough.
  return out.slice(0, max);
}

function errorOf(er: unknown, uid?: string): ImportError {
  const e = er as { errorCode?: unknown; message?: unknown; errorProperty?: unknown; errorProperties?: unknown };
  return {
    code: typeof e.errorCode === 'string' ? e.errorCode : 'unknown',
    message: typeof e.message === 'string' ? e.message.slice(0, 500) : 'no message',
    uid,
    property: typeof e.errorProperty === 'string' ? e.errorProperty : undefined,
    properties: Array.isArray(e.errorProperties) ? e.errorProperties.filter((p): p is string => typeof p === 'string') : undefined,
  };
}
