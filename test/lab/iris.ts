/**
 * A Health Connect mirror pair for the IRIS runbooks: two lab hosts (netns.ts) with sshd, each
 * running the IRIS simulator (test/sims/iris) as `irisowner` (uid 51773, as in the IRIS images)
 * with its databases under /usr/irissys/mgr, joined in the mirror HEALTHCONNECT (A primary, B
 * backup), and nginx in front of both as the load balancer (a member answering 503 to
 * /csp/mirror_status.cxw is passed over, as the procedure's HAProxy does with its health check).
 *
 * A host can be the container deployment instead: `docker exec -i healthconnect-<n> ...` through
 * the lab's docker stand-in (test/lab/iris-bin/docker), which runs the command against that
 * container's instance.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentialMatches, setFaults, swapRoles, crash, passwordMatches } from '../sims/iris/admin';
import type { Faults } from '../sims/iris/faults';
import { loadState, type InstanceState } from '../sims/iris/state';
import { freePort } from '../support/global-setup';
import { ensureUser, startNetwork, waitForPort, type NetnsHost, type ShResult } from './netns';

export const IRIS_OWNER = { name: 'irisowner', uid: 51773, gid: 51773 };
export const IRIS_SSH_KEY_SECRET = 'lab-iris-ssh';
export const HS_SERVICES_SECRET = 'hs-services';
export const MGR_DIR = '/usr/irissys/mgr';
export const HSSYS_DIR = `${MGR_DIR}/hssys/`;
export const MIRROR = 'HEALTHCONNECT';
export const STATUS_PORT = 52773;

const simBin = path.join(__dirname, '..', 'sims', 'iris', 'bin');
const labBin = path.join(__dirname, 'iris-bin');
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export interface IrisLabHost extends NetnsHost {
  /** The instance's home (instance.json, journal.json), the same path inside and outside. */
  home: string;
  /** Its databases' directory as the test sees it (bound to /usr/irissys/mgr inside). */
  mgr: string;
  /** The node name (healthconnect-0 / -1) and, in the container form, the container name. */
  node: string;
  container?: string;
  /** Runs ObjectScript in a session on the host, as irisowner (not through the runbook's SSH). */
  session(ns: string, script: string): ShResult;
  state(): InstanceState;
  /** IRIS.DAT of HSSYS as the test sees it. */
  hssysDat: string;
  faults(f: Faults): void;
  /** The instance crashes (no failover, no health check). */
  crash(): void;
}

export interface IrisLab {
  dir: string;
  a: IrisLabHost;
  b: IrisLabHost;
  /** The load balancer's base URL (nginx on the worker's side). */
  lbUrl: string;
  secretsDir: string;
  hsServicesPassword: string;
  /** A becomes backup, B primary: the picture after an earlier failover. */
  swapRoles(): void;
  passwordMatches(h: IrisLabHost, password: string): boolean;
  /** The HS_Services interoperability credential in HSLIB has this password. */
  credentialMatches(h: IrisLabHost, password: string): boolean;
  stop(): Promise<void>;
  /** With `haproxy`: the runbook's loadBalancer input, and the backend's servers as the admin socket lists them. */
  haproxy?: { input: { [k: string]: unknown }; servers(): string; command(c: string): string };
}

export interface IrisLabOptions {
  secretsDir: string;
  /** Hosts reached through `docker exec` (the procedure's container deployment). */
  containers?: Array<'a' | 'b'>;
  /**
   * Debian's HAProxy on a third host (as the simplemirror seed's internal LB): backend `iris`, the
   * members' superserver port 1972 as servers healthconnect-0/-1, health-checked with
   * GET /csp/mirror_status.cxw (200 only on the primary); its admin socket reached over SSH.
   */
  haproxy?: boolean;
}

export async function startIrisLab(opts: IrisLabOptions): Promise<IrisLab> {
  ensureUser(IRIS_OWNER.name, IRIS_OWNER.uid);   // the user the IRIS images run as
  const dir = mkdtempSync('/tmp/rbiris-');
  chmodSync(dir, 0o755);
  const { secretsDir } = opts;
  mkdirSync(secretsDir, { mode: 0o700, recursive: true });
  if (!existsSync(path.join(secretsDir, IRIS_SSH_KEY_SECRET))) {
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'runbooks-iris-lab', '-f', path.join(secretsDir, IRIS_SSH_KEY_SECRET)]);
    writeFileSync(path.join(secretsDir, HS_SERVICES_SECRET), `hs-${Math.random().toString(36).slice(2)}"quote'$x`, { mode: 0o600 });
  }
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(path.join(secretsDir, `${IRIS_SSH_KEY_SECRET}.pub`)));
  const hsServicesPassword = readFileSync(path.join(secretsDir, HS_SERVICES_SECRET), 'utf8');
  // Bundle the simulator once as root, so every session on the hosts runs the bundle.
  try { run(path.join(simBin, 'iris'), ['list']); } catch { /* no instance here: only the bundle was wanted */ }
  const net = startNetwork(dir, path.join(dir, 'authorized_keys'));
  const containersFile = path.join(dir, 'containers');
  writeFileSync(containersFile, '');

  const makeHost = (name: 'a' | 'b', octet: number): IrisLabHost => {
    const hostDir = path.join(dir, name);
    const home = path.join(hostDir, 'iris-home');
    const mgr = path.join(hostDir, 'mgr');
    const userHome = path.join(hostDir, 'home');
    const node = `healthconnect-${octet - 2}`;
    const container = opts.containers?.includes(name) ? node : undefined;
    for (const d of [hostDir, home, mgr, userHome]) mkdirSync(d, { recursive: true });
    if (container) writeFileSync(containersFile, `${readFileSync(containersFile, 'utf8')}${container}=${home}\n`);
    const host = net.addHost({
      name, octet, user: IRIS_OWNER.name, mounts: [[mgr, MGR_DIR], [userHome, `/home/${IRIS_OWNER.name}`]],
      env: {
        PATH: `${labBin}:${container ? '' : `${simBin}:`}/usr/local/bin:/usr/bin:/bin`, IRIS_SIM_LISTEN: `${net.subnet}.${octet}`,
        IRIS_DOCKER_CONTAINERS: containersFile, IRIS_SIM_BIN: simBin, ...(container ? {} : { IRIS_SIM_HOME: home }),
      },
    });
    const asRoot = (cmd: string) => {
      const r = host.sh(cmd, { user: 'root', env: { PATH: `${simBin}:/usr/bin:/bin` } });
      if (r.code !== 0) throw new Error(`on lab host ${name}: ${cmd}: ${r.stderr}`);
    };
    asRoot(`iris-sim create --home ${home} --instance IRIS --node ${node} --mgr-dir ${MGR_DIR} --port ${STATUS_PORT} --owner ${IRIS_OWNER.uid}:${IRIS_OWNER.gid}`);
    return {
      ...host, home, mgr, node, container, hssysDat: path.join(mgr, 'hssys', 'IRIS.DAT'),
      session: (ns, script) => host.sh(`iris session IRIS -U '${ns}'`, { env: { PATH: `${simBin}:/usr/bin:/bin`, IRIS_SIM_HOME: home, IRIS_SIM_LISTEN: host.address, HOME: `/home/${IRIS_OWNER.name}` }, input: `${script}\nhalt\n` }),
      state: () => loadState(home),
      faults: (f) => setFaults(home, f),
      crash: () => crash(home),
    };
  };

  const a = makeHost('a', 2);
  const b = makeHost('b', 3);
  const haDir = path.join(dir, 'p', 'haproxy');
  const proxyHost = opts.haproxy ? (mkdirSync(haDir, { recursive: true }), net.addHost({ name: 'p', octet: 4, user: IRIS_OWNER.name, mounts: [[haDir, IN_HOST_HAPROXY]], env: { PATH: '/usr/sbin:/usr/bin:/bin' } })) : undefined;
  for (const [self, peer, role, member, peerMember] of [[a, b, 'Primary', `${MIRROR}_A`, `${MIRROR}_B`], [b, a, 'Backup', `${MIRROR}_B`, `${MIRROR}_A`]] as const) {
    const r = self.sh(`iris-sim join-mirror --home ${self.home} --mirror ${MIRROR} --role ${role} --member ${member} --address ${self.address} ` +
      `--peer-member ${peerMember} --peer-address ${peer.address} --peer-home ${peer.home}`, { user: 'root', env: { PATH: `${simBin}:/usr/bin:/bin` } });
    if (r.code !== 0) throw new Error(`join-mirror on ${self.name}: ${r.stderr}`);
  }
  run('chown', ['-R', `${IRIS_OWNER.uid}:${IRIS_OWNER.gid}`, a.dir, b.dir]);
  await net.waitForSsh();
  for (const h of [a, b]) {
    const r = h.sh(`iris start IRIS`, { env: { PATH: `${simBin}:/usr/bin:/bin`, IRIS_SIM_HOME: h.home, IRIS_SIM_LISTEN: h.address } });
    if (r.code !== 0) throw new Error(`iris start on ${h.name}: ${r.stdout}${r.stderr}`);
    await waitForPort(h.address, STATUS_PORT, () => `the mirror_status.cxw server on ${h.name} did not start`);
  }
  const lb = await startLoadBalancer(dir, [a.address, b.address]);
  const haproxy = proxyHost ? await startHaproxy(haDir, proxyHost, [a, b]) : undefined;

  return {
    dir, a, b, secretsDir, hsServicesPassword, lbUrl: lb.url, haproxy,
    swapRoles: () => swapRoles(a.state().mirror?.role === 'Primary' ? a.home : b.home),
    passwordMatches: (h, password) => passwordMatches(h.home, 'HS_Services', password),
    credentialMatches: (h, password) => credentialMatches(h.home, 'HSLIB', 'HS_Services', 'HS_Services', password),
    async stop() {
      // SIGTERM: nginx's fast shutdown takes its workers with it (a SIGKILLed master leaves them running).
      const gone = new Promise((resolve) => lb.process.once('exit', resolve));
      lb.process.kill('SIGTERM');
      await gone;
      if (proxyHost) proxyHost.sh(`kill -TERM "$(cat ${IN_HOST_HAPROXY}/haproxy.pid)"`);
      for (const h of [a, b]) h.sh('iris stop IRIS quietly', { env: { PATH: `${simBin}:/usr/bin:/bin`, IRIS_SIM_HOME: h.home } });
      net.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** nginx on loopback in front of both members: a 503 (a backup) sends the request on to the other. */
async function startLoadBalancer(dir: string, members: string[]): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const prefix = path.join(dir, 'nginx');
  mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(conf, `worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy; fastcgi_temp_path ${prefix}/fastcgi; uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  upstream healthconnect { ${members.map((m) => `server ${m}:${STATUS_PORT} max_fails=0;`).join(' ')} }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://healthconnect; proxy_next_upstream error timeout http_503; proxy_connect_timeout 2s; proxy_read_timeout 10s; }
  }
}
`);
  const proc = spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: 'ignore' });
  await waitForPort('127.0.0.1', port, () => `nginx (the load balancer) did not start: ${readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8')}`);
  return { url: `http://127.0.0.1:${port}`, process: proc };
}

const IN_HOST_HAPROXY = '/etc/haproxy-iris';

async function startHaproxy(haDir: string, proxy: NetnsHost, members: IrisLabHost[]): Promise<NonNullable<IrisLab['haproxy']>> {
  const socket = `${IN_HOST_HAPROXY}/admin.sock`;
  writeFileSync(path.join(haDir, 'haproxy.cfg'), `global
  maxconn 256
  pidfile ${IN_HOST_HAPROXY}/haproxy.pid
  stats socket ${socket} mode 600 level admin

defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 1s

frontend superserver
  bind ${proxy.address}:1972
  default_backend iris

backend iris
  option httpchk GET /csp/mirror_status.cxw
  http-check expect status 200
${members.map((m) => `  server ${m.node} ${m.address}:1972 check port ${STATUS_PORT} inter 200 fall 1 rise 1`).join('\n')}
`);
  execFileSync('chown', ['-R', `${IRIS_OWNER.uid}:${IRIS_OWNER.gid}`, haDir]);
  const started = proxy.sh(`haproxy -D -f ${IN_HOST_HAPROXY}/haproxy.cfg 2>&1`);
  if (started.code !== 0) throw new Error(`haproxy on the proxy host did not start: ${started.stdout}${started.stderr}`);
  await waitForPort(proxy.address, 1972, () => 'haproxy did not listen');
  const command = (c: string) => {
    const r = proxy.sh(`socat stdio UNIX-CONNECT:${socket}`, { input: `${c}\n` });
    if (r.code !== 0) throw new Error(`the lab's admin socket: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  return {
    input: {
      host: { name: 'haproxy', address: proxy.address, ssh: { port: 22, user: IRIS_OWNER.name, hostKey: proxy.hostKey, privateKey: { secret: IRIS_SSH_KEY_SECRET } } },
      adminSocket: socket, backend: 'iris', socat: '/usr/bin/socat',
      primaryServer: members[0].node, backupServer: members[1].node,
    },
    servers: () => command('show servers state iris'),
    command,
  };
}

/** A member as an operator would write it in a runbook's input. */
export function irisNodeInput(h: IrisLabHost) {
  return {
    name: h.node, address: h.address,
    ssh: { port: 22, user: IRIS_OWNER.name, hostKey: h.hostKey, privateKey: { secret: IRIS_SSH_KEY_SECRET } },
    instance: 'IRIS',
    // The lab's status server stands in for the member's Web Gateway path to mirror_status.cxw.
    mirrorStatusUrl: `http://${h.address}:${STATUS_PORT}/csp/mirror_status.cxw`,
    ...(h.container ? { container: { name: h.container } } : {}),
  };
}

export function mirrorHssysInputFor(lab: IrisLab, extra: Record<string, unknown> = {}) {
  return {
    primary: irisNodeInput(lab.a), backup: irisNodeInput(lab.b), mirror: MIRROR,
    networkHostName: 'loadbalancer', hsServices: { password: { secret: HS_SERVICES_SECRET } },
    catchUpWithinSeconds: 60, requestedBy: 'alice', ...extra,
  };
}
