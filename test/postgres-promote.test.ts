/**
 * promotePostgresStandby on real PostgreSQL 15 hosts: failover after a SIGKILL, failover refused
 * while the old primary lives, switchover under a writer, rejoin of the old primary, and a worker
 * killed right after pg_promote. Never two primaries.
 */
import { approveSignal, progressQuery, rejectSignal } from '../contracts/messages';
import { REPLICATION_SECRET, type Lab } from './lab/hosts';
import { hostInput, type Profile } from './lab/inputs';
import { killPostmaster, startWriter, streamingPair } from './lab/pair';
import { useLabs } from './lab/suite';
import { eventually } from './support/processes';
import { waitForGate } from './support/runs';

const suite = useLabs('pg-promote');
const { queue } = suite;

async function pair(kind: Profile): Promise<Lab> {
  return streamingPair(suite.client, queue, kind, await suite.newLab());
}

let n = 0;
function promote(lab: Lab, kind: Profile, extra: Record<string, unknown>) {
  return suite.client.workflow.start('promotePostgresStandby', {
    taskQueue: queue, workflowId: `promote-${queue}-${++n}`,
    args: [{ oldPrimary: hostInput(lab.a, kind), standby: hostInput(lab.b, kind), requestedBy: 'alice', catchupWithinSeconds: 30, ...extra }],
  });
}

const inRecovery = async (lab: Lab, h: 'a' | 'b') => (await lab[h].sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r;
const timeline = async (lab: Lab, h: 'a' | 'b') => (await lab[h].sql<{ t: number }>(`SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS t`))[0].t;

test('failover after SIGKILL of the primary: committed rows that reached the standby survive, the timeline advances, the old primary stays fenced', async () => {
  const lab = await pair('openelis-docker');
  const writer = startWriter(lab.a);
  await eventually(async () => writer.committed.length > 50, 'the writer to commit rows');
  killPostmaster(lab.a);
  await writer.done;
  // What the standby had received when the primary died (hot standby reads).
  await new Promise((r) => setTimeout(r, 500));
  const reached = (await lab.b.sql<{ id: string }>('SELECT id FROM lab_orders ORDER BY id')).map((r) => Number(r.id));
  expect(reached.length).toBeGreaterThan(0);

  const handle = await promote(lab, 'openelis-docker', { mode: 'failover' });
  const gate = await waitForGate(handle, 'promote');
  expect(gate.approvals[0].summary).toMatch(/Last replayed transaction: .*estimated data loss: up to \d+s/);
  expect(await inRecovery(lab, 'b')).toBe(true); // nothing promoted before the approval
  await handle.signal(approveSignal, { gate: 'promote', by: 'bob' });
  await expect(handle.result()).resolves.toMatchObject({ mode: 'failover', promoted: true, newPrimary: 'lab-b', timeline: 2 });

  expect(await inRecovery(lab, 'b')).toBe(false);
  const after = (await lab.b.sql<{ id: string }>('SELECT id FROM lab_orders ORDER BY id')).map((r) => Number(r.id));
  expect(after).toEqual(expect.arrayContaining(reached));
  expect(await timeline(lab, 'b')).toBe(2);
  await lab.b.sql(`INSERT INTO lab_orders (test) VALUES ('after failover')`);
  expect(lab.b.sh('docker ps').stdout).toContain('openelisglobal-webapp'); // the application runs on the new primary

  // The old primary is fenced: a Docker daemon restart (a reboot) does not bring it back as a primary.
  expect(lab.a.sh(`docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' openelisglobal-database`).stdout.trim()).toBe('no');
  lab.a.simulateDaemonRestart();
  expect(lab.a.isUp()).toBe(false);
  expect(lab.a.sh('docker ps').stdout).toBe('');
  // Started by hand all the same, it comes up in recovery with no upstream: it refuses writes.
  expect(lab.a.sh('docker start openelisglobal-database').code).toBe(0);
  expect(await inRecovery(lab, 'a')).toBe(true);
  await expect(lab.a.sql(`INSERT INTO lab_orders (test) VALUES ('split brain?')`)).rejects.toThrow(/read-only transaction/);
}, 240_000);

test('failover is refused while the old primary is up and primary, unless fencing it is approved', async () => {
  const lab = await pair('openelis-docker');
  const commandsBefore = lab.a.dockerCommands().length;
  const refused = await promote(lab, 'openelis-docker', { mode: 'failover' });
  const gate = await waitForGate(refused, 'fence-running-primary');
  expect(gate.approvals[0].summary).toMatch(/lab-a is UP and accepting writes/);
  await refused.signal(rejectSignal, { gate: 'fence-running-primary', by: 'bob', reason: 'lab-a is fine' });
  await expect(refused.result()).rejects.toThrow();
  const failure = await refused.result().catch((e) => e.cause?.message as string);
  expect(failure).toMatch(/Failover refused: lab-a is still up and primary/);
  expect(await inRecovery(lab, 'a')).toBe(false);
  expect(await inRecovery(lab, 'b')).toBe(true);
  expect(lab.a.dockerCommands().slice(commandsBefore).some((c) => /docker (stop|update|kill)/.test(c))).toBe(false);

  const approved = await promote(lab, 'openelis-docker', { mode: 'failover', promotionApproval: { required: false } });
  await waitForGate(approved, 'fence-running-primary');
  await approved.signal(approveSignal, { gate: 'fence-running-primary', by: 'bob' });
  await expect(approved.result()).resolves.toMatchObject({ promoted: true });
  expect(lab.a.isUp()).toBe(false);
  expect(await inRecovery(lab, 'b')).toBe(false);
}, 240_000);

test('switchover with a writer running until the stop: the last committed row is on the new primary; the old one rejoins as a standby', async () => {
  const lab = await pair('pg_ctl');
  const writer = startWriter(lab.a);
  await eventually(async () => writer.committed.length > 20, 'the writer to commit rows');
  const handle = await promote(lab, 'pg_ctl', {
    mode: 'switchover',
    rejoin: { replication: { user: 'replicator', password: { secret: REPLICATION_SECRET }, slot: 'standby_a' } },
  });
  await writer.done; // the clean stop ends the writer
  const result = await handle.result();
  expect(result).toMatchObject({ mode: 'switchover', promoted: true, newPrimary: 'lab-b', rejoined: true });
  const last = Math.max(...writer.committed);
  expect((await lab.b.sql<{ c: string }>('SELECT count(*) AS c FROM lab_orders WHERE id = $1', [last]))[0].c).toBe('1');
  const missing = await lab.b.sql('SELECT 1 FROM unnest($1::bigint[]) AS c(id) WHERE id NOT IN (SELECT id FROM lab_orders)', [writer.committed]);
  expect(missing).toEqual([]);

  // Replication flows the other way now.
  expect(await inRecovery(lab, 'a')).toBe(true);
  const repl = await lab.b.sql<{ application_name: string; state: string }>('SELECT application_name, state FROM pg_stat_replication');
  expect(repl).toEqual([{ application_name: 'lab-a', state: 'streaming' }]);
  await lab.b.sql(`INSERT INTO lab_orders (test) VALUES ('after switchover')`);
  await eventually(async () => (await lab.a.sql(`SELECT 1 FROM lab_orders WHERE test = 'after switchover'`)).length === 1, 'the row to reach the old primary');
  const rejoin = await suite.client.workflow.getHandle(`${handle.workflowId}-rejoin`).query(progressQuery);
  expect(rejoin.steps.find((s) => s.name === 'copyData')?.actions.join(' ')).toMatch(/pg_rewind|base backup/);
}, 300_000);

test('the worker is killed right after pg_promote: a new worker finishes the run, nothing is promoted twice, a second run changes nothing', async () => {
  const lab = await pair('openelis-docker');
  const handle = await promote(lab, 'openelis-docker', { mode: 'switchover' });
  await eventually(async () => !(await inRecovery(lab, 'b').catch(() => true)), 'the standby to be promoted', 60_000);
  await suite.killWorker();
  await suite.startWorker();
  await expect(handle.result()).resolves.toMatchObject({ promoted: true, timeline: 2 });
  const history = await handle.fetchHistory();
  const promotions = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'promoteStandby');
  expect(promotions).toHaveLength(1);
  expect(await timeline(lab, 'b')).toBe(2);

  const again = await promote(lab, 'openelis-docker', { mode: 'switchover' });
  await expect(again.result()).resolves.toMatchObject({ promoted: false, newPrimary: 'lab-b' });
  expect(await timeline(lab, 'b')).toBe(2);
  const p = await again.query(progressQuery);
  expect(p.steps.find((s) => s.name === 'promote')?.state).toBe('skipped');
}, 240_000);

test('failover with tryRestartFirst: an old primary that comes back healthy after the documented restart is kept, nothing is promoted', async () => {
  const lab = await pair('openelis-docker');
  killPostmaster(lab.a);
  const handle = await promote(lab, 'openelis-docker', { mode: 'failover', tryRestartFirst: true });
  await expect(handle.result()).resolves.toMatchObject({ promoted: false, newPrimary: 'lab-a' });
  expect(await inRecovery(lab, 'a')).toBe(false);
  expect(await inRecovery(lab, 'b')).toBe(true);
  const p = await handle.query(progressQuery);
  expect(p.steps.filter((s) => s.state === 'done').map((s) => s.name)).toEqual(['assess', 'restartOldPrimary']);
  expect(lab.a.sh(`docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' openelisglobal-database`).stdout.trim()).toBe('always');
}, 240_000);
