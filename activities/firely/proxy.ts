/**
 * The reverse proxy in front of Firely Server, nginx profile: the upstream lives in an include file
 * of its own. A switch writes the new file beside the old one, moves it into place, checks the whole
 * configuration with `nginx -t` (a failure puts the old file back, so nginx never reloads a broken
 * configuration), reloads gracefully (`nginx -s reload`: old workers finish their requests), then
 * asks through the proxy until only the new upstream answers.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { request } from 'undici';
import type { ChangeReport } from '../../workflows/kit/runbook';
import { hostPort, type NginxProxy, type SshHost } from '../../workflows/firely/schema';
import { whileHeartbeating } from '../lib/heartbeat';
import { cmd, shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { withSsh } from '../lib/ssh-pool';

const onProxy = <T>(h: SshHost, fn: (s: SshSession) => Promise<T>) => whileHeartbeating(() => withSsh({
  label: `${h.name} (${h.address})`, host: h.address, port: h.ssh.port, user: h.ssh.user, hostKey: h.ssh.hostKey, privateKey: h.ssh.privateKey,
}, fn));

/** The include file's whole content for one upstream server. */
export const upstreamBlock = (name: string, server: string) =>
  `# Written by Runbooks (migrateFirelyServer): the Firely Server that serves clients.\nupstream ${name} {\n    server ${server};\n}\n`;

const serverOf = (text: string) => /^\s*server\s+([^\s;]+)/m.exec(text)?.[1];

export interface SwitchRequest { proxy: NginxProxy; to: string; dryRun: boolean }

export async function switchProxyUpstream(r: SwitchRequest): Promise<ChangeReport & { from?: string }> {
  const p = r.proxy;
  // It goes into nginx's configuration: nothing but host:port.
  if (!hostPort.safeParse(r.to).success) throw ApplicationFailure.nonRetryable(`"${r.to.slice(0, 100)}" is not host:port`, 'BadValue');
  const sudo = p.sudo ? 'sudo -n ' : '';
  const nginx = `${sudo}${cmd(p.nginx, ...(p.configFile ? ['-c', p.configFile] : []))}`;
  const file = shq(p.upstreamFile);
  const staged = shq(`${p.upstreamFile}.runbooks-new`);
  const kept = shq(`${p.upstreamFile}.runbooks-previous`);
  const changed = await onProxy(p.host, async (s) => {
    const current = await s.run(`cat -- ${file}`, { what: `reading ${p.upstreamFile}` });
    const from = serverOf(current);
    if (from === r.to) {
      // In place already; but an attempt that died between the move and the reload left nginx on the old file.
      if (r.dryRun || await servedBy(p, r.to)) return { changed: false, actions: [], from };
      await testAndReload(s, `${nginx}`, file, kept, p, r.to, sudo);
      return { changed: true, actions: [`reloaded nginx on ${p.host.name}: upstream ${p.upstreamName} was already ${r.to} in the file`], from };
    }
    if (r.dryRun) return { changed: false, actions: [`would switch upstream ${p.upstreamName} on ${p.host.name} from ${from} to ${r.to}`], from };
    // Written beside the file (same directory: the move is a rename); the old one kept for the way back.
    await s.run(`umask 022; ${sudo}rm -f -- ${staged} && ${sudo}tee ${staged} >/dev/null && ${sudo}cp -p -- ${file} ${kept} && ${sudo}mv -f -- ${staged} ${file}`,
      { stdin: upstreamBlock(p.upstreamName, r.to), what: `writing ${p.upstreamFile}` });
    await testAndReload(s, nginx, file, kept, p, r.to, sudo);
    return { changed: true, actions: [`switched upstream ${p.upstreamName} on ${p.host.name} from ${from} to ${r.to} (nginx -t, graceful reload)`], from };
  });
  if (!r.dryRun) await untilServedBy(p, r.to);
  return changed;
}

/** nginx -t, and on success a graceful reload; a refused configuration is replaced by the kept one. */
async function testAndReload(s: SshSession, nginx: string, file: string, kept: string, p: NginxProxy, to: string, sudo: string): Promise<void> {
  const test = await s.exec(`${nginx} -t 2>&1`);
  if (test.code !== 0) {
    await s.run(`[ ! -f ${kept} ] || ${sudo}mv -f -- ${kept} ${file}`, { what: `putting ${p.upstreamFile} back` });
    throw ApplicationFailure.nonRetryable(`nginx -t on ${p.host.name} refused the configuration with upstream ${to}; the previous file is back and nginx was not reloaded:\n${test.stdout.trim()}`, 'ProxyConfigRefused');
  }
  await s.run(`${nginx} -s reload`, { what: 'nginx -s reload' });
}

/** Whether the proxy answers from `server` now. */
async function servedBy(p: NginxProxy, server: string): Promise<boolean> {
  try {
    const res = await request(p.verifyUrl, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    await res.body.dump();
    return String(res.headers[p.upstreamHeader.toLowerCase()] ?? '') === server;
  } catch {
    return false;
  }
}

/** Asks through the proxy until `consecutive` answers in a row come from `server` (old workers drain after a reload). */
async function untilServedBy(p: NginxProxy, server: string, consecutive = 20, withinMs = 60_000): Promise<void> {
  const started = Date.now();
  let streak = 0;
  let last = '';
  while (streak < consecutive) {
    try {
      const res = await request(p.verifyUrl, { headersTimeout: 5_000, bodyTimeout: 5_000 });
      await res.body.dump();
      const upstream = String(res.headers[p.upstreamHeader.toLowerCase()] ?? '');
      last = `${res.statusCode} from ${upstream || `no ${p.upstreamHeader} header`}`;
      streak = upstream === server && res.statusCode < 500 ? streak + 1 : 0;
    } catch (err) {
      last = (err as Error).message;
      streak = 0;
    }
    if (Date.now() - started > withinMs) {
      throw new Error(`${p.verifyUrl} is not served by ${server} after the switch (last answer: ${last}). Check ${p.upstreamHeader} in the nginx configuration.`);
    }
    Context.current().heartbeat();
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
