/** HTTP plumbing: DHIS2 WebMessage bodies, errors that become them, body reading and query checks. */
import type { IncomingMessage } from 'node:http';
import type { SimState, SimUser } from './types';

/** DHIS2 refuses bigger request bodies; the simulator draws the line at 10 MB. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found',
  403: 'Forbidden', 405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  500: 'Internal Server Error', 503: 'Service Unavailable',
};

/** The envelope every DHIS2 answer that is not an object itself comes in. */
export function webMessage(code: number, message?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    httpStatus: REASONS[code] ?? String(code),
    httpStatusCode: code,
    status: code < 400 ? 'OK' : 'ERROR',
    ...(message === undefined ? {} : { message }),
    ...extra,
  };
}

export interface Reply { status: number; body?: unknown; headers?: Record<string, string> }

/** Thrown anywhere in a handler; the server turns it into a WebMessage of that status. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
  toReply(): Reply {
    return { status: this.status, body: webMessage(this.status, this.message, this.extra) };
  }
}

export const notFound = (message: string) => new HttpError(404, message);
export const badRequest = (message: string) => new HttpError(400, message);

/** One authenticated API request, as handlers see it. */
export interface ApiCall {
  state: SimState;
  user: SimUser;
  method: string;
  path: string;
  query: URLSearchParams;
  req: IncomingMessage;
  /** The body parsed as JSON (415 unless Content-Type is JSON, 400 when malformed). */
  json(): Promise<unknown>;
  /** The body as text, whatever its Content-Type (feedback and replies are text/plain). */
  text(): Promise<string>;
}

export interface Route {
  method: string;
  pattern: RegExp;
  handle(call: ApiCall, match: RegExpMatchArray): Promise<Reply>;
}

/** Reads the whole body; past the limit it keeps draining (so the client can read the answer) and then throws 413. */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) reject(new HttpError(413, `Request body of ${size} bytes is over the ${MAX_BODY_BYTES} byte limit`));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
    // A client that hangs up mid-body never sends 'end'.
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, 'The request body was cut off'));
    });
  });
}

export function parseJsonBody(req: IncomingMessage, body: Buffer): unknown {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new HttpError(415, `Content type '${type || 'none'}' not supported; send application/json`);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw badRequest(`Malformed JSON in request body: ${(e as Error).message}`);
  }
}

/** Rejects query parameters the simulator does not implement, so a client's typo fails loudly. */
export function checkParams(call: ApiCall, allowed: string[]): void {
  for (const name of new Set(call.query.keys())) {
    if (!allowed.includes(name)) {
      throw badRequest(`Query parameter \`${name}\` is not supported by the simulator on ${call.method} ${call.path} (supported: ${allowed.join(', ') || 'none'})`);
    }
    if (call.query.getAll(name).length > 1) throw badRequest(`Query parameter \`${name}\` given more than once`);
  }
}

/** An enum parameter (case-insensitive, like DHIS2's enum binding), or its default when absent. */
export function enumParam<T extends string>(call: ApiCall, name: string, values: readonly T[], fallback: T): T {
  const raw = call.query.get(name);
  if (raw === null) return fallback;
  const value = values.find((v) => v === raw.toUpperCase() || v === raw);
  if (!value) throw badRequest(`Invalid value \`${raw}\` for parameter \`${name}\`; expected one of ${values.join(', ')}`);
  return value;
}

export function positiveIntParam(call: ApiCall, name: string, fallback: number): number {
  const raw = call.query.get(name);
  if (raw === null) return fallback;
  if (!/^[1-9][0-9]{0,8}$/.test(raw)) throw badRequest(`Invalid value \`${raw}\` for parameter \`${name}\`; expected a positive integer`);
  return Number(raw);
}

/** DHIS2 timestamps: local ISO without zone, to the millisecond. The simulator keeps them in UTC. */
export const nowTimestamp = () => new Date().toISOString().slice(0, 23);
