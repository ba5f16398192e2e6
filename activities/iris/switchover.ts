/**
 * A planned switchover of a mirror pair: both members healthy first, then a graceful stop of the
 * primary (the backup takes over), checks through mirror_status.cxw and the load balancer, and the
 * old primary started again until it is the caught-up backup.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { request } from 'undici';
import type { ChangeReport } from '../../contracts/messages';
import { statusUrlOf, type IrisLoadBalancer, type IrisNode } from '../../contracts/iris/schema';
import { describeServers, showServers, type BackendServer } from '../lib/haproxy';
import { onSshHost } from '../lib/ssh-pool';
import { KiB, MiB, readLimited } from '../lib/http';
import { cmd } from '../lib/shell';
import { healthy, inspectMember, mirrorDatabaseNames, type MemberState } from './inspect';
import { checkMirrorPair, type PairRequest } from './preflight';
import { checkStatus, onInstance, onNode, osString, runScript } from './session';
import { refuse } from '../../contracts/refuse';

/** The names of the mirror's databases as the member lists them (bare, whichever form the query gives). */
async function mirroredDatabases(node: IrisNode, mirror: string): Promise<string[]> {
  const r = await runScript(node, '%SYS', [
    'set m="",rs=##class(%ResultSet).%New("SYS.Mirror:MirroredDatabaseList") do rs.Execute() while rs.Next() { set m=m_rs.Get("Name")_"," } do o.%Set("names",m)',
  ]);
  return mirrorDatabaseNames(r.names, mirror);
}

/**
 * What is not healthy on a backup: databases not active and caught up, missing, or with no database
 * of that name at all (the mirror's name for a database is its name unless AddDatabase was given
 * another: a database the backup cannot find is a problem, never a database skipped).
 */
function backupProblems(state: MemberState, mirror: string): string[] {
  const missing = new Set(state.missing);
  return [
    ...Object.values(state.databases).filter((db) => !missing.has(db.name) && !healthy(db, mirror))
      .map((db) => (db.dir ? `${db.name} is not active and caught up` : `${db.name} has no database of that name`)),
    ...state.missing.map((name) => `${name} is missing`),
  ];
}

/** mirror_status.cxw answers a word ("SUCCESS", "FAILED"); an application's health page a few KiB. */
const statusPageBytes = 64 * KiB;
const applicationPageBytes = 1 * MiB;

/**
 * GET a URL with a time limit for the whole answer and a size limit: its status and the start of
 * its body, or why there was no answer (a body past `maxBytes` is cut there and is no answer).
 */
export async function probe(url: string, timeoutMs = 5_000, maxBytes = statusPageBytes): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    const body = (await readLimited(res.body, maxBytes)).slice(0, 200);
    return { status: res.statusCode, body };
  } catch (err) {
    const e = err as Error;
    return { error: e.name === 'TimeoutError' ? `no whole answer within ${timeoutMs / 1000} s, the most a probe waits` : e.message };
  }
}

const describe = (r: Awaited<ReturnType<typeof probe>>) => ('error' in r ? `no answer (${r.error})` : `${r.status} ${r.body.trim()}`);

/**
 * What a member says of the mirror's failover readiness: its arbiter (Config.Mirrors ArbiterNode,
 * 'address|port', '' when none is configured) and SYS.Mirror.IsFailoverReady(), which is $lb(1) when
 * "the backup should take over if the primary fails" (the backup active, its mirrored databases
 * active, and "if the arbiter is configured the mirror must be in arbiter controlled mode": both
 * failover members connected to the arbiter), else $lb(0,reason). Class reference, IRIS 2024.1.
 */
async function failoverReadiness(node: IrisNode, mirror: string): Promise<{ arbiter: string; ready: boolean; reason: string }> {
  const r = await runScript(node, '%SYS', [
    `kill p ${checkStatus(`##class(Config.Mirrors).Get(${osString(mirror)},.p)`, `reading mirror ${mirror}'s configuration`)}`,
    'do o.%Set("arbiter",$get(p("ArbiterNode")))',
    'set r=##class(SYS.Mirror).IsFailoverReady() do o.%Set("ready",+$listget(r,1)),o.%Set("reason",$listget(r,2))',
  ]);
  return { arbiter: String(r.arbiter ?? '').trim(), ready: r.ready === 1 || r.ready === '1', reason: String(r.reason ?? '').slice(0, 300) };
}

/**
 * Would the backup take over, and how protected is the mirror: refused unless both failover members
 * say the mirror is failover-ready; with an arbiter that means both are connected to it. A graceful
 * stop of the primary makes the active backup take over with or without an arbiter (HA Guide,
 * "Automatic Failover in Response to Primary Outage Scenarios", 1), so a pair without one is not
 * refused, but named as a risk: after the switch, a lost host or network on the new primary cannot
 * fail over automatically (scenarios 5 and 6).
 */
async function checkFailoverReady(r: PairRequest): Promise<{ arbiter?: string; risks: string[] }> {
  const refused = (message: string) => refuse(`Switchover refused: ${message}.`);
  const [p, b] = await Promise.all([r.primary, r.backup].map((n) => failoverReadiness(n, r.mirror)));
  if (p.arbiter !== b.arbiter) {
    throw refused(`the members name different arbiters for mirror ${r.mirror} (${r.primary.name}: "${p.arbiter}", ${r.backup.name}: "${b.arbiter}"): fix the mirror configuration first`);
  }
  const arbiter = p.arbiter || undefined;
  const notReady = ([[r.primary, p], [r.backup, b]] as const).filter(([, v]) => !v.ready);
  if (notReady.length) {
    throw refused(`mirror ${r.mirror} is not ready to fail over (SYS.Mirror.IsFailoverReady): ${notReady.map(([n, v]) => `${n.name} says "${v.reason || 'not ready'}"`).join('; ')}` +
      (arbiter ? `; with an arbiter configured (${arbiter}) both failover members must be connected to it, which the Mirror Monitor's "Arbiter Connection Status" shows` : ''));
  }
  return {
    arbiter,
    risks: arbiter ? [] : [`no arbiter is configured for mirror ${r.mirror}: the graceful stop still hands over to the backup, but afterwards a lost host or network on the new primary cannot fail over automatically`],
  };
}

/** A server a client is sent to now: not in drain or maintenance, and UP by its health check. */
const routed = (s: BackendServer) => s.admin === 'ready' && s.running;

/**
 * What keeps the HAProxy backend in front of the superserver port (1972) from sending clients to
 * `to` only: `to` not ready or DOWN, `notTo` missing from the backend, any other server ready and
 * UP. Read through the runtime API (`show servers state`); nothing is changed.
 */
async function routingProblems(lb: IrisLoadBalancer, to: string, notTo: string): Promise<string[]> {
  const servers = await onSshHost(lb.host, (s) => showServers(s, lb));
  const where = `HAProxy backend ${lb.backend} on ${lb.host.name}`;
  const problems: string[] = [];
  for (const name of [to, notTo]) if (!servers.some((x) => x.name === name)) problems.push(`${where} has no server ${name} (it has: ${describeServers(servers)})`);
  const target = servers.find((x) => x.name === to);
  if (target && !routed(target)) problems.push(`${where} does not route to ${to}: it is ${target.admin}${target.running ? '' : ', DOWN by its health check'}`);
  const others = servers.filter((x) => x.name !== to && routed(x));
  if (others.length) problems.push(`${where} also routes to ${others.map((x) => x.name).join(', ')} (ready and UP)`);
  return problems;
}

/** Both members healthy and the backup caught up on every mirrored database; the health checks agree. */
export async function preflightSwitchover(r: PairRequest & { loadBalancer?: IrisLoadBalancer }): Promise<{ databases: string[]; arbiter?: string; risks: string[] }> {
  const refused = (message: string) => refuse(`Switchover refused: ${message}.`);
  // The old default (http://<address>:52773/...) is the private web server, which recent IRIS no longer
  // has; the seeds reach mirror_status.cxw through a Web Gateway. Only the operator knows that URL.
  const unnamed = [r.primary, r.backup].filter((n) => !n.mirrorStatusUrl).map((n) => n.name);
  if (unnamed.length) {
    throw refused(`no mirrorStatusUrl for ${unnamed.join(' and ')}: name each member's mirror_status.cxw as the load balancer's health check reaches it, ` +
      'usually through that member\'s Web Gateway (e.g. http://webgw1:8080/ap1a/csp/mirror_status.cxw); recent IRIS has no private web server on port 52773');
  }
  await checkMirrorPair(r);
  const databases = await mirroredDatabases(r.primary, r.mirror);
  const backup = await inspectMember(r.backup, r.mirror, databases);
  const problems = backupProblems(backup, r.mirror);
  if (problems.length) throw refused(`the backup ${r.backup.name} is not ready to take over: ${problems.join(', ')}`);
  const { arbiter, risks } = await checkFailoverReady(r);
  const [p, b] = await Promise.all([probe(statusUrlOf(r.primary)), probe(statusUrlOf(r.backup))]);
  if ('error' in p || p.status !== 200) throw refused(`${statusUrlOf(r.primary)} answers ${describe(p)}, not 200 SUCCESS`);
  if ('error' in b || b.status !== 503) throw refused(`${statusUrlOf(r.backup)} answers ${describe(b)}, not 503`);
  if (r.loadBalancer) {
    const problems = await routingProblems(r.loadBalancer, r.loadBalancer.primaryServer, r.loadBalancer.backupServer);
    if (problems.length) throw refused(`the load balancer does not send clients to the primary ${r.primary.name} only: ${problems.join('; ')}`);
  }
  return { databases, arbiter, risks };
}

/**
 * How to stop and start the instance: `iris stop <instance> quietly` / `iris start <instance> quietly`,
 * in the container form inside the container (`docker exec`), as the seeds do (`iris restart` in
 * healthconnect-0; `docker-compose exec ap1a iris stop iris quietly` in simplemirror). Never `docker
 * stop`: it ends the container, and its ISCAgent with it, so a backup without an arbiter cannot tell
 * a stopped primary from a lost network and stays the backup (test/sims/iris/README.md, sources).
 */
function lifecycle(node: IrisNode, what: 'stop' | 'start'): string {
  return onInstance(node, cmd('iris', what, node.instance, 'quietly'));
}

/** A graceful stop, after which the backup takes over. */
export async function stopInstance(r: { node: IrisNode; dryRun: boolean }): Promise<ChangeReport> {
  if (r.dryRun) return { changed: false, actions: [`would stop ${r.node.instance} on ${r.node.name} (graceful: the backup takes over)`] };
  const out = await onNode(r.node, (s) => s.exec(lifecycle(r.node, 'stop'), { timeoutMs: 10 * 60_000 }));
  if (out.code !== 0) throw new Error(`iris stop on ${r.node.name} failed (exit ${out.code}): ${(out.stderr || out.stdout).trim()}`);
  if (/is not running/.test(out.stdout)) return { changed: false, actions: [] };
  return { changed: true, actions: [`stopped ${r.node.instance} on ${r.node.name}`] };
}

export async function startInstance(r: { node: IrisNode; dryRun: boolean }): Promise<ChangeReport> {
  if (r.dryRun) return { changed: false, actions: [`would start ${r.node.instance} on ${r.node.name}`] };
  const out = await onNode(r.node, (s) => s.exec(lifecycle(r.node, 'start'), { timeoutMs: 10 * 60_000 }));
  if (out.code !== 0) throw new Error(`iris start on ${r.node.name} failed (exit ${out.code}): ${(out.stderr || out.stdout).trim()}`);
  if (/is already running/.test(out.stdout)) return { changed: false, actions: [] };
  return { changed: true, actions: [`started ${r.node.instance} on ${r.node.name}`] };
}

/** Polls until the member has the role, is Active, and (as a backup) has every mirrored database caught up. */
export async function waitForRole(r: { node: IrisNode; mirror: string; role: 'Primary' | 'Backup'; databases: string[]; withinSeconds: number; dryRun: boolean }): Promise<{ seconds: number }> {
  if (r.dryRun) return { seconds: 0 };
  const started = Date.now();
  let last = '';
  for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      const s = await inspectMember(r.node, r.mirror, r.databases);
      const problems = r.role === 'Backup' ? backupProblems(s, r.mirror) : [];
      if (s.role === r.role && s.memberStatus === 'Active' && !problems.length) return { seconds: Math.round((Date.now() - started) / 1000) };
      last = `${s.role || 'no role'} (${s.memberStatus || 'no status'})${problems.length ? `; ${problems.join(', ')}` : ''}`;
    } catch (err) {
      last = (err as Error).message.slice(0, 300);
    }
    if (Date.now() - started > r.withinSeconds * 1000) {
      throw ApplicationFailure.nonRetryable(`${r.node.name} is not the active ${r.role} after ${r.withinSeconds} s: ${last}`, 'RoleNotReached');
    }
    Context.current().heartbeat();
    await Context.current().sleep(wait);
  }
}

/** The health checks and the application through the load balancer, as clients see them. */
export async function verifyFromOutside(r: OutsideRequest & { withinSeconds: number; dryRun: boolean }): Promise<{ primary: string; application?: number }> {
  if (r.dryRun) return { primary: r.primary.name };
  // A load balancer notices a new primary at its next health check: ask again until the deadline.
  const started = Date.now();
  for (let wait = 250; ; wait = Math.min(wait * 2, 5_000)) {
    const { problems, application } = await lookFromOutside(r);
    if (!problems.length) return { primary: r.primary.name, application };
    // The wait was the retry: trying again would only keep the old primary down (the run starts it once this ends).
    if (Date.now() - started > r.withinSeconds * 1000) {
      throw ApplicationFailure.nonRetryable(`Not as it should be ${r.withinSeconds} s after the switch: ${problems.join('; ')}`, 'NotSeenFromOutside');
    }
    Context.current().heartbeat();
    await Context.current().sleep(wait);
  }
}

interface OutsideRequest {
  primary: IrisNode;
  others: IrisNode[];
  applicationUrl?: string;
  /** The HAProxy backend in front of the superserver port: it must send clients to server `to` only. */
  haproxy?: { lb: IrisLoadBalancer; to: string; notTo: string };
}

async function lookFromOutside(r: OutsideRequest): Promise<{ problems: string[]; application?: number }> {
  const problems: string[] = [];
  const p = await probe(statusUrlOf(r.primary));
  if ('error' in p || p.status !== 200 || !/SUCCESS/.test(p.body)) problems.push(`${statusUrlOf(r.primary)} answers ${describe(p)}, not 200 SUCCESS`);
  for (const other of r.others) {
    const o = await probe(statusUrlOf(other));
    if ('error' in o || o.status !== 503) problems.push(`${statusUrlOf(other)} answers ${describe(o)}, not 503`);
  }
  let application: number | undefined;
  if (r.applicationUrl) {
    const a = await probe(r.applicationUrl, 10_000, applicationPageBytes);
    application = 'error' in a ? undefined : a.status;
    if (!application || application < 200 || application > 299) problems.push(`${r.applicationUrl} answers ${describe(a)}`);
  }
  if (r.haproxy) {
    // Its health check notices the new primary within its interval: asked again until the deadline.
    problems.push(...await routingProblems(r.haproxy.lb, r.haproxy.to, r.haproxy.notTo)
      .catch((err: Error) => [`HAProxy backend ${r.haproxy!.lb.backend} on ${r.haproxy!.lb.host.name} cannot be read: ${err.message.slice(0, 300)}`]));
  }
  return { problems, application };
}
