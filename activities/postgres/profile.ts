/**
 * Host profiles: the commands one installation layout needs to stop, start, fence and inspect a
 * PostgreSQL cluster and its application. Every command is a ready shell string built with `cmd`.
 */
import path from 'node:path';
import { cmd, shq } from '../lib/shell';
import type { PgHost } from '../../contracts/postgres/schema';

export interface HostProfile {
  /** Exit 0 when the database server runs. */
  dbRunning: string;
  /** Stops the database, waiting at most `seconds`; exits non-zero when it is still running then. */
  stopDb(mode: 'fast' | 'immediate', seconds?: number): string;
  /** Kills the postmaster and whatever it left, and waits until they are gone: the last resort of a fence. */
  killDb: string;
  startDb: string;
  stopApp?: string;
  startApp?: string;
  /** Exit 0 when the application runs (when the layout can tell). */
  appRunning?: string;
  /** The application's own health answer, asked on the host after it is started (when the layout has one). */
  appHealth?: { url: string; withinSeconds: number };
  /** Nothing restarts the database on its own any more (restart policy, marker, systemd mask). */
  disableRestart: string;
  enableRestart: string;
  restartDisabled: string;
  /** Whatever starts the data directory (a person, cron, systemd, docker), it comes up read-only in recovery. */
  fenceDataDir: string;
  dataDirFenced: string;
  /** Undo of fenceDataDir, for a run that rolls back before the promotion. */
  liftDataDirFence: string;
  /** Once the host is a real standby again: drop what the fence kept for its undo. */
  forgetDataDirFence: string;
  /** A PostgreSQL client tool (pg_basebackup, pg_rewind, pg_controldata), run where it sees the data directory; `job` names its container. */
  tool(name: string, args: string[], env?: Record<string, string>, job?: string): string;
  /** Stops what `tool` started for `job` when killing its process is not enough (a container). */
  stopTool?(job: string): string;
  /** The data directory: on the host (for moves), and as the database and its tools see it. */
  dataDir: string;
  dataDirForDb: string;
  /** The replication passfile: on the host, and as the database sees it (primary_conninfo). */
  passfile: string;
  passfileForDb: string;
  /** pg_hba.conf: on the host (from the input, never from the database), and as the database reports it. */
  hbaFile: string;
  hbaFileForDb: string;
  /** For moves of the data directory itself (sudo on the docker layout). */
  asAdmin(command: string): string;
  /** For files inside the data directory: as the user who owns the data directory, never as root. */
  asDbOwner(command: string): string;
  /**
   * Writes stdin to a file for the database user: as that user, or, in a directory only root may
   * write, as root handing the file over before it appears (see writeFileCommand).
   */
  writeForDb(file: string, mode: string): string;
}

const FENCE_MARK = 'runbooks.fenced';
const FENCE_CONNINFO = "primary_conninfo = '' # runbooks fence: no upstream";
const AUTO_CONF_SAVED = 'postgresql.auto.conf.before-runbooks-fence';

/** A user's command in a subshell of its own lines: a trailing comment or `exit` cannot swallow what follows. */
const userCommand = (c: string | undefined) => (c ? `(\n${c}\n)` : undefined);

/** Polls `running` until it fails (the process is gone), at most `seconds`. */
const untilStopped = (running: string, seconds: number) =>
  `i=0; while ${running} >/dev/null 2>&1; do i=$((i+1)); [ "$i" -le ${seconds * 10} ] || exit 1; sleep 0.1; done`;

/** standby.signal plus an empty upstream: the cluster starts read-only in recovery and follows nobody. */
function dataDirFence(dir: string) {
  const at = (f: string) => shq(path.posix.join(dir, f));
  return {
    fenceDataDir: `cd ${shq(dir)} && test ! -L standby.signal && test ! -L postgresql.auto.conf && ` +
      `{ test -e ${AUTO_CONF_SAVED} || cp -p postgresql.auto.conf ${AUTO_CONF_SAVED}; } && touch standby.signal && ` +
      `{ grep -qxF ${shq(FENCE_CONNINFO)} postgresql.auto.conf || printf '%s\\n' ${shq(FENCE_CONNINFO)} >> postgresql.auto.conf; }`,
    dataDirFenced: `test -f ${at('standby.signal')} && grep -qxF ${shq(FENCE_CONNINFO)} ${at('postgresql.auto.conf')}`,
    liftDataDirFence: `cd ${shq(dir)} && rm -f standby.signal && { test ! -e ${AUTO_CONF_SAVED} || mv -f ${AUTO_CONF_SAVED} postgresql.auto.conf; }`,
    forgetDataDirFence: `rm -f ${at(AUTO_CONF_SAVED)}`,
  };
}

export function profileOf(host: PgHost): HostProfile {
  const p = host.profile;
  if (p.kind === 'pg_ctl') {
    const pgCtl = (...args: string[]) => cmd(path.posix.join(p.binDir, 'pg_ctl'), '-D', p.dataDir, ...args);
    const mark = path.posix.join(path.posix.dirname(p.dataDir), `${path.posix.basename(p.dataDir)}.${FENCE_MARK}`);
    const passfile = path.posix.join(path.posix.dirname(p.dataDir), '.runbooks-replication.pgpass');
    const pidFile = shq(path.posix.join(p.dataDir, 'postmaster.pid'));
    const systemctl = (...args: string[]) => (p.systemd ? `${p.systemd.sudo ? 'sudo -n ' : ''}${cmd('systemctl', ...args, p.systemd.unit)}` : undefined);
    const hbaFile = p.hbaFile ?? path.posix.join(p.dataDir, 'pg_hba.conf');
    const masked = p.systemd ? `test "$(${systemctl('is-enabled')})" = masked` : undefined;
    return {
      dbRunning: pgCtl('status'),
      stopDb: (mode, seconds = 300) => pgCtl('stop', '-m', mode, '-w', '-t', String(seconds)),
      // The children first (they are re-parented once the postmaster is gone), then the postmaster.
      killDb: `pid=$(head -1 ${pidFile} 2>/dev/null); [ -n "$pid" ] || exit 0; kids=$(pgrep -P "$pid"); ` +
        `kill -KILL "$pid" 2>/dev/null; [ -z "$kids" ] || kill -KILL $kids 2>/dev/null; ${untilStopped('kill -0 "$pid"', 30)}`,
      startDb: `test ! -e ${shq(mark)} || { echo ${shq(`fenced by runbooks: ${mark}`)} >&2; exit 3; }; ` +
        (p.systemd ? systemctl('start')! : pgCtl('start', '-w', '-t', '300', '-l', p.logFile ?? `${p.dataDir}.log`)),
      stopApp: userCommand(p.appStop), startApp: userCommand(p.appStart),
      disableRestart: [cmd('touch', mark), systemctl('mask')].filter(Boolean).join(' && '),
      enableRestart: [cmd('rm', '-f', mark), systemctl('unmask')].filter(Boolean).join(' && '),
      restartDisabled: [cmd('test', '-e', mark), masked].filter(Boolean).join(' && '),
      ...dataDirFence(p.dataDir),
      tool: (name, args, env = {}) => [...Object.entries(env).map(([k, v]) => `${k}=${shq(v)}`), cmd(path.posix.join(p.binDir, name), ...args)].join(' '),
      dataDir: p.dataDir, dataDirForDb: p.dataDir, passfile, passfileForDb: passfile, hbaFile, hbaFileForDb: hbaFile,
      asAdmin: (c) => c,
      asDbOwner: (c) => c,
      writeForDb: (file, mode) => writeFileCommand(file, mode),
    };
  }
  const sudo = p.sudo ? 'sudo -n ' : '';
  const docker = (...args: string[]) => `${sudo}${cmd('docker', ...args)}`;
  const db = 'openelisglobal-database';
  const app = ['openelisglobal-webapp', 'external-fhir-api', 'openelisglobal-proxy', 'openelisglobal-frontend'];
  const all = [db, ...app, 'autoheal-oe'];
  const mounts = ['-v', `${p.dataDir}:${p.containerDataDir}`, '-v', `${p.backupsDir}:${p.containerBackupsDir}`];
  const dbRunning = `test "$(${docker('inspect', '-f', '{{.State.Running}}', db)})" = true`;
  const restartPolicy = `"$(${docker('inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', db)})"`;
  // Tools run in the database container's own image unless the input names one: their version is the server's.
  const image = p.image ? shq(p.image) : `"$(${docker('inspect', '-f', '{{.Config.Image}}', db)})"`;
  return {
    dbRunning,
    // docker stop sends the image's stop signal (SIGINT: a fast shutdown), then SIGKILL after the timeout.
    stopDb: (mode, seconds = 300) => (mode === 'fast' ? docker('stop', '-t', String(seconds), db)
      : `${docker('kill', '-s', 'QUIT', db)} >/dev/null && { ${untilStopped(dbRunning, seconds)}; }`),
    killDb: `{ ! ${dbRunning} || ${docker('kill', '-s', 'KILL', db)} >/dev/null; } && { ${untilStopped(dbRunning, 30)}; }`,
    startDb: `test ${restartPolicy} != no || { echo "fenced: restart policy of ${db} is no" >&2; exit 3; }; ${docker('start', db)}`,
    // autoheal first, or it restarts what we stop.
    stopApp: docker('stop', 'autoheal-oe', ...app),
    startApp: docker('start', ...app, 'autoheal-oe'),
    appRunning: `test "$(${docker('inspect', '-f', '{{.State.Running}}', app[0])})" = true`,
    appHealth: { url: p.healthUrl, withinSeconds: p.healthWithinSeconds },
    disableRestart: docker('update', '--restart=no', ...all),
    enableRestart: docker('update', '--restart=always', db),
    restartDisabled: `test ${restartPolicy} = no`,
    ...dataDirFence(p.dataDir),
    // -u postgres: the image's postgres user (uid 999 in the official image), the owner of the data directory.
    tool: (name, args, env = {}, job) => `${docker('run', '--rm', ...(job ? ['--name', `runbooks-${job}`] : []), '--network', 'host', '-u', 'postgres', ...mounts,
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]))} ${image} ${cmd(name, ...args)}`,
    stopTool: (job) => docker('rm', '-f', `runbooks-${job}`),
    dataDir: p.dataDir, dataDirForDb: p.containerDataDir,
    passfile: path.posix.join(p.backupsDir, '.runbooks-replication.pgpass'),
    passfileForDb: path.posix.join(p.containerBackupsDir, '.runbooks-replication.pgpass'),
    hbaFile: path.posix.join(p.dataDir, 'pg_hba.conf'),
    hbaFileForDb: path.posix.join(p.containerDataDir, 'pg_hba.conf'),
    asAdmin: (c) => (p.sudo ? `sudo -n sh -c ${shq(c)}` : c),
    asDbOwner: (c) => (p.sudo ? `sudo -n -u "#$(stat -c %u ${shq(p.dataDir)})" sh -c ${shq(c)}` : c),
    writeForDb: (file, mode) => (!p.sudo ? writeFileCommand(file, mode)
      : `u=$(stat -c %u ${shq(p.dataDir)}) && if [ "$(stat -c %u ${shq(path.posix.dirname(file))})" = 0 ]; ` +
        `then sudo -n env RB_UID="$u" sh -c ${shq(writeFileCommand(file, mode, '"$RB_UID"'))}; ` +
        `else sudo -n -u "#$u" sh -c ${shq(writeFileCommand(file, mode))}; fi`),
  };
}

/**
 * Writes stdin to `file` as the user running the command: never through a symlink, into a
 * directory that is not a link and belongs to that user or root, by a temporary file and a
 * rename. With `chownTo` (a uid expression) the file is handed to that user before the rename.
 */
export function writeFileCommand(file: string, mode: string, chownTo?: string): string {
  const dir = path.posix.dirname(file);
  const fail = (why: string) => `{ echo ${shq(`refusing to write ${file}: ${why}`)} >&2; exit 4; }`;
  return `test -d ${shq(dir)} && test ! -L ${shq(dir)} || ${fail(`${dir} is not a plain directory`)}; ` +
    `o=$(stat -c %u ${shq(dir)}); [ "$o" = 0 ] || [ "$o" = "$(id -u)" ] || ${fail(`${dir} belongs to another user`)}; ` +
    `test ! -L ${shq(file)} || ${fail('it is a symbolic link')}; ` +
    `umask 077 && t=$(mktemp ${shq(`${dir}/.runbooks.XXXXXX`)}) && cat > "$t" && chmod ${mode} "$t" && ` +
    `${chownTo ? `chown ${chownTo} "$t" && ` : ''}mv -f -T "$t" ${shq(file)}`;
}
