/**
 * Hostile HTTP peers on loopback, as a broken or malicious DHIS2, IRIS web server or FHIR server
 * could be. The first path segment picks how every request under it is answered:
 *
 *   /huge/…     200, a 300 MB JSON array of `{}` with its Content-Length, sent as fast as it is read
 *   /wide/…     200, 31 MB of `[{},{},…]` chunked (what a 32 MB limit let through: ~690 MB of heap)
 *   /dense/…    200, 3.9 MB of `[{},{},…]`: under a resource's size limit, far over its shape limit
 *   /deep/…     200, `[[[[…` nested a million deep (2 MB)
 *   /endless/…  200, a chunked `[{},{},…` that never ends
 *   /drip/…     200, then one byte a second, never ending
 *   /dhis2/…    (and /dhis2-target/…) a DHIS2 that answers /api/me, counts and single resources well, and pages of a list
 *               with a body that never ends (the hostile source)
 *
 * Bodies are made as they are sent, a chunk at a time with back-pressure: the test process holds
 * no more than a chunk. Every stream ends when the peer hangs up or the server closes.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface HostileHttp {
  /** http://127.0.0.1:<port>/<mode> */
  url(mode: 'huge' | 'wide' | 'dense' | 'deep' | 'endless' | 'drip' | 'dhis2' | 'dhis2-target'): string;
  /** Requests received, per mode. */
  requests: Map<string, number>;
  close(): Promise<void>;
}

const MB = 1_000_000;
const objects = Buffer.from('{},'.repeat(21_845)); // 64 KiB less one byte

/** Writes `chunk` until `total` bytes went out (Infinity: until the peer hangs up), honouring back-pressure. */
async function stream(res: ServerResponse, first: string, chunk: Buffer, total: number, last = ''): Promise<void> {
  let sent = 0;
  const write = (b: Buffer | string) => new Promise<void>((resolve) => { if (res.write(b)) resolve(); else res.once('drain', resolve); });
  await write(first);
  sent += first.length;
  // Bounded by `total`, or by the connection: a closed response stops the loop.
  while (!res.destroyed && sent + chunk.length < total) {
    await write(chunk);
    sent += chunk.length;
  }
  if (!res.destroyed && Number.isFinite(total)) res.end(`${'{},'.repeat(Math.max(0, Math.floor((total - sent - last.length - 2) / 3)))}{}${last}`);
}

function answer(req: IncomingMessage, res: ServerResponse, mode: string, rest: string): void {
  const json = { 'content-type': 'application/json' };
  switch (mode) {
    case 'huge': {
      const total = 300 * MB;
      res.writeHead(200, { ...json, 'content-length': String(total) });
      void stream(res, '[', objects, total, ']');
      return;
    }
    case 'wide':
      res.writeHead(200, json);
      void stream(res, '[', objects, 31 * MB, ']');
      return;
    case 'dense':
      res.writeHead(200, json);
      void stream(res, '[', objects, 3.9 * MB, ']');
      return;
    case 'deep':
      res.writeHead(200, json);
      res.end(`${'['.repeat(MB)}${']'.repeat(MB)}`);
      return;
    case 'endless':
      res.writeHead(200, json);
      void stream(res, '[', objects, Infinity);
      return;
    case 'drip': {
      res.writeHead(200, json);
      res.write('[');
      const timer = setInterval(() => res.write('0,'), 1_000);
      res.once('close', () => clearInterval(timer));
      return;
    }
    case 'dhis2':
    case 'dhis2-target':
      return dhis2(req, res, rest);
    default:
      res.writeHead(404).end();
  }
}

/** Well-formed where a runbook checks its peer first, hostile where it reads a list. */
function dhis2(req: IncomingMessage, res: ServerResponse, rest: string): void {
  const url = new URL(rest, 'http://x');
  const send = (body: unknown): void => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)); };
  const single = /^\/api\/(organisationUnits|organisationUnitGroups|organisationUnitGroupSets)\/([A-Za-z0-9]{11})$/.exec(url.pathname);
  const list = /^\/api\/(organisationUnits|organisationUnitGroups|organisationUnitGroupSets)$/.exec(url.pathname);
  if (url.pathname === '/api/me') return send({ id: 'M5zQapPyTZI', username: 'admin' });
  if (single) return send({ id: single[2], name: `Hostile ${single[2]}`, shortName: 'Hostile', openingDate: '2020-01-01T00:00:00.000' });
  if (list && url.searchParams.get('pageSize') === '1') return send({ pager: { page: 1, pageCount: 1000, total: 1000, pageSize: 1 }, [list[1]]: [{ id: 'Aaaaaaaaaa1' }] });
  if (list) {
    res.writeHead(200, { 'content-type': 'application/json' });
    void stream(res, `{"pager":{"page":1},"${list[1]}":[`, objects, Infinity);
    return;
  }
  void req;
  res.writeHead(404, { 'content-type': 'application/json' }).end('{"httpStatusCode":404}');
}

export async function startHostileHttp(): Promise<HostileHttp> {
  const sockets = new Set<Socket>();
  const requests = new Map<string, number>();
  const server = createServer((req, res) => {
    res.on('error', () => undefined);
    const [, mode = '', ...rest] = (req.url ?? '/').split('/');
    requests.set(mode, (requests.get(mode) ?? 0) + 1);
    // The request body (an import, a draft) is read and dropped.
    req.resume();
    answer(req, res, mode, `/${rest.join('/')}`);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('error', () => undefined); s.once('close', () => sockets.delete(s)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    url: (mode) => `http://127.0.0.1:${port}/${mode}`,
    requests,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}
