/**
 * A lab of two PostgreSQL 15 hosts, each in its own network namespace with its own address,
 * its own sshd (pinned host key) and its own cluster, joined by a bridge the worker reaches.
 * Needs root (network namespaces, sshd). Processes in the namespaces run as `postgres`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Client as PgClient } from 'pg';

export const PGBIN = '/usr/lib/postgresql/15/bin';
const labBin = path.join(__dirname, 'bin');
export const ADMIN_PASSWORD_SECRET = 'lab-pg-admin';
export const SSH_KEY_SECRET = 'lab-ssh';
export const REPLICATION_SECRET = 'pg-replication';

export interface ShResult { code: number; stdout: string; stderr: string }

/** Where things are as seen on a lab host (each host has its own mount namespace): the OpenELIS layout. */
export const IN_HOST = {
  appDir: '/var/lib/openelis-global',
  pgData: '/var/lib/openelis-global/data',
  backupsDir: '/var/lib/openelis-global/backups',
  socketDir: '/run/postgresql',
  home: '/var/lib/postgresql',
  logFile: '/var/lib/postgresql/postgresql.log',
};

export interface LabHost {
  name: 'a' | 'b';
  ns: string;
  address: string;
  /** The host's files as the test sees them from outside (appDir is mounted at IN_HOST.appDir inside). */
  dir: string;
  appDir: string;
  pgData: string;
  hostKey: string;
  /** The host's RSA key (sshd prefers the ed25519 one). */
  rsaHostKey: string;
  /** Runs a shell command as `postgres` inside the host (not through SSH). */
  sh(cmd: string): ShResult;
  /** SQL from the test (outside the host) as the superuser, over the lab network. */
  sql<R = Record<string, unknown>>(text: string, params?: unknown[], database?: string): Promise<R[]>;
  isUp(): boolean;
  dockerCommands(): string[];
  /** What a Docker daemon restart (e.g. a reboot) would do: start every container whose restart policy says so. */
  simulateDaemonRestart(): void;
}

export interface Lab {
  dir: string;
  adminPassword: string;
  a: LabHost;
  b: LabHost;
  secretsDir: string;
  /** Environment for the worker: where it finds the lab's secrets. */
  workerEnv: Record<string, string>;
  replicationPassword: string;
  stop(): Promise<void>;
}

const run = (cmd: string, args: string[], input?: string) => execFileSync(cmd, args, { encoding: 'utf8', input, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
const tryRun = (cmd: string, args: string[]) => { try { run(cmd, args); } catch { /* already gone */ } };

const HOSTS_FILE = '/etc/hosts';
const hostsTag = (pid: number) => `# runbooks-lab ${pid}`;

/**
 * A host name for a lab address, resolvable by the worker and by the lab hosts alike (they share
 * /etc/hosts). Tagged with the test process's pid, removed by the returned function, and by
 * cleanStaleLabs if that process died.
 */
export function addHostName(name: string, address: string): () => void {
  writeFileSync(HOSTS_FILE, `${readFileSync(HOSTS_FILE, 'utf8').replace(/\n?$/, '\n')}${address} ${name} ${hostsTag(process.pid)}\n`);
  return () => writeFileSync(HOSTS_FILE, readFileSync(HOSTS_FILE, 'utf8').split('\n').filter((l) => !(l.includes(` ${name} `) && l.endsWith(hostsTag(process.pid)))).join('\n'));
}

/** Removes namespaces and bridges left by a lab whose test process died. */
export function cleanStaleLabs(): void {
  const hosts = readFileSync(HOSTS_FILE, 'utf8').split('\n');
  const kept = hosts.filter((l) => { const m = /# runbooks-lab (\d+)$/.exec(l); return !m || existsSync(`/proc/${m[1]}`); });
  if (kept.length !== hosts.length) writeFileSync(HOSTS_FILE, kept.join('\n'));
  const namespaces = run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]);
  for (const ns of namespaces) {
    const m = /^rbl(\d+)x(\d+)[ab]$/.exec(ns);
    if (!m || existsSync(`/proc/${m[1]}`)) continue; // not a lab's, or its test process is alive
    killNamespace(ns);
    tryRun('ip', ['link', 'del', `rbl${m[1]}x${m[2]}br`]);
  }
}

function killNamespace(ns: string): void {
  try {
    for (const pid of run('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) tryRun('kill', ['-9', pid]);
  } catch { /* gone */ }
  tryRun('ip', ['netns', 'del', ns]);
}

let labCount = 0;

/**
 * Starts a lab. `secretsDir` lets several labs share one set of secrets (one worker for all of them);
 * by default each lab makes its own inside its directory.
 */
export async function startLab(opts: { standby?: 'initialized' | 'empty'; secretsDir?: string } = {}): Promise<Lab> {
  if (process.getuid?.() !== 0) throw new Error('The PostgreSQL lab needs root (network namespaces, sshd): run the suite through ./scripts/test.sh as root');
  cleanStaleLabs();
  const id = `${process.pid}x${labCount}`;
  // Labs that run at once (parallel jest workers, a benchmark) get distinct subnets.
  const subnet = `10.${212 + Number(process.env.JEST_WORKER_ID ?? 0)}.${labCount++ % 250}`;
  const dir = mkdtempSync('/tmp/rblab-');
  chmodSync(dir, 0o755);
  const secretsDir = opts.secretsDir ?? path.join(dir, 'secrets');
  mkdirSync(secretsDir, { mode: 0o700, recursive: true });
  mkdirSync('/run/sshd', { recursive: true });

  // The worker's SSH key, and the secrets it resolves by name.
  if (!existsSync(path.join(secretsDir, SSH_KEY_SECRET))) {
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'runbooks-lab', '-f', path.join(secretsDir, SSH_KEY_SECRET)]);
    writeFileSync(path.join(secretsDir, ADMIN_PASSWORD_SECRET), `admin-${Math.random().toString(36).slice(2)}`, { mode: 0o600 });
    writeFileSync(path.join(secretsDir, REPLICATION_SECRET), `repl-${Math.random().toString(36).slice(2)}-x`, { mode: 0o600 });
  }
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(path.join(secretsDir, `${SSH_KEY_SECRET}.pub`)));
  const adminPassword = readFileSync(path.join(secretsDir, ADMIN_PASSWORD_SECRET), 'utf8');
  const replicationPassword = readFileSync(path.join(secretsDir, REPLICATION_SECRET), 'utf8');

  const bridge = `rbl${id}br`;
  run('ip', ['link', 'add', bridge, 'type', 'bridge']);
  run('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
  run('ip', ['link', 'set', bridge, 'up']);

  const sshds: ChildProcess[] = [];
  const sshdLogs = new Map<string, () => string>();
  const makeHost = (name: 'a' | 'b', octet: number): LabHost => {
    const ns = `rbl${id}${name}`;
    const address = `${subnet}.${octet}`;
    run('ip', ['netns', 'add', ns]);
    run('ip', ['link', 'add', `${ns}0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    run('ip', ['link', 'set', `${ns}0`, 'master', bridge, 'up']);
    const inNs = (...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
    inNs('ip', 'link', 'set', 'lo', 'up');
    inNs('ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    inNs('ip', 'link', 'set', 'eth0', 'up');

    const hostDir = path.join(dir, name);
    const appDir = path.join(hostDir, 'openelis-global');
    const mounts: Array<[string, string]> = [[appDir, IN_HOST.appDir], [path.join(hostDir, 'home'), IN_HOST.home], [path.join(hostDir, 'run'), IN_HOST.socketDir]];
    for (const d of [hostDir, ...mounts.flatMap(([outside, inside]) => [outside, inside]), path.join(appDir, 'backups'), path.join(appDir, 'secrets'), path.join(appDir, 'volume', 'plugins')]) mkdirSync(d, { recursive: true });
    // What an OpenELIS install directory holds besides the database.
    writeFileSync(path.join(appDir, 'docker-compose.yml'), `# OpenELIS on host ${name}\nservices: {}\n`);
    writeFileSync(path.join(appDir, 'volume', 'plugins', 'site-plugin.txt'), `plugin config of ${name}\n`);
    writeFileSync(path.join(appDir, 'secrets', 'datasource.password'), `secret-of-${name}\n`);
    writeFileSync(path.join(appDir, 'backups', 'nightly.sql'), `backup of ${name}\n`);
    const stateDir = path.join(hostDir, 'docker-state');
    writeFileSync(path.join(hostDir, 'docker.env'),
      `PGDATA=${IN_HOST.pgData}\nPGBIN=${PGBIN}\nPGLOG=${IN_HOST.logFile}\nSTATE=${stateDir}\n`);
    run('chown', ['-R', 'postgres:postgres', hostDir]);

    // sshd with a pinned host key; sessions get the docker stand-in first on PATH.
    const hostKeyFile = path.join(hostDir, 'ssh_host_ed25519_key');
    const rsaKeyFile = path.join(hostDir, 'ssh_host_rsa_key');
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKeyFile]);
    run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsaKeyFile]);
    const fingerprint = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKeyFile}.pub`]).split(' ')[1];
    const rsaFingerprint = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${rsaKeyFile}.pub`]).split(' ')[1];
    const sshdConfig = path.join(hostDir, 'sshd_config');
    writeFileSync(sshdConfig, [
      `ListenAddress ${address}`, 'Port 22', `HostKey ${hostKeyFile}`, `HostKey ${rsaKeyFile}`, `PidFile ${path.join(hostDir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`, 'StrictModes no', 'PasswordAuthentication no',
      'KbdInteractiveAuthentication no', 'UsePAM yes', 'PermitRootLogin no', 'AllowUsers postgres', 'AllowStreamLocalForwarding yes',
      'AllowTcpForwarding yes', 'MaxSessions 50', 'MaxStartups 50:30:100',
      `SetEnv PATH=${labBin}:${PGBIN}:/usr/local/bin:/usr/bin:/bin DOCKER_STANDIN_ENV=${path.join(hostDir, 'docker.env')}`,
    ].join('\n') + '\n');
    // Its own mount namespace too: the same paths as a real OpenELIS host, different files behind them.
    const binds = mounts.map(([outside, inside]) => `mount --bind ${outside} ${inside}`).join(' && ');
    // tini as a subreaper, as init is on a real host: a killed postmaster is reaped at once, not left a zombie.
    const sshd = spawn('ip', ['netns', 'exec', ns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c',
      `${binds} && exec /usr/bin/tini -s -- /usr/sbin/sshd -D -e -f ${sshdConfig}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    sshds.push(sshd);
    let sshdLog = '';
    sshd.stderr!.on('data', (d: Buffer) => { if (sshdLog.length < 20_000) sshdLog += d; });
    sshdLogs.set(name, () => sshdLog);

    const pgData = path.join(appDir, 'data');
    const sh = (cmd: string): ShResult => {
      try {
        const stdout = execFileSync('nsenter', ['-t', String(sshd.pid), '-m', '-n', '/usr/sbin/runuser', '-u', 'postgres', '--', 'bash', '-c', cmd], {
          encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: `${labBin}:${PGBIN}:/usr/bin:/bin`, DOCKER_STANDIN_ENV: path.join(hostDir, 'docker.env'), HOME: IN_HOST.home },
        });
        return { code: 0, stdout, stderr: '' };
      } catch (err) {
        const e = err as { status: number; stdout: string; stderr: string };
        return { code: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    };
    return {
      name, ns, address, dir: hostDir, appDir, pgData, hostKey: fingerprint, rsaHostKey: rsaFingerprint, sh,
      async sql(text, params, database = 'postgres') {
        const client = new PgClient({ host: address, port: 5432, user: 'postgres', password: adminPassword, database, connectionTimeoutMillis: 20_000 });
        // A server that dies mid-query also emits 'error' on the client: the query's rejection reports it.
        client.on('error', () => undefined);
        await client.connect();
        try { return (await client.query(text, params)).rows; } finally { await client.end(); }
      },
      isUp: () => sh(`pg_ctl -D ${IN_HOST.pgData} status`).code === 0,
      dockerCommands: () => (existsSync(path.join(stateDir, 'commands.log')) ? readFileSync(path.join(stateDir, 'commands.log'), 'utf8').split('\n').filter(Boolean) : []),
      simulateDaemonRestart() {
        for (const c of ['openelisglobal-database', 'openelisglobal-webapp', 'external-fhir-api', 'autoheal-oe', 'openelisglobal-proxy', 'openelisglobal-frontend']) {
          const policy = sh(`docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' ${c}`).stdout.trim();
          if (policy === 'always') sh(`docker start ${c}`);
        }
      },
    };
  };

  const a = makeHost('a', 2);
  const b = makeHost('b', 3);
  const initCluster = (h: LabHost) => {
    const pwfile = path.join(h.dir, 'home', '.pwfile');
    writeFileSync(pwfile, adminPassword);
    chownSync(pwfile, Number(run('id', ['-u', 'postgres']).trim()), 0);
    const init = h.sh(`initdb -D ${IN_HOST.pgData} -U postgres --auth-local=peer --auth-host=scram-sha-256 --pwfile=${IN_HOST.home}/.pwfile >/dev/null && rm ${IN_HOST.home}/.pwfile`);
    if (init.code !== 0) throw new Error(`initdb on ${h.name} failed: ${init.stderr}`);
    writeFileSync(path.join(h.pgData, 'postgresql.conf'), [
      readFileSync(path.join(h.pgData, 'postgresql.conf'), 'utf8'),
      "listen_addresses = '*'", 'port = 5432', `unix_socket_directories = '${IN_HOST.socketDir}'`,
    ].join('\n') + '\n');
    writeFileSync(path.join(h.pgData, 'pg_hba.conf'), `${readFileSync(path.join(h.pgData, 'pg_hba.conf'), 'utf8')}host all postgres ${subnet}.1/32 scram-sha-256\n`);
    const started = h.sh('docker start openelisglobal-database openelisglobal-webapp external-fhir-api autoheal-oe openelisglobal-proxy openelisglobal-frontend');
    if (started.code !== 0) throw new Error(`starting ${h.name} failed: ${started.stderr}`);
    h.sh(`rm -f ${path.join(h.dir, 'docker-state', 'commands.log')}`);
  };
  await waitForSsh([a, b], (h) => sshdLogs.get(h)?.() ?? '');
  initCluster(a);
  if ((opts.standby ?? 'initialized') === 'initialized') initCluster(b);

  const lab: Lab = {
    dir, a, b, secretsDir, replicationPassword, adminPassword,
    workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
    async stop() {
      for (const h of [a, b]) h.sh(`pg_ctl -D ${IN_HOST.pgData} stop -m immediate`);
      for (const s of sshds) s.kill('SIGKILL');
      for (const h of [a, b]) killNamespace(h.ns);
      tryRun('ip', ['link', 'del', bridge]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return lab;
}

async function waitForSsh(hosts: LabHost[], logOf: (host: string) => string): Promise<void> {
  const { connect } = await import('node:net');
  for (const h of hosts) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(22, h.address, () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`sshd on lab host ${h.name} (${h.address}) did not start: ${logOf(h.name).trim().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
