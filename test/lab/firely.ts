/**
 * The Firely migration lab: the old and the new Firely Server (simulators, test/sims/firely) each
 * on its own FerretDB database, and a proxy host (netns.ts: its own address and sshd) running a
 * real nginx in front of them, configured as an operator would: the upstream in an include file
 * of its own, and the upstream's address in an X-Upstream response header.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startFirelyServer, type FirelySim } from '../sims/firely/control';
import { startFerretDb, type FerretDb } from '../support/ferretdb';
import { ensureUser, startNetwork, waitForPort, type NetnsHost } from './netns';

export const PROXY_USER = { name: 'proxyadmin', uid: 51880 };
export const PROXY_SSH_KEY_SECRET = 'lab-proxy-ssh';
const IN_HOST_NGINX = '/etc/nginx-firely';
const PROXY_PORT = 8080;

export interface FirelyLab {
  proxy: NetnsHost;
  /** Clients' base URL: through nginx. */
  proxyUrl: string;
  old: FirelySim;
  new: FirelySim;
  oldDb: FerretDb;
  newDb: FerretDb;
  /** host:port of a server as nginx reaches it. */
  upstreamOf(server: FirelySim): string;
  /** The upstream nginx has now, read from its include file. */
  currentUpstream(): string;
  proxyInput(): Record<string, unknown>;
  stop(): Promise<void>;
}

const upstreamConf = (server: string) => `upstream firely {\n    server ${server};\n}\n`;

export async function startFirelyLab(opts: { secretsDir: string }): Promise<FirelyLab> {
  ensureUser(PROXY_USER.name, PROXY_USER.uid);
  const dir = mkdtempSync('/tmp/rbfirely-');
  chmodSync(dir, 0o755);
  mkdirSync(opts.secretsDir, { mode: 0o700, recursive: true });
  const key = path.join(opts.secretsDir, PROXY_SSH_KEY_SECRET);
  if (!existsSync(key)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'runbooks-firely-lab', '-f', key]);
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(`${key}.pub`));
  const net = startNetwork(dir, path.join(dir, 'authorized_keys'));
  const stops: Array<() => Promise<void>> = [async () => net.stop()];
  try {
    const [oldDb, newDb] = await Promise.all([startFerretDb(), startFerretDb()]);
    stops.push(() => oldDb.stop(), () => newDb.stop());
    const server = (name: string, version: string, db: FerretDb) =>
      startFirelyServer({ name, version, mongoUrl: db.uri('vonkdata'), stateDir: path.join(dir, name), listen: net.bridgeAddress, port: 0 });
    const [oldServer, newServer] = await Promise.all([server('old', '5.11.0', oldDb), server('new', '6.1.0', newDb)]);
    stops.push(() => oldServer.stop(), () => newServer.stop());
    const upstreamOf = (s: FirelySim) => new URL(s.baseUrl).host;

    const nginxDir = path.join(dir, 'p', 'nginx');
    mkdirSync(path.join(nginxDir, 'tmp'), { recursive: true });
    const proxy = net.addHost({ name: 'p', octet: 2, user: PROXY_USER.name, mounts: [[nginxDir, IN_HOST_NGINX]], env: { PATH: '/usr/sbin:/usr/bin:/bin' } });
    writeFileSync(path.join(nginxDir, 'upstream.conf'), upstreamConf(upstreamOf(oldServer)));
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
      proxy, proxyUrl: `http://${proxy.address}:${PROXY_PORT}`, old: oldServer, new: newServer, oldDb, newDb, upstreamOf,
      currentUpstream: () => /server\s+([^\s;]+)/.exec(readFileSync(path.join(nginxDir, 'upstream.conf'), 'utf8'))?.[1] ?? '',
      proxyInput: () => ({
        kind: 'nginx',
        host: { name: 'proxy', address: proxy.address, ssh: { user: PROXY_USER.name, hostKey: proxy.hostKey, privateKey: { secret: PROXY_SSH_KEY_SECRET } } },
        upstreamFile: `${IN_HOST_NGINX}/upstream.conf`, configFile: `${IN_HOST_NGINX}/nginx.conf`, nginx: '/usr/sbin/nginx',
        verifyUrl: `http://${proxy.address}:${PROXY_PORT}/metadata`,
      }),
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
