/**
 * A lab of two PostgreSQL 15 hosts (netns.ts: each in its own network and mount namespace, with
 * its own sshd and pinned host key), each with its own cluster in the OpenELIS layout.
 * Needs root (network namespaces, sshd). Processes in the namespaces run as `postgres`.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Client as PgClient } from 'pg';
import { startNetwork, type ShResult } from './netns';

export { addHostName, type ShResult } from './netns';

export const PGBIN = '/usr/lib/postgresql/15/bin';
const labBin = path.join(__dirname, 'bin');
/** The images the lab's docker stand-in has: PostgreSQL 15 only (a real OpenELIS runs postgres:14.4). */
export const LAB_IMAGE = 'postgres:15';
/** The webapp stand-in's plain-HTTP port (the compose file publishes 8080 and 8443). */
export const WEBAPP_PORT = 8080;
export const ADMIN_PASSWORD_SECRET = 'lab-pg-admin';
export const SSH_KEY_SECRET = 'lab-ssh';
export const REPLICATION_SECRET = 'pg-replication';

/** Where things are as seen on a lab host (each host has its own mount namespace): the OpenELIS layout. */
export const IN_HOST = {
  appDir: '/var/lib/openelis-global',
  pgData: '/var/lib/openelis-global/data',
  backupsDir: '/var/lib/openelis-global/backups',
  socketDir: '/run/postgresql',
  etcDir: '/etc/openelis-global',
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

/**
 * Starts a lab. `secretsDir` lets several labs share one set of secrets (one worker for all of them);
 * by default each lab makes its own inside its directory.
 */
export async function startLab(opts: { standby?: 'initialized' | 'empty'; secretsDir?: string } = {}): Promise<Lab> {
  const dir = mkdtempSync('/tmp/rblab-');
  chmodSync(dir, 0o755);
  const secretsDir = opts.secretsDir ?? path.join(dir, 'secrets');
  mkdirSync(secretsDir, { mode: 0o700, recursive: true });

  // The worker's SSH key, and the secrets it resolves by name.
  if (!existsSync(path.join(secretsDir, SSH_KEY_SECRET))) {
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'runbooks-lab', '-f', path.join(secretsDir, SSH_KEY_SECRET)]);
    writeFileSync(path.join(secretsDir, ADMIN_PASSWORD_SECRET), `admin-${Math.random().toString(36).slice(2)}`, { mode: 0o600 });
    writeFileSync(path.join(secretsDir, REPLICATION_SECRET), `repl-${Math.random().toString(36).slice(2)}-x`, { mode: 0o600 });
  }
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(path.join(secretsDir, `${SSH_KEY_SECRET}.pub`)));
  const adminPassword = readFileSync(path.join(secretsDir, ADMIN_PASSWORD_SECRET), 'utf8');
  const replicationPassword = readFileSync(path.join(secretsDir, REPLICATION_SECRET), 'utf8');
  const net = startNetwork(dir, path.join(dir, 'authorized_keys'));
  const subnet = net.subnet;

  const makeHost = (name: 'a' | 'b', octet: number): LabHost => {
    const hostDir = path.join(dir, name);
    const appDir = path.join(hostDir, 'openelis-global');
    const etcDir = path.join(hostDir, 'etc-openelis-global');
    const mounts: Array<[string, string]> = [[appDir, IN_HOST.appDir], [path.join(hostDir, 'home'), IN_HOST.home], [path.join(hostDir, 'run'), IN_HOST.socketDir], [etcDir, IN_HOST.etcDir]];
    for (const d of [hostDir, ...mounts.map(([outside]) => outside), path.join(appDir, 'backups'), path.join(appDir, 'secrets'), path.join(appDir, 'volume', 'plugins')]) mkdirSync(d, { recursive: true });
    // What an OpenELIS install directory holds besides the database.
    writeFileSync(path.join(appDir, 'docker-compose.yml'), `# OpenELIS on host ${name}\nservices: {}\n`);
    writeFileSync(path.join(appDir, 'volume', 'plugins', 'site-plugin.txt'), `plugin config of ${name}\n`);
    // The installer generates the webapp's database password per install (setup_OpenELIS.py): each host its own.
    writeFileSync(path.join(appDir, 'secrets', 'datasource.password'), `clinlims-${name}-${Math.random().toString(36).slice(2)}`);
    // The certificates the installer puts in /etc/openelis-global: the same keystore and truststore on both, as the procedure recommends.
    mkdirSync(etcDir, { recursive: true });
    writeFileSync(path.join(etcDir, 'keystore'), `keystore of ${dir}\n`);
    writeFileSync(path.join(etcDir, 'truststore'), `truststore of ${dir}\n`);
    writeFileSync(path.join(etcDir, 'client_facing_keystore'), `client facing keystore of ${name}\n`);
    writeFileSync(path.join(appDir, 'backups', 'nightly.sql'), `backup of ${name}\n`);
    const stateDir = path.join(hostDir, 'docker-state');
    writeFileSync(path.join(hostDir, 'docker.env'),
      `PGDATA=${IN_HOST.pgData}\nPGBIN=${PGBIN}\nPGLOG=${IN_HOST.logFile}\nSTATE=${stateDir}\n` +
      `IMAGES='${LAB_IMAGE}=${PGBIN}'\nDB_IMAGE=${LAB_IMAGE}\n` +
      // The database container's mounts: the compose file's (data, /backups, the home with .pgpass), but the
      // data directory at the host's path, so that the pg_ctl profile drives the same cluster.
      `DB_MOUNTS='${IN_HOST.appDir}:${IN_HOST.appDir} ${IN_HOST.backupsDir}:/backups ${IN_HOST.home}:${IN_HOST.home} ${IN_HOST.socketDir}:${IN_HOST.socketDir}'\n` +
      `WEBAPP=${path.join(__dirname, 'openelis-webapp.py')}\nWEBAPP_PORT=${WEBAPP_PORT}\nSECRETS=${IN_HOST.appDir}/secrets\n`);
    run('chown', ['-R', 'postgres:postgres', hostDir]);

    // Sessions get the docker and systemctl stand-ins first on PATH.
    const host = net.addHost({
      name, octet, user: 'postgres', mounts,
      env: { PATH: `${labBin}:${PGBIN}:/usr/local/bin:/usr/bin:/bin`, DOCKER_STANDIN_ENV: path.join(hostDir, 'docker.env') },
    });
    const pgData = path.join(appDir, 'data');
    const sh = (cmd: string): ShResult => host.sh(cmd, { env: { HOME: IN_HOST.home } });
    const address = host.address;
    return {
      name, ns: host.ns, address, dir: hostDir, appDir, pgData, hostKey: host.hostKey, rsaHostKey: host.rsaHostKey, sh,
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
  const initCluster = async (h: LabHost) => {
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
    const db = h.sh('docker start openelisglobal-database');
    if (db.code !== 0) throw new Error(`starting ${h.name}'s database failed: ${db.stderr}`);
    // The webapp's login, with the password of this host's install.
    const clinlims = readFileSync(path.join(h.appDir, 'secrets', 'datasource.password'), 'utf8');
    await h.sql(`CREATE ROLE clinlims LOGIN PASSWORD '${clinlims}'`); // letters, digits and -: made above
    const started = h.sh('docker start openelisglobal-webapp external-fhir-api autoheal-oe openelisglobal-proxy openelisglobal-frontend');
    if (started.code !== 0) throw new Error(`starting ${h.name} failed: ${started.stderr}`);
    h.sh(`rm -f ${path.join(h.dir, 'docker-state', 'commands.log')}`);
  };
  await net.waitForSsh();
  await initCluster(a);
  if ((opts.standby ?? 'initialized') === 'initialized') await initCluster(b);

  const lab: Lab = {
    dir, a, b, secretsDir, replicationPassword, adminPassword,
    workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
    async stop() {
      for (const h of [a, b]) h.sh(`pg_ctl -D ${IN_HOST.pgData} stop -m immediate`);
      net.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return lab;
}
