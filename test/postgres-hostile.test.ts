/**
 * The PostgreSQL runbooks under a hostile review, against real labs: a malicious SSH peer, a host
 * name as the standby address, a hung old primary (SIGSTOP), cancellation during a real base
 * backup, a re-run after a rejoin, secrets scoped to hosts, planted symlinks, an application
 * directory with extra files, two runs on one cluster, and an RSA host key pin.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { lockWorkflowId } from '../workflows/kit/lock';
import { progressQuery, rejectSignal } from '../contracts/messages';
import { addHostName, IN_HOST, REPLICATION_SECRET, type Lab } from './lab/hosts';
import { hostInput, setupInput, type Profile } from './lab/inputs';
import { streamingPair } from './lab/pair';
import { useLabs } from './lab/suite';
import { startHostileSshServer } from './support/hostile-ssh';
import { eventually } from './support/processes';
import { approveUntilDone, tempDir, waitForGate, waitForProgress } from './support/runs';

const suite = useLabs('hostile');
let seq = 0;

function start(type: 'setupPostgresStandby' | 'promotePostgresStandby', input: unknown, id = `${type}-${suite.queue}-${++seq}`): Promise<WorkflowHandle> {
  return suite.client.workflow.start(type, { taskQueue: suite.queue, workflowId: id, args: [input] });
}
const failureOf = async (handle: WorkflowHandle) => {
  const err = await handle.result().then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  // The run's own failure, or the activity's failure inside it.
  return (err.cause?.cause ?? err.cause) as { message: string; type?: string; nonRetryable?: boolean };
};
const pair = async (kind: Profile) => streamingPair(suite.client, suite.queue, kind, await suite.newLab());
const promoteInput = (lab: Lab, kind: Profile, extra: Record<string, unknown>) => ({
  oldPrimary: hostInput(lab.a, kind), standby: hostInput(lab.b, kind), requestedBy: 'alice', catchupWithinSeconds: 30, ...extra,
});
const inRecovery = async (lab: Lab, h: 'a' | 'b') => (await lab[h].sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r;
const changing = (commands: string[]) => commands.filter((c) => /^docker (stop|kill|update|start|run|rm)/.test(c));

test('a malicious SSH peer (a banner, then malformed packets) fails the run with a clear message and cannot crash the worker', async () => {
  const hostile = await startHostileSshServer();
  const lab = await suite.newLab();
  try {
    const input = setupInput(lab, 'pg_ctl') as Record<string, any>;
    input.primary.address = '127.0.0.1';
    input.primary.ssh.port = hostile.port;
    const cause = await failureOf(await start('setupPostgresStandby', input));
    expect(cause.message).toMatch(/Cannot reach the primary lab-a: Cannot reach lab-a \(127\.0\.0\.1\) over SSH/);
    expect(hostile.connections).toBeGreaterThan(0);
    // The same worker process is alive and serves the next run.
    expect(suite.worker.child.exitCode).toBeNull();
    expect(suite.worker.child.signalCode).toBeNull();
    const plan = await (await start('setupPostgresStandby', { ...setupInput(lab, 'pg_ctl'), dryRun: true })).result();
    expect(plan).toMatchObject({ dryRun: true });
  } finally {
    await hostile.close();
  }
});

test('a host name as the standby address: pg_hba.conf gets its address once, keeps its first backup, and a file PostgreSQL would refuse is never reloaded', async () => {
  const lab = await suite.newLab();
  const name = `lab-b-${process.pid}-${seq}.runbooks.test`;
  const removeName = addHostName(name, lab.b.address);
  try {
    const hba = path.join(lab.a.pgData, 'pg_hba.conf');
    const original = readFileSync(hba, 'utf8');
    const input = setupInput(lab, 'pg_ctl') as Record<string, any>;
    input.standby.address = name;
    const result = await approveUntilDone(await start('setupPostgresStandby', input));
    expect(result).toMatchObject({ streaming: true });
    const line = `host replication replicator ${lab.b.address}/32 scram-sha-256`;
    const once = readFileSync(hba, 'utf8');
    expect(once.split('\n').filter((l) => l === line)).toHaveLength(1);
    expect(once.split('\n').filter((l) => l.includes(name) && !l.startsWith('#'))).toEqual([]);
    expect(readFileSync(`${hba}.before-runbooks`, 'utf8')).toBe(original);

    // Again: nothing appended twice, and the first backup is not overwritten by the changed file.
    await approveUntilDone(await start('setupPostgresStandby', input));
    expect(readFileSync(hba, 'utf8')).toBe(once);
    expect(readFileSync(`${hba}.before-runbooks`, 'utf8')).toBe(original);

    // A file PostgreSQL refuses: the new lines are taken back, nothing is reloaded, the run says why.
    const broken = `${once}host all all not-an-address/99 scram-sha-256\n`;
    writeFileSync(hba, broken);
    const loadedBefore = (await lab.a.sql<{ t: string }>('SELECT pg_conf_load_time()::text AS t'))[0].t;
    const cause = await failureOf(await start('setupPostgresStandby', { ...input, replication: { ...input.replication, user: 'replicator2' } }));
    expect(cause).toMatchObject({ type: 'HbaInvalid', nonRetryable: true });
    expect(cause.message).toContain('the file was put back as it was and not reloaded');
    expect(readFileSync(hba, 'utf8')).toBe(broken);
    expect((await lab.a.sql<{ t: string }>('SELECT pg_conf_load_time()::text AS t'))[0].t).toBe(loadedBefore);
  } finally {
    removeName();
  }
});

test('an old primary that hangs (postmaster stopped with SIGSTOP) is reported as up but not answering, fenced by escalation, and failed over; started by hand it is read-only', async () => {
  const lab = await pair('pg_ctl');
  const appLog = `${IN_HOST.home}/app.log`;
  const withApp = (h: Lab['a']) => {
    const host = hostInput(h, 'pg_ctl') as Record<string, any>;
    // A trailing comment must not swallow what the fence runs after it.
    host.profile.appStop = `echo app stopped >> ${appLog} # stop OpenELIS`;
    // A systemd-managed cluster: the fence masks its unit too.
    host.profile.systemd = { unit: 'postgresql@15-lab.service', sudo: false };
    return host;
  };
  const pid = lab.a.sh(`head -1 ${IN_HOST.pgData}/postmaster.pid`).stdout.trim();
  expect(lab.a.sh(`kill -STOP ${pid}`).code).toBe(0);
  const handle = await start('promotePostgresStandby', {
    ...promoteInput(lab, 'pg_ctl', { mode: 'failover', fenceStopSeconds: 2, promotionApproval: { required: false } }),
    oldPrimary: withApp(lab.a),
  });
  await expect(handle.result()).resolves.toMatchObject({ mode: 'failover', promoted: true, newPrimary: 'lab-b' });
  const p = await handle.query(progressQuery);
  const fence = p.steps.find((s) => s.name === 'fence')!;
  expect(fence.actions.join('\n')).toMatch(/runs but does not answer SQL/);
  expect(fence.actions.join('\n')).toMatch(/killed its postmaster \(SIGKILL\)/);
  expect(lab.a.sh(`kill -0 ${pid}`).code).not.toBe(0);
  expect(lab.a.sh(`cat ${appLog}`).stdout).toBe('app stopped\n');
  expect(await inRecovery(lab, 'b')).toBe(false);

  // systemd will not start it: the unit is masked.
  expect(lab.a.sh('systemctl is-enabled postgresql@15-lab.service').stdout.trim()).toBe('masked');
  expect(lab.a.sh('systemctl start postgresql@15-lab.service').code).not.toBe(0);
  expect(lab.a.isUp()).toBe(false);
  // Whoever starts it with the plain tool, the old primary comes up in recovery and refuses writes.
  expect(lab.a.sh(`pg_ctl -D ${IN_HOST.pgData} -l ${IN_HOST.logFile} start -w -t 60`).code).toBe(0);
  expect(await inRecovery(lab, 'a')).toBe(true);
  await expect(lab.a.sql(`INSERT INTO lab_orders (test) VALUES ('split brain?')`)).rejects.toThrow(/read-only transaction/);
});

test('cancelled during a real base backup: the copy is killed and gone before the old data directory is put back', async () => {
  const lab = await suite.newLab();
  await lab.a.sql(`CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 40000) g`);
  const systemId = () => /Database system identifier:\s+(\d+)/.exec(lab.b.sh(`pg_controldata ${IN_HOST.pgData}`).stdout)?.[1];
  const original = systemId();
  expect(original).toBeDefined();
  const input = setupInput(lab, 'pg_ctl') as Record<string, any>;
  input.replication.baseBackupMaxRate = '2M';
  const handle = await start('setupPostgresStandby', input);
  const approving = approveUntilDone(handle).catch(() => undefined);
  await waitForProgress(handle, 'the base backup to run', (p) => p.currentStep === 'copyData', 60_000);
  await eventually(async () => lab.b.sh('pgrep -x pg_basebackup').code === 0, 'pg_basebackup to run on lab-b', 60_000);
  await handle.cancel();
  const cause = await failureOf(handle);
  expect(cause.message).toMatch(/cancel/i);
  await approving;

  // Nothing of the copy runs, the original cluster is back in place and running, the partial copy is kept aside.
  expect(lab.b.sh('pgrep -x pg_basebackup').code).not.toBe(0);
  expect(systemId()).toBe(original);
  expect(lab.b.isUp()).toBe(true);
  expect(lab.b.sh(`ls -d ${IN_HOST.pgData}.failed-*`).code).toBe(0);
  const p = await handle.query(progressQuery);
  expect(p.status).toBe('cancelled');
  expect(p.compensations.map((c) => [c.title, c.state])).toEqual(expect.arrayContaining([[`Put the old data directory of lab-b back`, 'done']]));
}, 180_000);

test('running a finished promotion again, after the rejoin, recognises it and changes nothing', async () => {
  const lab = await pair('openelis-docker');
  const input = promoteInput(lab, 'openelis-docker', { mode: 'switchover', rejoin: { replication: { user: 'replicator', password: { secret: REPLICATION_SECRET }, slot: 'standby_a' } } });
  await expect(approveUntilDone(await start('promotePostgresStandby', input))).resolves.toMatchObject({ promoted: true, rejoined: true });
  await eventually(async () => (await lab.b.sql(`SELECT 1 FROM pg_stat_replication WHERE application_name = 'lab-a' AND state = 'streaming'`)).length === 1, 'lab-a to stream from lab-b');
  const before = { a: lab.a.dockerCommands().length, b: lab.b.dockerCommands().length };

  const again = await start('promotePostgresStandby', input);
  await expect(again.result()).resolves.toMatchObject({ promoted: false, newPrimary: 'lab-b', rejoined: true });
  const p = await again.query(progressQuery);
  expect(p.steps.find((s) => s.name === 'fence')).toMatchObject({ state: 'skipped', note: expect.stringContaining('already a standby of lab-b') });
  expect(changing(lab.a.dockerCommands().slice(before.a))).toEqual([]);
  expect(changing(lab.b.dockerCommands().slice(before.b))).toEqual([]);
  expect(await inRecovery(lab, 'a')).toBe(true);
  expect(await inRecovery(lab, 'b')).toBe(false);
  expect(await lab.b.sql(`SELECT 1 FROM pg_stat_replication WHERE application_name = 'lab-a' AND state = 'streaming'`)).toHaveLength(1);
}, 180_000);

test('a secret is refused for a host its scope does not name, before anything connects', async () => {
  const lab = await suite.newLab();
  const scopes = path.join(tempDir('scopes-'), 'scopes.json');
  writeFileSync(scopes, JSON.stringify({
    'lab-ssh': { purposes: ['ssh-key'], hosts: ['*'] },
    'lab-pg-admin': { purposes: ['db-password'], hosts: ['*'] },
    [REPLICATION_SECRET]: { purposes: ['replication-password'], hosts: [lab.a.address] },
  }));
  await suite.killWorker();
  await suite.startWorker({ RUNBOOKS_SECRET_SCOPES: scopes });
  try {
    const handle = await start('setupPostgresStandby', setupInput(lab, 'openelis-docker'));
    const cause = await failureOf(handle);
    expect(cause).toMatchObject({ type: 'SecretRefused', nonRetryable: true });
    expect(cause.message).toContain(`Secret "${REPLICATION_SECRET}" may not be used as replication-password for ${lab.b.address}: it may go to ${lab.a.address}`);
    const history = await handle.fetchHistory();
    const scheduled = (history.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
    expect(scheduled).toEqual(['checkSecretScopes']);
    expect(lab.a.dockerCommands()).toEqual([]);
    expect(lab.b.dockerCommands()).toEqual([]);
  } finally {
    await suite.killWorker();
    await suite.startWorker();
  }
});

test('a symlink planted at the passfile path is refused, not followed', async () => {
  const lab = await suite.newLab();
  const victim = `${IN_HOST.home}/victim.txt`;
  lab.b.sh(`echo untouched > ${victim} && ln -s ${victim} ${IN_HOST.backupsDir}/.runbooks-replication.pgpass`);
  const handle = await start('setupPostgresStandby', setupInput(lab, 'openelis-docker'));
  await approveUntilDone(handle).catch(() => undefined);
  const cause = await failureOf(handle);
  expect(cause).toMatchObject({ type: 'UnsafePath', nonRetryable: true });
  expect(cause.message).toContain('it is a symbolic link');
  expect(lab.b.sh(`cat ${victim}`).stdout).toBe('untouched\n');
  expect(lab.b.sh(`test -L ${IN_HOST.backupsDir}/.runbooks-replication.pgpass`).code).toBe(0);
}, 120_000);

test('the application directory is copied exactly, secrets included: files the primary lacks are deleted and named; data and backups are not touched', async () => {
  const lab = await pair('openelis-docker');
  writeFileSync(path.join(lab.b.appDir, 'volume', 'plugins', 'stale-plugin.txt'), 'an old plugin\n');
  writeFileSync(path.join(lab.b.appDir, 'backups', 'local-only.sql'), 'a local backup\n');
  const handle = await start('setupPostgresStandby', setupInput(lab, 'openelis-docker'));
  await expect(handle.result()).resolves.toMatchObject({ streaming: true });
  const step = (await handle.query(progressQuery)).steps.find((s) => s.name === 'copyAppDir')!;
  expect(step.actions).toContain('deleted 1 file(s) on lab-b that lab-a does not have: volume/plugins/stale-plugin.txt');
  expect(lab.b.sh(`test -e ${IN_HOST.appDir}/volume/plugins/stale-plugin.txt`).code).not.toBe(0);
  expect(lab.b.sh(`cat ${IN_HOST.appDir}/backups/local-only.sql`).stdout).toBe('a local backup\n');
  expect(lab.b.sh(`cat ${IN_HOST.appDir}/secrets/datasource.password`).stdout).toBe(lab.a.sh(`cat ${IN_HOST.appDir}/secrets/datasource.password`).stdout);
  // A second run finds nothing to do.
  const again = await start('setupPostgresStandby', setupInput(lab, 'openelis-docker'));
  await again.result();
  expect((await again.query(progressQuery)).steps.find((s) => s.name === 'copyAppDir')?.actions).toEqual([]);
}, 180_000);

test('two runs on one cluster: the second is refused naming the first, or waits for it; the lock goes with the first run', async () => {
  const lab = await pair('openelis-docker');
  const before = lab.a.dockerCommands().length;
  const first = await start('promotePostgresStandby', promoteInput(lab, 'openelis-docker', { mode: 'failover' }));
  await waitForGate(first, 'fence-running-primary');

  const second = await start('promotePostgresStandby', promoteInput(lab, 'openelis-docker', { mode: 'failover' }));
  const cause = await failureOf(second);
  expect(cause).toMatchObject({ type: 'TargetBusy', nonRetryable: true });
  expect(cause.message).toContain(`Another run is working on postgres:${lab.a.address}:5432: ${first.workflowId}`);
  expect(changing(lab.a.dockerCommands().slice(before))).toEqual([]);

  const waiting = await start('promotePostgresStandby', promoteInput(lab, 'openelis-docker', { mode: 'failover', waitForLock: '5m' }));
  await waitForProgress(waiting, 'the third run to wait for the lock', (p) => p.status === 'waiting_for_lock');
  await first.signal(rejectSignal, { gate: 'fence-running-primary', by: 'bob', reason: 'not now' });
  await first.result().catch(() => undefined);
  // The first run released its locks as it ended; the waiting run takes them and reaches its own gate.
  await waitForGate(waiting, 'fence-running-primary');
  expect((await waiting.query(progressQuery)).locks).toEqual([`postgres:${lab.a.address}:5432`, `postgres:${lab.b.address}:5432`].sort());
  await waiting.signal(rejectSignal, { gate: 'fence-running-primary', by: 'bob', reason: 'not now either' });
  await waiting.result().catch(() => undefined);
  const lock = await suite.client.workflow.getHandle(lockWorkflowId(`postgres:${lab.a.address}:5432`)).describe();
  expect(lock.status.name).toBe('COMPLETED');
  expect(await inRecovery(lab, 'a')).toBe(false);
}, 180_000);

test('an operator who pinned the RSA host key is let in; a key no type of the host matches is refused', async () => {
  const lab = await suite.newLab();
  const input = setupInput(lab, 'pg_ctl', lab.a, lab.b, { dryRun: true }) as Record<string, any>;
  input.primary.ssh.hostKey = lab.a.rsaHostKey;
  await expect((await start('setupPostgresStandby', input)).result()).resolves.toMatchObject({ dryRun: true });
  input.primary.ssh.hostKey = lab.b.rsaHostKey;
  const cause = await failureOf(await start('setupPostgresStandby', input));
  expect(cause).toMatchObject({ type: 'HostKeyMismatch' });
  // Every key the host holds is named (the one that matched last time is asked for first).
  expect(cause.message).toContain(`${lab.a.hostKey} (ssh-ed25519)`);
  expect(cause.message).toContain(`${lab.a.rsaHostKey} (ssh-rsa)`);
  expect(cause.message).toContain(`not the pinned ${lab.b.rsaHostKey}`);
});
