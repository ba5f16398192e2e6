/**
 * setupPostgresStandby against two real PostgreSQL 15 hosts (network namespaces, real sshd with
 * pinned keys, the OpenELIS docker layout through the docker stand-in) and a real Temporal.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery } from '../workflows/kit/messages';
import { startLab, type Lab } from './lab/hosts';
import { setupInput } from './lab/inputs';
import { startWorker, testClient, uniqueQueue, eventually, type Proc } from './support/processes';
import { waitForGate } from './support/runs';

const queue = uniqueQueue('pg-setup');
let client: Client;
let worker: Proc;
let lab: Lab;

beforeAll(async () => {
  lab = await startLab();
  client = await testClient();
  worker = await startWorker(queue, lab.workerEnv);
}, 120_000);
afterAll(async () => {
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
});

let n = 0;
const start = (input: object) => client.workflow.start('setupPostgresStandby', { taskQueue: queue, workflowId: `setup-${queue}-${++n}`, args: [input] });

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
  // The application directory travelled, except the database, the backups and the secrets.
  expect(lab.b.sh('cat /var/lib/openelis-global/volume/plugins/site-plugin.txt').stdout).toBe('plugin config of a\n');
  expect(lab.b.sh('cat /var/lib/openelis-global/secrets/datasource.password').stdout).toBe('secret-of-b\n');
  expect(lab.b.sh('cat /var/lib/openelis-global/backups/nightly.sql').stdout).toBe('backup of b\n');
  // The passfile is 0600 and the application stays down on the standby.
  expect(lab.b.sh('stat -c %a /var/lib/openelis-global/backups/.runbooks-replication.pgpass').stdout.trim()).toBe('600');
  expect(lab.b.sh('docker ps').stdout).toBe('openelisglobal-database\n');

  // The command sequence the openelis-docker profile sent to the standby.
  const sent = changing(lab.b.dockerCommands());
  expect(sent).toEqual([
    'docker stop autoheal-oe openelisglobal-webapp external-fhir-api openelisglobal-proxy openelisglobal-frontend',
    'docker stop -t 300 openelisglobal-database',
    expect.stringMatching(/^docker run --rm --network host -u postgres .* postgres:15 pg_basebackup -D \/var\/lib\/openelis-global\/data -X stream -R -S standby_b -c fast -w -h 10\.213\.\d+\.2 -p 5432 -U replicator -d application_name=lab-b passfile=\/var\/lib\/openelis-global\/backups\/\.runbooks-replication\.pgpass$/),
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
