/**
 * HAProxy's runtime API over its admin socket, reached through SSH (socat, the command on stdin:
 * nothing of it reaches a shell), and its `show servers state` list read by the header's column
 * names. Shared by the Firely proxy switch and the IRIS switchover's load-balancer check.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { SshHost } from '../../contracts/ssh';
import { cmd } from './shell';
import type { SshSession } from './ssh';

/** What the runtime API is reached through: the admin socket on a host, and one backend. */
export interface HaproxyAdmin { host: SshHost; adminSocket: string; socat: string; sudo: boolean; backend: string }

/** srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited or resolver maintenance; forced or inherited drain. Config maintenance alone (0x04, `disabled` then `ready`) serves. */
const ADMIN_MAINT = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN = 0x08 | 0x10;
const OP_RUNNING = 2;
/** What the worker reads of an answer: more is not a server list this runbook can act on. */
export const MAX_ANSWER = 1_000_000;
export const serverName = /^[A-Za-z0-9_.:-]{1,64}$/;

export interface BackendServer { name: string; addr: string; port: number; fqdn?: string; admin: 'ready' | 'drain' | 'maint'; running: boolean }

/** host:port as the input spells it (IPv6 in brackets). */
export const endpoint = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
export const spellings = (s: BackendServer) => [endpoint(s.addr, s.port), `${s.addr}:${s.port}`, ...(s.fqdn ? [`${s.fqdn}:${s.port}`] : [])];
export const describeServers = (list: BackendServer[]) => list.map((s) => `${s.name} ${endpoint(s.addr, s.port)} (${s.admin})`).join(', ') || 'none';

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
export async function runtimeApi(s: SshSession, p: HaproxyAdmin, command: string): Promise<string> {
  const socat = `${p.sudo ? 'sudo -n ' : ''}${cmd(p.socat, 'stdio', `UNIX-CONNECT:${p.adminSocket}`)}`;
  return s.run(socat, { stdin: `${command}\n`, timeoutMs: 30_000, what: `HAProxy runtime API "${command}" on ${p.adminSocket}` });
}

export async function showServers(s: SshSession, p: HaproxyAdmin): Promise<BackendServer[]> {
  const answer = await runtimeApi(s, p, `show servers state ${p.backend}`);
  try {
    return parseServersState(answer, p.backend);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`HAProxy on ${p.host.name}, backend ${p.backend}: ${(err as Error).message}`, 'ProxyStateUnreadable');
  }
}

