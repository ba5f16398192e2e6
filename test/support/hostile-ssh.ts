/**
 * A hostile SSH peer on loopback, as any device that takes a dead server's address could be: it
 * sends a valid banner, then two malformed binary packets, before any host key is offered.
 */
import { createServer, type Socket } from 'node:net';

export interface HostileServer { port: number; connections: number; close(): Promise<void> }

export async function startHostileSshServer(): Promise<HostileServer> {
  const sockets = new Set<Socket>();
  const state = { connections: 0 };
  const server = createServer((sock) => {
    state.connections += 1;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    sock.write('SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n');
    sock.once('data', () => {
      // A packet whose padding is longer than the packet, and one that claims 4 GiB.
      sock.write(Buffer.from([0, 0, 0, 12, 200, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
      sock.write(Buffer.from([0xff, 0xff, 0xff, 0xf0, 0x0b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as { port: number }).port,
    get connections() { return state.connections; },
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
