/**
 * The Firely migration lab: the old and the new Firely Server (simulators, test/sims/firely) each
 * on its own FerretDB database, and a proxy host (netns.ts: its own address and sshd) running a
 * real nginx in front of them, configured as an operator would: the upstream in an include file
 * of its own, and the upstream's address in an X-Upstream response header. With `proxy: 'haproxy'`
 * the proxy host runs Debian's HAProxy instead: one backend with both servers (the new one
 * `disabled`), its runtime API on an admin socket the proxy user owns, the same X-Upstream header.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { FSI_BIN, startFirelyServer, TOKENS, writeLicense, type FirelySim } from '../sims/firely/control';
import type { IngestFaults } from '../sims/firely/faults';
import { startFerretDb, type FerretDb } from '../support/ferretdb';
import { ensureUser, startNetwork, waitForPort, type LabNetwork, type NetnsHost } from './netns';

export const PROXY_USER = { name: 'proxyadmin', uid: 51880 };
/** The migration host's user: runs fsi, and (as the old server's own user) may stop the old server. */
export const FIRELY_USER = { name: 'firelyadmin', uid: 51881 };
export const PROXY_SSH_KEY_SECRET = 'lab-proxy-ssh';
const IN_HOST_OPT = '/opt/firely';
const IN_HOST_VAR = '/var/lib/firely-migration';
/** How often the lab's fsi polls its source (the real tool: every 5 s). */
export const FSI_POLL_MS = 100;
const IN_HOST_NGINX = '/etc/nginx-firely';
const IN_HOST_HAPROXY = '/etc/haproxy-firely';
const PROXY_PORT = 8080;

export interface FirelyLab {
  proxy: NetnsHost;
  /** Which reverse proxy the proxy host runs. */
  proxyKind: 'nginx' | 'haproxy';
  /** Where the ingest tool runs (and the old server's stop command). */
  migration: NetnsHost;
  /** The license file on the migration host: rewrite it with `writeLabLicense`. */
  licenseFile: string;
  writeLabLicense(plugins: string[]): void;
  /** The ingest tool's crash knob on the migration host (FSI_SIM_FAULTS). */
  setFsiFaults(f: IngestFaults): void;
  /** The journal directory (as the test sees it). */
  journalDir: string;
  /** Writes Patients and Observations to the old server directly; resolves with the Patients' ids. */
  seed(patients: number, observations: number): Promise<string[]>;
  /** A whole migrateFirelyServer input for this lab. */
  migrationInput(over?: Record<string, unknown>): Record<string, unknown>;
  /** Clients' base URL: through nginx. */
  proxyUrl: string;
  old: FirelySim;
  new: FirelySim;
  oldDb: FerretDb;
  newDb: FerretDb;
  /** host:port of a server as nginx reaches it. */
  upstreamOf(server: FirelySim): string;
  /** The upstream nginx has now, read from its include file; with HAProxy: the backend's servers in state ready (comma-separated if several). */
  currentUpstream(): string;
  proxyInput(): Record<string, unknown>;
  stop(): Promise<void>;
}

const upstreamConf = (server: string) => `upstream firely {\n    server ${server};\n}\n`;

export async function startFirelyLab(opts: { secretsDir: string; proxy?: 'nginx' | 'haproxy' }): Promise<FirelyLab> {
  const proxyKind = opts.proxy ?? 'nginx';
  ensureUser(PROXY_USER.name, PROXY_USER.uid);
  ensureUser(FIRELY_USER.name, FIRELY_USER.uid);
  const dir = mkdtempSync('/tmp/rbfirely-');
  chmodSync(dir, 0o755);
  mkdirSync(opts.secretsDir, { mode: 0o700, recursive: true });
  const key = path.join(opts.secretsDir, PROXY_SSH_KEY_SECRET);
  if (!existsSync(key)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'runbooks-firely-lab', '-f', key]);
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(`${key}.pub`));
  const net = startNetwork(dir, path.join(dir, 'authorized_keys'));
  const stops: Array<() => Promise<void>> = [async () => net.stop()];
  try {
    // On the bridge: the migration host reaches both databases.
    const [oldDb, newDb] = await Promise.all([startFerretDb({ listen: net.bridgeAddress }), startFerretDb({ listen: net.bridgeAddress })]);
    stops.push(() => oldDb.stop(), () => newDb.stop());
    const as = { uid: FIRELY_USER.uid, gid: FIRELY_USER.uid };
    const server = (name: string, version: string, db: FerretDb) => {
      // Its own state directory: it writes its fault knobs' counters there.
      mkdirSync(path.join(dir, name));
      execFileSync('chown', [`${as.uid}:${as.gid}`, path.join(dir, name)]);
      return startFirelyServer({ name, version, mongoUrl: db.uri('vonkdata'), stateDir: path.join(dir, name), listen: net.bridgeAddress, port: 0, as });
    };
    const [oldServer, newServer] = await Promise.all([server('old', '5.11.0', oldDb), server('new', '6.1.0', newDb)]);
    stops.push(() => oldServer.stop(), () => newServer.stop());
    const upstreamOf = (s: FirelySim) => new URL(s.baseUrl).host;

    // The migration host: fsi on the PATH, its license and the old server's stop script in /opt/firely, the journal under /var/lib.
    const mDir = path.join(dir, 'm');
    const [optDir, varDir, homeDir] = ['opt', 'var', 'home'].map((d) => path.join(mDir, d));
    for (const d of [optDir, varDir, homeDir]) mkdirSync(d, { recursive: true });
    const licenseFile = path.join(optDir, 'license.json');
    const writeLabLicense = (plugins: string[]) => { writeLicense(licenseFile, plugins); execFileSync('chown', [`${FIRELY_USER.uid}:${FIRELY_USER.uid}`, licenseFile]); };
    writeLabLicense([TOKENS.bulkImport, TOKENS.unlimited, TOKENS.migration]);
    writeFileSync(path.join(optDir, 'old.pid'), `${oldServer.proc.child.pid}\n`);
    writeFileSync(path.join(optDir, 'stop-old-server'), `#!/bin/sh\nkill "$(cat ${IN_HOST_OPT}/old.pid)"\n`, { mode: 0o755 });
    execFileSync('chown', ['-R', `${FIRELY_USER.uid}:${FIRELY_USER.uid}`, mDir]);
    const migration = net.addHost({
      name: 'm', octet: 3, user: FIRELY_USER.name, mounts: [[optDir, IN_HOST_OPT], [varDir, IN_HOST_VAR], [homeDir, `/home/${FIRELY_USER.name}`]],
      env: { PATH: `${path.dirname(FSI_BIN)}:/usr/bin:/bin`, FSI_SIM_POLL_INTERVAL_MS: String(FSI_POLL_MS), FSI_SIM_FAULTS: `${IN_HOST_OPT}/fsi-faults.json` },
    });

    const sshOf = (h: NetnsHost, name: string, user: string) => ({ name, address: h.address, ssh: { user, hostKey: h.hostKey, privateKey: { secret: PROXY_SSH_KEY_SECRET } } });
    const { proxy, proxyInput, currentUpstream } = proxyKind === 'haproxy'
      ? await startHaproxy(dir, net, [upstreamOf(oldServer), upstreamOf(newServer)], stops, sshOf)
      : await startNginx(dir, net, upstreamOf(oldServer), stops, sshOf);
    const database = (db: FerretDb) => ({ connectionString: db.uri('vonkdata'), collection: 'vonkentries' });
    return {
      migration, licenseFile, writeLabLicense, journalDir: path.join(varDir, 'journal'),
      setFsiFaults: (f) => { const file = path.join(optDir, 'fsi-faults.json'); writeFileSync(file, JSON.stringify(f)); execFileSync('chown', [`${FIRELY_USER.uid}:${FIRELY_USER.uid}`, file]); },
      seed: (patients, observations) => seedServer(oldServer.baseUrl, patients, observations),
      migrationInput: (over = {}) => ({
        requestedBy: 'alice',
        oldServer: {
          baseUrl: oldServer.baseUrl, upstream: upstreamOf(oldServer), database: database(oldDb),
          stop: { host: sshOf(migration, 'migration', FIRELY_USER.name), command: [`${IN_HOST_OPT}/stop-old-server`] },
        },
        newServer: { baseUrl: newServer.baseUrl, upstream: upstreamOf(newServer), database: database(newDb), expectedVersion: '6' },
        migrationHost: sshOf(migration, 'migration', FIRELY_USER.name),
        ingest: { license: `${IN_HOST_OPT}/license.json`, journalDir: `${IN_HOST_VAR}/journal`, minFreeMegabytes: 1, mongoBatch: 200 },
        proxy: proxyInput(),
        resourceTypes: ['Patient', 'Observation'],
        ...over,
      }),
      proxy, proxyKind, proxyUrl: `http://${proxy.address}:${PROXY_PORT}`, old: oldServer, new: newServer, oldDb, newDb, upstreamOf,
      currentUpstream, proxyInput,
      async stop() {
        for (const stop of stops.reverse()) await stop().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

type SshOf = (h: NetnsHost, name: string, user: string) => Record<string, unknown>;
interface LabProxy { proxy: NetnsHost; proxyInput(): Record<string, unknown>; currentUpstream(): string }

/** nginx on the proxy host: the upstream in an include file, first pointing at `first`. */
async function startNginx(dir: string, net: LabNetwork, first: string, stops: Array<() => Promise<void>>, sshOf: SshOf): Promise<LabProxy> {
  const nginxDir = path.join(dir, 'p', 'nginx');
  mkdirSync(path.join(nginxDir, 'tmp'), { recursive: true });
  const proxy = net.addHost({ name: 'p', octet: 2, user: PROXY_USER.name, mounts: [[nginxDir, IN_HOST_NGINX]], env: { PATH: '/usr/sbin:/usr/bin:/bin' } });
  writeFileSync(path.join(nginxDir, 'upstream.conf'), upstreamConf(first));
  writeFileSync(path.join(nginxDir, 'nginx.conf'), `worker_processes 2;
pid ${IN_HOST_NGINX}/nginx.pid;
error_log ${IN_HOST_NGINX}/error.log;
events { worker_connections 1024; }
http {
access_log off;
client_body_temp_path ${IN_HOST_NGINX}/tmp/body; proxy_temp_path ${IN_HOST_NGINX}/tmp/proxy; fastcgi_temp_path ${IN_HOST_NGINX}/tmp/fastcgi; uwsgi_temp_path ${IN_HOST_NGINX}/tmp/uwsgi; scgi_temp_path ${IN_HOST_NGINX}/tmp/scgi;
include ${IN_HOST_NGINX}/upstream.conf;
server {
  listen ${proxy.address}:${PROXY_PORT};
  location / {
    proxy_pass http://firely;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    add_header X-Upstream $upstream_addr always;
  }
}
}
`);
  execFileSync('chown', ['-R', `${PROXY_USER.uid}:${PROXY_USER.uid}`, path.join(dir, 'p')]);
  await net.waitForSsh();
  const started = proxy.sh(`nginx -c ${IN_HOST_NGINX}/nginx.conf 2>&1`);
  if (started.code !== 0) throw new Error(`nginx on the proxy host did not start: ${started.stdout}${started.stderr}`);
  stops.push(async () => { proxy.sh(`nginx -c ${IN_HOST_NGINX}/nginx.conf -s stop`); });
  await waitForPort(proxy.address, PROXY_PORT, () => `nginx did not listen: ${readFileSync(path.join(nginxDir, 'error.log'), 'utf8')}`);

  return {
    proxy,
    proxyInput: () => ({
      kind: 'nginx',
      host: sshOf(proxy, 'proxy', PROXY_USER.name),
      upstreamFile: `${IN_HOST_NGINX}/upstream.conf`, configFile: `${IN_HOST_NGINX}/nginx.conf`, nginx: '/usr/sbin/nginx',
      verifyUrl: `http://${proxy.address}:${PROXY_PORT}/metadata`,
    }),
    currentUpstream: () => /server\s+([^\s;]+)/.exec(readFileSync(path.join(nginxDir, 'upstream.conf'), 'utf8'))?.[1] ?? '',
  };
}

/**
 * HAProxy on the proxy host, run by the proxy user: backend firely with the old server ready and the
 * new one disabled; the admin socket the proxy user's SSH sessions reach; the server states saved
 * where a reload reads them back (load-server-state-from-file).
 */
async function startHaproxy(dir: string, net: LabNetwork, [oldUp, newUp]: string[], stops: Array<() => Promise<void>>, sshOf: SshOf): Promise<LabProxy> {
  const haDir = path.join(dir, 'p', 'haproxy');
  mkdirSync(haDir, { recursive: true });
  const proxy = net.addHost({ name: 'p', octet: 2, user: PROXY_USER.name, mounts: [[haDir, IN_HOST_HAPROXY]], env: { PATH: '/usr/sbin:/usr/bin:/bin' } });
  const cfg = `${IN_HOST_HAPROXY}/haproxy.cfg`;
  const socket = `${IN_HOST_HAPROXY}/admin.sock`;
  writeFileSync(path.join(haDir, 'haproxy.cfg'), `global
  maxconn 1024
  pidfile ${IN_HOST_HAPROXY}/haproxy.pid
  stats socket ${socket} mode 600 level admin
  server-state-file ${IN_HOST_HAPROXY}/servers.state

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
  load-server-state-from-file global

frontend clients
  bind ${proxy.address}:${PROXY_PORT}
  default_backend firely

backend firely
  http-response set-header X-Upstream %si:%sp
  server old ${oldUp}
  server new ${newUp} disabled
`);
  execFileSync('chown', ['-R', `${PROXY_USER.uid}:${PROXY_USER.uid}`, path.join(dir, 'p')]);
  await net.waitForSsh();
  const started = proxy.sh(`haproxy -D -f ${cfg} 2>&1`);
  if (started.code !== 0) throw new Error(`haproxy on the proxy host did not start: ${started.stdout}${started.stderr}`);
  stops.push(async () => { proxy.sh(`kill -TERM "$(cat ${IN_HOST_HAPROXY}/haproxy.pid)"`); });
  await waitForPort(proxy.address, PROXY_PORT, () => 'haproxy did not listen');
  return {
    proxy,
    proxyInput: () => ({
      kind: 'haproxy',
      host: sshOf(proxy, 'proxy', PROXY_USER.name),
      adminSocket: socket, backend: 'firely', socat: '/usr/bin/socat', stateFile: `${IN_HOST_HAPROXY}/servers.state`,
      verifyUrl: `http://${proxy.address}:${PROXY_PORT}/metadata`,
    }),
    currentUpstream: () => {
      const r = proxy.sh(`echo 'show servers state firely' | socat stdio UNIX-CONNECT:${socket}`);
      if (r.code !== 0) throw new Error(`the lab's admin socket: ${r.stdout}${r.stderr}`);
      return readyServers(r.stdout).join(',');
    },
  };
}

/** The servers of `show servers state` that take new requests: no maintenance (0x23) nor drain (0x18) bit. */
function readyServers(answer: string): string[] {
  const lines = answer.split('\n').filter((l) => l.trim());
  const cols = (lines[1] ?? '').replace(/^#\s*/, '').split(/\s+/);
  const [addr, port, admin] = ['srv_addr', 'srv_port', 'srv_admin_state'].map((c) => cols.indexOf(c));
  return lines.slice(2).map((l) => l.trim().split(/\s+/)).filter((f) => (Number(f[admin]) & 0x3b) === 0).map((f) => `${f[addr]}:${f[port]}`);
}

async function seedServer(baseUrl: string, patients: number, observations: number): Promise<string[]> {
  const post = async (type: string, body: object) => {
    const r = await fetch(`${baseUrl}/${type}`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
    if (r.status !== 201) throw new Error(`seeding ${type}: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { id: string }).id;
  };
  const ids: string[] = [];
  for (let i = 0; i < patients; i++) ids.push(await post('Patient', { resourceType: 'Patient', name: [{ family: `Seed${i}` }], gender: i % 2 ? 'female' : 'male' }));
  for (let i = 0; i < observations; i++) await post('Observation', { resourceType: 'Observation', status: 'final', code: { text: `seed ${i}` } });
  return ids;
}
