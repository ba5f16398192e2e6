/**
 * A peer that answers as a hostile or broken server would, on 127.0.0.1: each request is counted
 * and handed to `answer`, which returns the JSON to send, or 'hold' to keep the request open (never
 * answered) so a test can cancel the activity waiting on it and see the connection closed.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HostilePeer {
  baseUrl: string;
  /** Requests received so far. */
  requests: number;
  /** Resolves once a held request's connection was closed by the client (the activity aborted it). */
  heldClosed: Promise<void>;
  /** Resolves once a request is held. */
  held: Promise<void>;
  close(): Promise<void>;
}

export async function startHostilePeer(answer: (url: URL, n: number) => unknown | 'hold'): Promise<HostilePeer> {
  let onHeld!: () => void;
  let onHeldClosed!: () => void;
  const held = new Promise<void>((r) => { onHeld = r; });
  const heldClosed = new Promise<void>((r) => { onHeldClosed = r; });
  const open = new Set<ServerResponse>();
  const peer = { requests: 0 } as HostilePeer;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    peer.requests += 1;
    const body = answer(new URL(req.url ?? '/', peer.baseUrl), peer.requests);
    if (body === 'hold') {
      open.add(res);
      res.on('close', () => { open.delete(res); onHeldClosed(); });
      onHeld();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  peer.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  peer.held = held;
  peer.heldClosed = heldClosed;
  peer.close = async () => {
    for (const res of open) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return peer;
}
