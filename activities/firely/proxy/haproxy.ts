/**
 * HAProxy: both servers are `server` lines of one backend, switched through the runtime API on the
 * admin socket (socat over SSH), no reload: the new server `ready`, the others `drain` (no new
 * requests, those in flight finish), asked through the proxy until only the new one answers, then
 * the others `maint`. That state lives in HAProxy's memory; with `stateFile` it is also written
 * where `load-server-state-from-file` reads it back on a reload.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { HaproxyProxy } from '../../../contracts/firely/schema';
import { shq } from '../../lib/shell';
import { MAX_ANSWER, describeServers, endpoint, runtimeApi, serverName, showServers, spellings, type BackendServer } from '../../lib/haproxy';
import type { SshSession } from '../../lib/ssh';
import { onSshHost } from '../../lib/ssh-pool';
import { untilServedBy, type ProxyBackend, type SwitchReport } from './backend';

// Moved to activities/lib/haproxy.ts (shared with the IRIS switchover), re-exported for its tests.
export { parseServersState, type BackendServer } from '../../lib/haproxy';

/** `set server <backend>/<server> state <state>`: an empty answer is success, any text is HAProxy's refusal. */
async function setServerState(s: SshSession, p: HaproxyProxy, server: BackendServer, state: 'ready' | 'drain' | 'maint'): Promise<void> {
  if (!serverName.test(server.name)) {
    throw ApplicationFailure.nonRetryable(`server "${server.name.slice(0, 80)}" of backend ${p.backend} has a name this runbook does not send to the runtime API (letters, digits, _ . : -); rename it`, 'BadValue');
  }
  const command = `set server ${p.backend}/${server.name} state ${state}`;
  const answer = (await runtimeApi(s, p, command)).trim();
  if (answer) throw ApplicationFailure.nonRetryable(`HAProxy on ${p.host.name} refused "${command}": ${answer.slice(0, 500)}`, 'ProxyRefused');
}

export const haproxyBackend = (p: HaproxyProxy): ProxyBackend => ({ switchTo: (to, dryRun) => switchBackend(p, to, dryRun) });

async function switchBackend(p: HaproxyProxy, to: string, dryRun: boolean): Promise<SwitchReport> {
  const where = `backend ${p.backend} on ${p.host.name}`;
  const plan = await onSshHost(p.host, async (s) => {
    const servers = await showServers(s, p);
    const target = servers.find((x) => spellings(x).includes(to));
    if (!target) throw ApplicationFailure.nonRetryable(`${to} is not a server of ${where} (it has: ${describeServers(servers)}); nothing was changed`, 'NotInBackend');
    const others = servers.filter((x) => x !== target);
    const serving = others.filter((x) => x.admin !== 'maint');
    const from = serving.map((x) => endpoint(x.addr, x.port)).join(', ') || (target.admin === 'ready' ? to : 'no server');
    return { target, others, serving, from };
  });
  const { target, others, serving, from } = plan;
  if (target.admin === 'ready' && target.running && !serving.length) return { changed: false, actions: [], from: to };
  const steps = `${target.name} ready, ${others.map((x) => x.name).join(', ') || 'no other server'} drain then maint`;
  if (dryRun) return { changed: false, actions: [`would switch ${where} from ${from} to ${to} (HAProxy runtime API: ${steps})`], from };

  const hint = `Check \`http-response set-header ${p.upstreamHeader} %si:%sp\` in ${where}.`;
  await onSshHost(p.host, async (s) => {
    if (target.admin !== 'ready') await setServerState(s, p, target, 'ready');
    await untilRunning(s, p, target, target.admin);
  });
  // One answer from the new server through the proxy while the others still serve: a health check
  // may take seconds to notice a dead server, and draining the others before that would leave none.
  await untilServedBy(p, spellings(target), hint, 1).catch(async (err: Error) => {
    if (target.admin === 'maint') await onSshHost(p.host, (s) => setServerState(s, p, target, 'maint'));
    throw new Error(`${err.message}${target.admin === 'maint' ? ` ${target.name} is back in maintenance; clients stay on ${from}.` : ''}`);
  });
  await onSshHost(p.host, async (s) => { for (const other of serving) await setServerState(s, p, other, 'drain'); });
  await untilServedBy(p, spellings(target), hint);
  const actions = [`switched ${where} from ${from} to ${to} (HAProxy runtime API: ready, drain, maint)`];
  await onSshHost(p.host, async (s) => {
    for (const other of serving) await setServerState(s, p, other, 'maint');
    if (p.stateFile) actions.push(await saveServerState(s, p, p.stateFile));
  });
  return { changed: true, actions, from };
}

/** A server that leaves maintenance may wait for its health checks: clients move only once it is up. */
async function untilRunning(s: SshSession, p: HaproxyProxy, target: BackendServer, before: BackendServer['admin'], withinMs = 60_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    const now = (await showServers(s, p)).find((x) => x.name === target.name);
    if (now?.running && now.admin === 'ready') return;
    if (Date.now() - started > withinMs) {
      if (before === 'maint') await setServerState(s, p, target, 'maint');
      throw new Error(`server ${target.name} (${endpoint(target.addr, target.port)}) of backend ${p.backend} on ${p.host.name} is not up ${withinMs / 1000} s after it was set ready ` +
        `(its health check?); ${before === 'maint' ? 'it is back in maintenance and ' : ''}clients stay where they were`);
    }
    Context.current().heartbeat();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** `show servers state` (every backend, as server-state-file holds it) written beside the file and moved into place. */
async function saveServerState(s: SshSession, p: HaproxyProxy, file: string): Promise<string> {
  const state = await runtimeApi(s, p, 'show servers state');
  if (!/^1\n# be_id /.test(state) || state.length > MAX_ANSWER * 4) {
    throw ApplicationFailure.nonRetryable(`HAProxy on ${p.host.name} gave no usable server state list for ${file}: ${state.trim().slice(0, 300)}`, 'ProxyStateUnreadable');
  }
  const sudo = p.sudo ? 'sudo -n ' : '';
  const staged = shq(`${file}.runbooks-new`);
  await s.run(`umask 022; ${sudo}rm -f -- ${staged} && ${sudo}tee ${staged} >/dev/null && ${sudo}mv -f -- ${staged} ${shq(file)}`, { stdin: state, what: `writing ${file}` });
  return `wrote the server states to ${file} (load-server-state-from-file keeps them over a reload)`;
}
