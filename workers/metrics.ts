/**
 * What a monitoring system scrapes from each process, on a port of its own taken from the
 * environment (none set: no port is opened, the development default):
 *
 *   RUNBOOKS_WORKER_METRICS_PORT     the worker
 *   RUNBOOKS_LISTENER_METRICS_PORT   the org-unit change listener
 *   RUNBOOKS_GATEWAY_METRICS_PORT    the approval gateway
 *   RUNBOOKS_METRICS_HOST            the address they listen on (127.0.0.1; 0.0.0.0 for a Prometheus elsewhere)
 *
 * On that port: GET /metrics (Prometheus text format, prom-client), /healthz (the process is
 * alive: 200) and /readyz (200 when it does its job: connected to Temporal; for the listener,
 * streaming from its slot; 503 with the reason otherwise).
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';

export const metricsPortEnv = {
  worker: 'RUNBOOKS_WORKER_METRICS_PORT',
  listener: 'RUNBOOKS_LISTENER_METRICS_PORT',
  gateway: 'RUNBOOKS_GATEWAY_METRICS_PORT',
} as const;
export type MonitoredProcess = keyof typeof metricsPortEnv;

/** The process's metrics port, or undefined when metrics are off. A bad value stops the process at start, naming the variable. */
export function metricsPort(process_: MonitoredProcess, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const name = metricsPortEnv[process_];
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new Error(`${name} is "${text}": write a TCP port, 1 to 65535 (unset it to serve no metrics)`);
  return port;
}

/** A registry with the process's own standard metrics (CPU, memory, event-loop lag), every series labelled with no more. */
export function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsEndpointOptions {
  registry: Registry;
  port: number;
  host?: string;
  /** Undefined when ready, else why not (the /readyz answer). Bounded by the server to 3 s. */
  notReady: () => Promise<string | undefined>;
  /** More exposition text from the same process (the Temporal SDK's own exporter), appended to /metrics. */
  more?: () => Promise<string>;
}

export interface MetricsEndpoint { url: string; server: Server; close(): Promise<void> }

const within = <T>(ms: number, what: string, p: Promise<T>): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms); })])
    .finally(() => clearTimeout(timer));
};

/** Serves /metrics, /healthz and /readyz; resolves once listening. */
export function serveMetrics(opts: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const host = opts.host ?? process.env.RUNBOOKS_METRICS_HOST ?? '127.0.0.1';
  const answer = async (path: string): Promise<{ status: number; type: string; body: string }> => {
    if (path === '/healthz') return { status: 200, type: 'text/plain', body: 'ok\n' };
    if (path === '/readyz') {
      const why = await within(3_000, 'the readiness check', opts.notReady()).catch((err: Error) => err.message);
      return why ? { status: 503, type: 'text/plain', body: `not ready: ${why}\n` } : { status: 200, type: 'text/plain', body: 'ready\n' };
    }
    if (path === '/metrics') {
      const [own, more] = await Promise.all([opts.registry.metrics(), opts.more ? within(3_000, 'the SDK metrics', opts.more()).catch(() => '') : '']);
      return { status: 200, type: opts.registry.contentType, body: more ? `${own}\n${more}` : own };
    }
    return { status: 404, type: 'text/plain', body: 'not found: /metrics, /healthz, /readyz\n' };
  };
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return; }
    answer(new URL(req.url ?? '/', 'http://metrics').pathname).then(
      (a) => res.writeHead(a.status, { 'content-type': a.type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : a.body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      const { port } = server.address() as { port: number };
      resolve({ url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, server, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

/** A loopback port nobody listens on now (the SDK's exporter's; the tests' servers). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createTcpServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
