/**
 * What OpenELIS needs from a standby besides its database (issue 23, finding 2) and the cap on the
 * WAL a slot holds (finding 3), on real PostgreSQL 15 hosts in the OpenELIS container form.
 * The webapp stand-in (lab/openelis-webapp.py) answers OpenELIS's health path only when it can log in
 * to its database with secrets/datasource.password, as the real webapp starts only then.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery } from '../contracts/messages';
import { setupStandbyInput } from '../contracts/postgres/schema';
import { IN_HOST, REPLICATION_SECRET, WEBAPP_PORT, type Lab } from './lab/hosts';
import { hostInput, setupInput } from './lab/inputs';
import { streamingPair } from './lab/pair';
import { useLabs } from './lab/suite';
import { eventually } from './support/processes';

const suite = useLabs('pg-openelis');
const { queue } = suite;
const kind = 'openelis-docker';
let n = 0;
const start = (type: string, input: object) => suite.client.workflow.start(type, { taskQueue: queue, workflowId: `${type}-${queue}-${++n}`, args: [input] });
const promote = (lab: Lab) => start('promotePostgresStandby', {
  oldPrimary: hostInput(lab.a, kind), standby: hostInput(lab.b, kind), requestedBy: 'alice', mode: 'failover', promotionApproval: { required: false },
});
/** Every message down the failure's cause chain (workflow -> activity -> the activity's own error). */
const failureOf = (p: Promise<unknown>) => p.then(() => 'completed', (e) => {
  const messages: string[] = [];
  for (let c = e; c; c = c.cause) messages.push(String(c.message));
  return messages.join(' <- ');
});
const health = (lab: Lab, h: 'a' | 'b') => lab[h].sh(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${WEBAPP_PORT}/api/OpenELIS-Global/health`).stdout;
const secretOf = (lab: Lab, h: 'a' | 'b') => lab[h].sh(`cat ${IN_HOST.appDir}/secrets/datasource.password`).stdout;

/** Waits (bounded) until the run ends, approving `gate` whenever it is open. */
async function untilEnded(handle: WorkflowHandle, gate: string, what: string) {
  await eventually(async () => {
    const p = await handle.query(progressQuery);
    if (p.approvals.some((g) => g.gate === gate && g.state === 'open')) await handle.signal(approveSignal, { gate, by: 'bob' });
    return p.status !== 'running';
  }, what, 150_000);
}

/** The old primary is gone for good (powered off): stopped with its restart disabled. */
function powerOff(lab: Lab) {
  lab.a.sh('docker update --restart=no openelisglobal-database && docker stop -t 5 openelisglobal-database autoheal-oe openelisglobal-webapp');
}

test('failover: the webapp on the new primary logs in with the secrets copied by the set-up, and the run waits for its health answer', async () => {
  const lab = await streamingPair(suite.client, queue, kind, await suite.newLab());
  // The set-up copied secrets/ (the installer generated them per install): the standby's are the primary's.
  expect(secretOf(lab, 'b')).toBe(secretOf(lab, 'a'));
  expect(health(lab, 'a')).toBe('200');
  powerOff(lab);
  const handle = await promote(lab);
  await untilEnded(handle, 'unfenced-old-primary', 'the promotion to end');
  await expect(handle.result()).resolves.toMatchObject({ promoted: true, newPrimary: 'lab-b' });
  const step = (await handle.query(progressQuery)).steps.find((s) => s.name === 'appHealth');
  expect(step).toMatchObject({ state: 'done', actions: [`the application on lab-b answers healthy at http://127.0.0.1:${WEBAPP_PORT}/api/OpenELIS-Global/health`] });
  expect(health(lab, 'b')).toBe('200');
}, 300_000);

test('failover after a set-up that left the secrets behind: the run fails on the health answer instead of reporting success with a broken webapp', async () => {
  const lab = await suite.newLab();
  const input = setupInput(lab, kind) as Record<string, any>;
  const setup = await start('setupPostgresStandby', { ...input, appDir: { path: IN_HOST.appDir, includeSecrets: false } });
  await untilEnded(setup, 'restart-primary', 'the set-up to end');
  await expect(setup.result()).resolves.toMatchObject({ streaming: true });
  expect(secretOf(lab, 'b')).not.toBe(secretOf(lab, 'a'));
  powerOff(lab);
  const handle = await promote(lab);
  await untilEnded(handle, 'unfenced-old-primary', 'the promotion to end');
  const failure = await failureOf(handle.result());
  expect(failure).toMatch(/The application on lab-b did not answer healthy at http:\/\/127\.0\.0\.1:8080\/api\/OpenELIS-Global\/health within 30s \(last answer: HTTP 404/);
  expect(failure).toMatch(/secrets\/ was not copied/);
  // The database itself was promoted: only the application is broken, and the run says so.
  expect(await lab.b.sql('SELECT pg_is_in_recovery() AS r')).toEqual([{ r: false }]);
}, 300_000);

test('the standby must have the certificates of /etc/openelis-global, keystore and truststore the same as the primary: refused before anything changes', async () => {
  const lab = await suite.newLab();
  lab.b.sh(`rm ${IN_HOST.etcDir}/client_facing_keystore && echo 'another truststore' > ${IN_HOST.etcDir}/truststore`);
  const handle = await start('setupPostgresStandby', setupInput(lab, kind));
  const failure = await failureOf(handle.result());
  expect(failure).toMatch(/The OpenELIS certificates are not ready for a failover: lab-b has no client_facing_keystore in \/etc\/openelis-global; truststore in \/etc\/openelis-global differ between lab-a and lab-b/);
  expect(failure).toMatch(/Nothing was changed/);
  expect(await lab.a.sql(`SELECT 1 FROM pg_roles WHERE rolname = 'replicator'`)).toEqual([]);
  // Only looked (inspect, the version check): nothing stopped, started or copied.
  expect(lab.b.dockerCommands().filter((c) => /^docker (stop|start|kill|update)|pg_basebackup|pg_rewind/.test(c))).toEqual([]);
  // Nothing of the certificates' contents is in the run's history: only checksums were compared.
  expect(JSON.stringify(await handle.fetchHistory())).not.toContain('another truststore');
}, 180_000);

test('the WAL a slot may hold is capped: a standby that stays away is cut loose, not the primary\'s disk filled; the next set-up says so and copies it again', async () => {
  const lab = await streamingPair(suite.client, queue, kind, await suite.newLab());
  const input = setupInput(lab, kind) as Record<string, any>;
  const capped = { ...input, replication: { user: 'replicator', password: { secret: REPLICATION_SECRET }, slot: 'standby_b', maxSlotWalKeepSize: '64MB' } };
  await expect((await start('setupPostgresStandby', capped)).result()).resolves.toMatchObject({ streaming: true });
  expect(await lab.a.sql('SHOW max_slot_wal_keep_size')).toEqual([{ max_slot_wal_keep_size: '64MB' }]);

  // The standby goes away; the primary writes well past the cap.
  lab.b.sh('docker stop -t 30 openelisglobal-database');
  await lab.a.sql(`CREATE TABLE wal_filler AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 150000) g`);
  await eventually(async () => {
    await lab.a.sql('CHECKPOINT');
    return (await lab.a.sql<{ s: string }>(`SELECT wal_status AS s FROM pg_replication_slots WHERE slot_name = 'standby_b'`))[0]?.s === 'lost';
  }, 'the slot to be invalidated', 60_000);
  // An invalidated slot holds no WAL back any more.
  expect(await lab.a.sql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'standby_b'`)).toEqual([{ restart_lsn: null }]);
  lab.b.sh('docker start openelisglobal-database');

  const again = await start('setupPostgresStandby', capped);
  const result = await again.result();
  expect(result).toMatchObject({ streaming: true, slotWasInvalidated: expect.stringMatching(/slot standby_b had been invalidated/) });
  const slotStep = (await again.query(progressQuery)).steps.find((s) => s.name === 'replicationSlot');
  expect(slotStep?.actions.join('\n')).toMatch(/replication slot standby_b on lab-a was INVALIDATED: its standby fell more than max_slot_wal_keep_size \(64MB\) behind/);
  await lab.a.sql(`INSERT INTO lab_orders (test) VALUES ('after the new copy')`);
  await eventually(async () => (await lab.b.sql<{ c: number }>(`SELECT count(*)::int AS c FROM lab_orders WHERE test = 'after the new copy'`))[0].c === 1, 'the new row on the standby');
}, 300_000);

test('bad values for the new settings are refused naming the field', () => {
  const lab = { a: { name: 'a', address: '10.0.0.1', hostKey: 'SHA256:x' }, b: { name: 'b', address: '10.0.0.2', hostKey: 'SHA256:y' } } as unknown as Lab;
  const input = setupInput(lab, kind) as Record<string, any>;
  const bad = setupStandbyInput.safeParse({
    ...input,
    replication: { ...input.replication, maxSlotWalKeepSize: '-1' },
    appDir: { path: IN_HOST.appDir, certificates: { required: ['../../etc/shadow'] } },
    standby: { ...input.standby, profile: { ...input.standby.profile, healthUrl: 'file:///etc/passwd' } },
  });
  expect(bad.success).toBe(false);
  const paths = bad.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  expect(paths).toEqual(expect.arrayContaining([
    expect.stringMatching(/^replication\.maxSlotWalKeepSize: a size such as "16GB"/),
    expect.stringMatching(/^appDir\.certificates\.required\.0: a file name/),
    expect.stringMatching(/^standby\.profile\.healthUrl: an http:\/\/ or https:\/\/ URL/),
  ]));
});
