/**
 * The reverse proxy in front of Firely Server: one backend per kind (`proxy.kind`), each in a file
 * of its own behind one interface, as postgres/profile.ts does for the PostgreSQL layouts.
 * nginx.ts: the upstream include file, `nginx -t`, a graceful reload. haproxy.ts: the runtime API
 * on the admin socket, no reload.
 */
import { ApplicationFailure } from '@temporalio/common';
import { hostPort, type ReverseProxy } from '../../../contracts/firely/schema';
import type { ProxyBackend, SwitchReport } from './backend';
import { haproxyBackend } from './haproxy';
import { nginxBackend } from './nginx';

export type { SwitchReport };

export const backendOf = (p: ReverseProxy): ProxyBackend => (p.kind === 'haproxy' ? haproxyBackend(p) : nginxBackend(p));

export interface SwitchRequest { proxy: ReverseProxy; to: string; dryRun: boolean }

/** Sends clients to `to` (host:port): the cutover, and with the old server its undo. */
export async function switchProxyUpstream(r: SwitchRequest): Promise<SwitchReport> {
  // It goes into the proxy's configuration or is matched against it: nothing but host:port.
  if (!hostPort.safeParse(r.to).success) throw ApplicationFailure.nonRetryable(`"${r.to.slice(0, 100)}" is not host:port`, 'BadValue');
  return backendOf(r.proxy).switchTo(r.to, r.dryRun);
}
