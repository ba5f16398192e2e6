/**
 * The instance's web server, reduced to the mirror health check the load balancer uses:
 * GET /csp/mirror_status.cxw -> 200 "SUCCESS" on the primary, 503 "FAILED" on any other member.
 * Started by `iris start`, stopped by `iris stop`: a down instance does not answer at all.
 * Usage: status-server.ts <home>   (prints "listening <port>" once ready)
 * Listens on loopback unless IRIS_SIM_LISTEN names another address (a lab host's own, inside its
 * network namespace): tests never open a port to the network.
 */
import { createServer } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadState } from './state';

const home = process.argv[2];
const s0 = loadState(home);
const server = createServer((req, res) => {
  const s = loadState(home);
  if (!s.running) { req.socket.destroy(); return; }
  const url = new URL(req.url ?? '/', 'http://x');
  if (req.method !== 'GET' || url.pathname.replace(/\/+/g, '/') !== '/csp/mirror_status.cxw') {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found');
    return;
  }
  const primary = s.mirror?.role === 'Primary';
  res.writeHead(primary ? 200 : 503, { 'Content-Type': 'text/plain' }).end(primary ? 'SUCCESS' : 'FAILED');
});
server.listen(s0.statusPort, process.env.IRIS_SIM_LISTEN || '127.0.0.1', () => {
  const port = (server.address() as { port: number }).port;
  mkdirSync(path.join(home, 'run'), { recursive: true });
  writeFileSync(path.join(home, 'run', 'status.port'), String(port));
  writeFileSync(path.join(home, 'run', 'status.pid'), String(process.pid));
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
