/**
 * The simulator's HTTP server: authentication, routing (404 for unknown paths, 405 for a wrong method),
 * the fault knobs, the request log, and a WebMessage for every failure so bad input never crashes it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { dataStoreRoutes } from './datastore';
import { badRequest, HttpError, notFound, parseJsonBody, readBody, webMessage, type ApiCall, type Reply, type Route } from './http';
import { importReply, simulatedImportFailure } from './import-report';
import { messageRoutes } from './messages';
import { userRoutes } from './users';
import { metadataRoutes } from './metadata';
import { objectRoutes } from './objects';
import type { SimState, SimUser } from './types';

export interface FailRule { remaining: number; status: 409 | 500 | 503; path?: RegExp }
export interface RequestRecord { method: string; path: string; status: number; auth: 'basic' | 'token' | 'none' }

export interface ServerState extends SimState {
  slowMs: number;
  failRules: FailRule[];
  requests: RequestRecord[];
}

const ROUTES: Route[] = [...objectRoutes, ...metadataRoutes, ...dataStoreRoutes, ...messageRoutes, ...userRoutes];
const MAX_REQUEST_LOG = 5000;
const UNAUTHORIZED: Reply = { status: 401, body: webMessage(401, 'Unauthorized') };

export class ApiServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly state: ServerState) {
    this.server = createServer((req, res) => void this.respond(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get listening(): boolean {
    return this.server.listening;
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve((this.server.address() as { port: number }).port);
      });
    });
  }

  /** Stops listening and cuts open connections, so clients see refused and reset connections at once. */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    // A short pause lets clients in this process see their pooled connections close, so their next
    // request gets "connection refused" rather than a reset on a dead keep-alive socket.
    return closed.then(() => new Promise((resolve) => setTimeout(resolve, 20)));
  }

  private async respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator');
    const { user, scheme } = this.authenticate(req);
    let reply: Reply;
    try {
      reply = await this.dispatch(req, url, user);
    } catch (e) {
      reply = e instanceof HttpError ? e.toReply() : { status: 500, body: webMessage(500, `DHIS2 simulator ${this.state.name} failed: ${(e as Error)?.message ?? e}`) };
    }
    if (this.state.slowMs > 0) await new Promise((r) => setTimeout(r, this.state.slowMs));
    this.state.requests.push({ method: req.method ?? '', path: url.pathname, status: reply.status, auth: scheme });
    if (this.state.requests.length > MAX_REQUEST_LOG) this.state.requests.splice(0, this.state.requests.length - MAX_REQUEST_LOG);
    if (res.destroyed) return;
    const payload = reply.body === undefined ? undefined : JSON.stringify(reply.body);
    res.writeHead(reply.status, {
      ...(payload === undefined ? {} : { 'Content-Type': 'application/json;charset=UTF-8' }),
      ...reply.headers,
    });
    res.end(payload);
  }

  private authenticate(req: IncomingMessage): { user?: SimUser; scheme: RequestRecord['auth'] } {
    const header = req.headers.authorization ?? '';
    const [kind, credentials = ''] = header.split(/ +/, 2);
    if (/^basic$/i.test(kind)) {
      const pair = Buffer.from(credentials, 'base64').toString('utf8');
      return { user: this.state.users.find((u) => `${u.username}:${u.password}` === pair), scheme: 'basic' };
    }
    if (/^apitoken$/i.test(kind)) {
      // A token acts as the first configured user, as if that user had created it.
      return { user: this.state.tokens.includes(credentials) ? this.state.users[0] : undefined, scheme: 'token' };
    }
    return { scheme: 'none' };
  }

  private async dispatch(req: IncomingMessage, url: URL, user: SimUser | undefined): Promise<Reply> {
    // DHIS2 serves versioned paths (/api/40/...) the same as /api/...
    const path = url.pathname.replace(/^\/api\/\d{2}(?=\/|$)/, '/api');
    if (path !== '/api' && !path.startsWith('/api/')) throw notFound(`No endpoint ${path} in the DHIS2 simulator (the API is under /api)`);
    if (!user) return UNAUTHORIZED;
    let body: Promise<Buffer> | undefined;
    const readOnce = () => (body ??= readBody(req));
    const call: ApiCall = {
      state: this.state, user, method: req.method ?? 'GET', path, query: url.searchParams, req,
      json: async () => parseJsonBody(req, await readOnce()),
      text: async () => (await readOnce()).toString('utf8'),
    };
    const injected = this.takeFailRule(path);
    if (injected) return this.injectedFailure(call, injected);
    const known = ROUTES.filter((r) => r.pattern.test(path));
    if (known.length === 0) throw notFound(`No endpoint ${call.method} ${path} in the DHIS2 simulator`);
    const route = known.find((r) => r.method === call.method);
    if (!route) {
      throw new HttpError(405, `Request method '${call.method}' is not supported on ${path} (supported: ${known.map((r) => r.method).join(', ')})`);
    }
    const match = path.match(route.pattern)!;
    return route.handle(call, decodeGroups(match));
  }

  private takeFailRule(path: string): FailRule | undefined {
    const rule = this.state.failRules.find((r) => r.remaining > 0 && (!r.path || new RegExp(r.path.source, r.path.flags.replace('g', '')).test(path)));
    if (rule) rule.remaining -= 1;
    this.state.failRules = this.state.failRules.filter((r) => r.remaining > 0);
    return rule;
  }

  private async injectedFailure(call: ApiCall, rule: FailRule): Promise<Reply> {
    if (rule.status === 409 && call.path === '/api/metadata' && call.method === 'POST') {
      const bundle = await call.json().catch(() => undefined);
      return importReply(simulatedImportFailure(bundle), { onlyErrors: false });
    }
    await call.text().catch(() => undefined);
    return { status: rule.status, body: webMessage(rule.status, 'Simulated failure') };
  }
}

function decodeGroups(match: RegExpMatchArray): RegExpMatchArray {
  try {
    return Object.assign(match.map((g) => (g === undefined ? g : decodeURIComponent(g))), { index: match.index, input: match.input }) as unknown as RegExpMatchArray;
  } catch {
    throw badRequest(`Malformed percent-encoding in ${match.input}`);
  }
}
