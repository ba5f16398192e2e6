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
import { cmd, shq } from '../../lib/shell';
import type { SshSession } from '../../lib/ssh';
import { onSshHost } from '../../lib/ssh-pool';
import { untilServedBy, type ProxyBackend, type SwitchReport } from './backend';

/** srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited or resolver maintenance; forced or inherited drain. Config maintenance alone (0x04, `disabled` then `ready`) serves. */
const ADMIN_MAINT = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN = 0x08 | 0x10;
const OP_RUNNING = 2;
/** What the worker reads of an answer: more is not a server list this runbook can act on. */
const MAX_ANSWER = 1_000_000;
const serverName = /^[A-Za-z0-9_.:-]{1,64}$/;

export interface BackendServer { name: string; addr: string; port: number; fqdn?: string; admin: 'ready' | 'drain' | 'maint'; running: boolean }

/** host:port as the input spells it (IPv6 in brackets). */
const endpoint = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
const spellings = (s: BackendServer) => [endpoint(s.addr, s.port), `${s.addr}:${s.port}`, ...(s.fqdn ? [`${s.fqdn}:${s.port}`] : [])];
const describeServers = (list: BackendServer[]) => list.map((s) => `${s.name} ${endpoint(s.addr, s.port)} (${s.admin})`).join(', ') || 'none';

/**
 * `show servers state <backend>`: a version line, a `# be_id be_name srv_id srv_name srv_addr ...`
 * header naming the columns, then one line per server. Read by the header's names, not by position;
 * anything else (HAProxy answers errors as text) throws with what it said.
 */
export function parseServersState(answer: string, backend: string): BackendServer[] {
  const lines = answer.slice(0, MAX_ANSWER).split('\n').map((l) => l.trim()).filter(Boolean);
  const said = () => `HAProxy answered: ${answer.trim().slice(0, 300) || '(nothing)'}`;
  if (lines[0] !== '1' || !lines[1]?.startsWith('# ')) throw new Error(`not a server state list (version 1). ${said()}`);
  const columns = lines[1].slice(2).trim().split(/\s+/);
  const at = Object.fromEntries(['be_name', 'srv_name', 'srv_addr', 'srv_port', 'srv_op_state', 'srv_admin_state', 'srv_fqdn'].map((c) => [c, columns.indexOf(c)]));
  const missing = Object.entries(at).filter(([c, i]) => i < 0 && c !== 'srv_fqdn').map(([c]) => c);
  if (missing.length) throw new Error(`the server state list has no ${missing.join(', ')} column (HAProxy 1.8 or later names them). ${said()}`);
  return lines.slice(2).filter((l) => !l.startsWith('#')).slice(0, 10_000).flatMap((line) => {
    const f = line.split(/\s+/);
    if (f.length < columns.length || f[at.be_name] !== backend) return [];
    const [admin, op, port] = [Number(f[at.srv_admin_state]), Number(f[at.srv_op_state]), Number(f[at.srv_port])];
    if (![admin, op, port].every(Number.isInteger)) throw new Error(`cannot read the server state line "${line.slice(0, 200)}"`);
    const fqdn = at.srv_fqdn >= 0 && f[at.srv_fqdn] !== '-' ? f[at.srv_fqdn] : undefined;
    return [{
      name: f[at.srv_name].slice(0, 200), addr: f[at.srv_addr].slice(0, 200), port, fqdn: fqdn?.slice(0, 255),
      admin: admin & ADMIN_MAINT ? 'maint' : admin & ADMIN_DRAIN ? 'drain' : 'ready', running: op === OP_RUNNING,
    } satisfies BackendServer];
  });
}

/** One runtime API command over the admin socket (on stdin: nothing of it reaches a shell). */
async function runtimeApi(s: SshSession, p: HaproxyProxy, command: string): Promise<string> {
  const socat = `${p.sudo ? 'sudo -n ' : ''}${cmd(p.socat, 'stdio', `UNIX-CONNECT:${p.adminSocket}`)}`;
  return s.run(socat, { stdin: `${command}\n`, timeoutMs: 30_000, what: `HAProxy runtime API "${command}" on ${p.adminSocket}` });
}

async function showServers(s: SshSession, p: HaproxyProxy): Promise<BackendServer[]> {
  const answer = await runtimeApi(s, p, `show servers state ${p.backend}`);
  try {
    return parseServersState(answer, p.backend);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`HAProxy on ${p.host.name}, backend ${p.backend}: ${(err as Error).message}`, 'ProxyStateUnreadable');
  }
}

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
