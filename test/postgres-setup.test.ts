/**
 * setupPostgresStandby against two real PostgreSQL 15 hosts (network namespaces, real sshd with
 * pinned keys, the OpenELIS docker layout through the docker stand-in) and a real Temporal.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery } from '../contracts/messages';
import type { Lab } from './lab/hosts';
import { setupInput } from './lab/inputs';
import { useLabs } from './lab/suite';
import { eventually } from './support/processes';
import { waitForGate } from './support/runs';
import { secretsIn, watchCommandLines } from './support/process-watch';

const suite = useLabs('pg-setup');
// No secret on any process's command line during the file (issue 24, finding 6): fsi, ssh, iris, servers.
watchCommandLines(() => secretsIn([suite.secretsDir]));
const { queue } = suite;
let lab: Lab;

beforeAll(async () => {
  lab = await suite.newLab();
}, 120_000);

let n = 0;
const start = (input: object) => suite.client.workflow.start('setupPostgresStandby', { taskQueue: queue, workflowId: `setup-${queue}-${++n}`, args: [input] });

/** The docker commands that change something (not inspect, ps, or a version check). */
const changing = (commands: string[]) => commands.filter((c) => /^docker (stop|start|kill|restart|update)|pg_basebackup|pg_rewind/.test(c));

async function historyText(handle: WorkflowHandle): Promise<string> {
  return JSON.stringify(await handle.fetchHistory());
}

test('set-up from scratch: asks before restarting the primary, streams, replicates a canary, keeps the old data aside', async () => {
  await lab.a.sql('CREATE TABLE lab_orders (id serial PRIMARY KEY, test text)');
  await lab.a.sql(`INSERT INTO lab_orders (test) VALUES ('CBC'), ('HbA1c')`);
  const handle = await start(setupInput(lab, 'openelis-docker'));

  // wal_log_hints is off on a fresh cluster: applying it needs a restart, which waits for a human.
  const gate = await waitForGate(handle, 'restart-primary');
  expect(gate.approvals[0].summary).toMatch(/wal_log_hints = on .*DOWN for the restart/);
  expect(lab.b.isUp()).toBe(true); // nothing has touched the standby yet
  await handle.signal(approveSignal, { gate: 'restart-primary', by: 'bob' });
  const result = await handle.result();
  expect(result).toMatchObject({ primary: 'lab-a', standby: 'lab-b', streaming: true });

  const repl = await lab.a.sql<{ application_name: string; state: string; client_addr: string }>('SELECT application_name, state, client_addr FROM pg_stat_replication');
  expect(repl).toEqual([{ application_name: 'lab-b', state: 'streaming', client_addr: lab.b.address }]);
  expect(await lab.b.sql('SELECT pg_is_in_recovery() AS r')).toEqual([{ r: true }]);
  await lab.a.sql(`INSERT INTO lab_orders (test) VALUES ('after set-up')`);
  await eventually(async () => (await lab.b.sql('SELECT count(*)::int AS c FROM lab_orders'))[0].c === 3, 'the new row on the standby');

  // The standby's own database was kept aside under a dated name, not deleted.
  const aside = readdirSync(path.dirname(lab.b.pgData)).filter((d) => d.startsWith('data.replaced-'));
  expect(aside).toHaveLength(1);
  expect(statSync(path.join(path.dirname(lab.b.pgData), aside[0], 'PG_VERSION')).isFile()).toBe(true);
  // The replication role's pg_hba line names the standby's address only.
  const hba = await lab.a.sql<{ address: string }>(`SELECT address FROM pg_hba_file_rules WHERE database = '{replication}' AND user_name = '{replicator}'`);
  expect(hba).toEqual([{ address: lab.b.address }]);
  // The application directory travelled, secrets too (the installer made them per install, and the
  // standby now serves the primary's database), except the database and the backups.
  expect(lab.b.sh('cat /var/lib/openelis-global/volume/plugins/site-plugin.txt').stdout).toBe('plugin config of a\n');
  expect(lab.b.sh('cat /var/lib/openelis-global/secrets/datasource.password').stdout).toBe(lab.a.sh('cat /var/lib/openelis-global/secrets/datasource.password').stdout);
  // The slot's WAL is capped (the procedure's wal_keep_size was 16000 MB): a standby that is gone cannot fill the primary's disk.
  expect(await lab.a.sql('SHOW max_slot_wal_keep_size')).toEqual([{ max_slot_wal_keep_size: '16GB' }]);
  expect(lab.b.sh('cat /var/lib/openelis-global/backups/nightly.sql').stdout).toBe('backup of b\n');
  // The passfile is 0600 and the application stays down on the standby.
  expect(lab.b.sh('stat -c %a /var/lib/openelis-global/backups/.runbooks-replication.pgpass').stdout.trim()).toBe('600');
  expect(lab.b.sh('docker ps').stdout).toBe('openelisglobal-database\n');

  // The command sequence the openelis-docker profile sent to the standby: pg_basebackup in the database
  // container's image, as its postgres user, writing the data directory and reading the passfile through the mounts.
  const sent = changing(lab.b.dockerCommands());
  expect(sent).toEqual([
    'docker stop autoheal-oe openelisglobal-webapp external-fhir-api openelisglobal-proxy openelisglobal-frontend',
    'docker stop -t 300 openelisglobal-database',
    expect.stringMatching(new RegExp(`^docker run --rm --name runbooks-[\\w.-]+-basebackup --network host -u postgres -v /var/lib/openelis-global/data:/var/lib/openelis-global/data -v /var/lib/openelis-global/backups:/backups postgres:15 pg_basebackup -D /var/lib/openelis-global/data -X stream -R -S standby_b -c fast -w -d host='${lab.a.address.replace(/\./g, '\\.')}' port='5432' user='replicator' application_name='lab-b' passfile='/backups/\\.runbooks-replication\\.pgpass'$`)),
    'docker start openelisglobal-database',
  ]);
  expect(changing(lab.a.dockerCommands())).toEqual(['docker stop -t 300 openelisglobal-database', 'docker start openelisglobal-database']);

  // The replication password is nowhere in the run's history, nor in any command sent.
  expect(await historyText(handle)).not.toContain(lab.replicationPassword);
  expect([...lab.a.dockerCommands(), ...lab.b.dockerCommands()].join('\n')).not.toContain(lab.replicationPassword);
}, 180_000);

test('a second run changes nothing', async () => {
  const restartsBefore = await lab.a.sql<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t');
  const standbyStart = await lab.b.sql<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t');
  const commandsBefore = lab.b.dockerCommands().length;
  const handle = await start(setupInput(lab, 'openelis-docker'));
  await expect(handle.result()).resolves.toMatchObject({ streaming: true });
  const p = await handle.query(progressQuery);
  const did = p.steps.filter((s) => s.name !== 'verify' && s.name !== 'preflight').flatMap((s) => s.actions);
  expect(did).toEqual([]);
  expect(p.steps.filter((s) => s.state === 'skipped').map((s) => s.name)).toEqual(['restartPrimary', 'stopStandby', 'keepOldData', 'copyData', 'startStandby']);
  expect(await lab.a.sql('SELECT pg_postmaster_start_time()::text AS t')).toEqual(restartsBefore);
  expect(await lab.b.sql('SELECT pg_postmaster_start_time()::text AS t')).toEqual(standbyStart);
  expect(changing(lab.b.dockerCommands().slice(commandsBefore))).toEqual([]);
  expect(readdirSync(path.dirname(lab.b.pgData)).filter((d) => d.startsWith('data.replaced-'))).toHaveLength(1);
}, 120_000);

describe('refusals: nothing is changed', () => {
  let fresh: Lab;
  beforeAll(async () => {
    fresh = await suite.newLab();
  }, 60_000);

  const untouched = async () => {
    expect(changing(fresh.a.dockerCommands())).toEqual([]);
    expect(changing(fresh.b.dockerCommands())).toEqual([]);
    expect(await fresh.a.sql(`SELECT 1 FROM pg_roles WHERE rolname = 'replicator'`)).toEqual([]);
    expect(await fresh.b.sql('SELECT pg_is_in_recovery() AS r')).toEqual([{ r: false }]);
  };
  const failureOf = async (input: object) => {
    const err = await (await start(input)).result().catch((e) => e);
    // The run's failure, or the activity's failure inside it.
    return (err.cause?.cause ?? err.cause) as { type: string; message: string; nonRetryable: boolean };
  };

  test('a bad input names every bad field', async () => {
    const input = setupInput(fresh, 'openelis-docker') as Record<string, any>;
    input.primary.ssh.hostKey = 'ssh-ed25519 AAAA';
    input.replication.slot = 'Standby-B';
    delete input.standby;
    const cause = await failureOf(input);
    expect(cause.type).toBe('InvalidInput');
    expect(cause.message).toMatch(/primary\.ssh\.hostKey: .*SHA256/);
    expect(cause.message).toMatch(/replication\.slot: /);
    expect(cause.message).toMatch(/standby: /);
    await untouched();
  });

  test('an unreachable standby is refused with what to check', async () => {
    const input = setupInput(fresh, 'openelis-docker') as Record<string, any>;
    input.standby.address = fresh.b.address.replace(/\.\d+$/, '.99');
    const cause = await failureOf(input);
    expect(cause).toMatchObject({ type: 'PreflightRefused', nonRetryable: true });
    expect(cause.message).toMatch(/Cannot reach the standby lab-b: .*99.*Nothing was changed/);
    await untouched();
  }, 60_000);

  test('a wrong host key is refused: another machine may answer at that address', async () => {
    const input = setupInput(fresh, 'openelis-docker') as Record<string, any>;
    input.primary.ssh.hostKey = fresh.b.hostKey;
    const cause = await failureOf(input);
    expect(cause).toMatchObject({ type: 'HostKeyMismatch', nonRetryable: true });
    expect(cause.message).toContain(`is ${fresh.a.hostKey} (ssh-ed25519), `);
    expect(cause.message).toContain(`not the pinned ${fresh.b.hostKey}: another machine answers at this address`);
    await untouched();
  });

  test('a standby holding its own database is refused unless replacing it is allowed', async () => {
    const cause = await failureOf(setupInput(fresh, 'openelis-docker', fresh.a, fresh.b, { replaceStandbyData: false }));
    expect(cause.message).toMatch(/lab-b runs as a primary with its own data. .*"replaceStandbyData": true/);
    await untouched();
  });

  test('a dry-run checks for real and returns the plan, changing nothing', async () => {
    const handle = await start(setupInput(fresh, 'pg_ctl', fresh.a, fresh.b, { dryRun: true }));
    const plan = await handle.result() as { dryRun: boolean; steps: Array<{ name: string; actions: string[] }> };
    expect(plan.dryRun).toBe(true);
    const actions = Object.fromEntries(plan.steps.map((s) => [s.name, s.actions.join(' | ')]));
    expect(actions.replicationRole).toMatch(/^would CREATE ROLE replicator/);
    expect(actions.allowStandby).toMatch(/would add "host replication replicator .* scram-sha-256"/);
    expect(actions.restartPrimary).toMatch(/would wait for approval "restart-primary"/);
    expect(actions.keepOldData).toMatch(/would move \/var\/lib\/openelis-global\/data aside/);
    expect(actions.copyData).toMatch(/would write the replication passfile .*pg_basebackup -D/);
    await untouched();
    expect(fresh.b.isUp()).toBe(true);
  });
});

test('the worker is killed during the base backup: the copy goes on, the new worker re-attaches, nothing is done twice; the password is on no command line', async () => {
  const big = await suite.newLab();
  await big.a.sql(`CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 40000) g`);
  const input = setupInput(big, 'openelis-docker', big.a, big.b, { restartApproval: { timeout: '1h' } }) as Record<string, any>;
  input.replication.baseBackupMaxRate = '4M';
  const handle = await start(input);
  await waitForGate(handle, 'restart-primary');
  await handle.signal(approveSignal, { gate: 'restart-primary', by: 'bob' });

  // Watch every process command line on the machine (the lab hosts' too) while the run goes.
  const seen = new Set<string>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        try { seen.add(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')); } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  await eventually(async () => /running/.test(big.b.sh('for d in /var/lib/postgresql/.runbooks-jobs/*basebackup; do test -f $d/exit || (kill -0 $(cat $d/pid) && echo running); done').stdout), 'the base backup to be running', 60_000);
  await suite.killWorker();
  expect(big.b.sh('pgrep -x pg_basebackup').code).toBe(0); // the copy survives the worker
  await suite.startWorker();
  await expect(handle.result()).resolves.toMatchObject({ streaming: true });
  watching = false;
  await watcher;

  const p = await handle.query(progressQuery);
  expect(p.steps.find((s) => s.name === 'copyData')?.actions.join(' ')).toContain('re-attached to the copy already running');
  expect(changing(big.b.dockerCommands()).filter((c) => c.includes('pg_basebackup'))).toHaveLength(1);
  expect(readdirSync(path.dirname(big.b.pgData)).filter((d) => d.startsWith('data.replaced-'))).toHaveLength(1);
  expect((await big.b.sql<{ c: string }>('SELECT count(*) AS c FROM filler'))[0].c).toBe('40000');

  expect([...seen].some((c) => c.includes('pg_basebackup'))).toBe(true); // the watcher did see the copy
  expect([...seen].filter((c) => c.includes(big.replicationPassword))).toEqual([]);
  expect(await historyText(handle)).not.toContain(big.replicationPassword);
}, 240_000);

