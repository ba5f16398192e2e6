/**
 * Observability as an on-call engineer meets it (issue 26): a real Prometheus (Debian's, started
 * here on loopback with its own data directory) scrapes the worker, the org-unit listener and the
 * approval gateway, each on the metrics port its environment gives it, with the alert rules of
 * deploy/prometheus loaded. Everything is read back through Prometheus's HTTP API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { freePort } from './support/global-setup';
import { eventually, repoRoot, startProcess, startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { startGated, waitForGate } from './support/runs';
import { newUid, sourceImport, startDhis2Lab, type Dhis2Lab } from './lab/dhis2';

let lab: Dhis2Lab;
let client: Client;
let worker: Proc;
let gateway: Proc;
let prometheus: ChildProcess | undefined;
let prometheusOut = '';
let hooks: Server;
const hookRequests: Array<{ status: number; body: any }> = [];
const queue = uniqueQueue('monitoring');
const dir = mkdtempSync(path.join(os.tmpdir(), 'rbmonitoring-'));
const approvalSecret = randomBytes(30).toString('base64url');
const hookToken = randomBytes(18).toString('hex');
const ports = { worker: 0, listener: 0, gateway: 0, approvals: 0, prometheus: 0, hooks: 0 };
let promUrl = '';
const listenerOutputs: string[] = [];

async function query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(10_000) });
  const body = await res.json() as { status: string; error?: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data.result;
}
const valueOf = async (expr: string): Promise<number | undefined> => {
  const r = await query(expr);
  return r.length ? Number(r[0].value[1]) : undefined;
};
/** Waits (bounded) until the expression's value satisfies `ok`; returns it. */
const until = (expr: string, ok: (v: number) => boolean, what: string, timeoutMs = 60_000) =>
  eventually(async () => { const v = await valueOf(expr); return v !== undefined && ok(v) ? { v } : undefined; }, `${what} (${expr})`, timeoutMs).then((r) => r.v);

const slotLag = async () => Number((await lab.pg.sql<{ lag: string }>(
  "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = 'runbooks_orgunit_sync'", [], 'dhis2_source'))[0].lag);

async function startListener(): Promise<Proc> {
  const proc = await lab.startListener(queue);
  listenerOutputs.push('');
  const index = listenerOutputs.length - 1;
  proc.child.stdout!.on('data', () => { listenerOutputs[index] = proc.output(); });
  listenerOutputs[index] = proc.output();
  return proc;
}

beforeAll(async () => {
  for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
  promUrl = `http://127.0.0.1:${ports.prometheus}`;
  // A webhook whose URL (a secret) carries its credential: it fails twice, then takes the request.
  hooks = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => { text += d; });
    req.on('end', () => {
      const status = req.url === `/hook/${hookToken}` && hookRequests.length >= 2 ? 200 : 503;
      hookRequests.push({ status, body: JSON.parse(text || '{}') });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => hooks.listen(ports.hooks, '127.0.0.1', r));

  lab = await startDhis2Lab(['t1']);
  client = await testClient();
  writeFileSync(path.join(lab.secretsDir, 'ops-chat-webhook'), `http://127.0.0.1:${ports.hooks}/hook/${hookToken}`, { mode: 0o600 });
  const channels = path.join(dir, 'channels.json');
  writeFileSync(channels, JSON.stringify({ webhooks: { 'ops-chat': { url: { secret: 'ops-chat-webhook' }, format: 'json' } } }));
  worker = await startWorker(queue, {
    ...lab.workerEnv, RUNBOOKS_WORKER_METRICS_PORT: String(ports.worker), RUNBOOKS_LOG_FORMAT: 'json', RUNBOOKS_LOG_LEVEL: 'DEBUG',
    RUNBOOKS_APPROVAL_CHANNELS: channels, APPROVAL_SECRET: approvalSecret, APPROVAL_BASE_URL: `http://127.0.0.1:${ports.approvals}`,
  });
  await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: uniqueQueue('setup'), args: [lab.setupInput()] });
  Object.assign(lab.workerEnv, { RUNBOOKS_LISTENER_METRICS_PORT: String(ports.listener), RUNBOOKS_LOG_FORMAT: 'json' });
  await startListener();
  gateway = startProcess('workers/approvals.ts', [], {
    APPROVAL_SECRET: approvalSecret, APPROVAL_PORT: String(ports.approvals), RUNBOOKS_GATEWAY_METRICS_PORT: String(ports.gateway),
    RUNBOOKS_STATE_DIR: dir, RUNBOOKS_LOG_FORMAT: 'json',
  });
  await gateway.waitFor(/Approval gateway ready/);

  const config = path.join(dir, 'prometheus.yml');
  const job = (name: string, port: number) => ({ job_name: name, static_configs: [{ targets: [`127.0.0.1:${port}`] }] });
  writeFileSync(config, JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [path.join(repoRoot, 'deploy/prometheus/runbooks.rules.yml')],
    scrape_configs: [job('runbooks-worker', ports.worker), job('runbooks-listener', ports.listener), job('runbooks-gateway', ports.gateway)],
  }));
  prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${ports.prometheus}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  prometheus.stdout!.on('data', (d) => { prometheusOut += d; });
  prometheus.stderr!.on('data', (d) => { prometheusOut += d; });
  await eventually(async () => (await fetch(`${promUrl}/-/ready`)).ok, `Prometheus ready:\n${prometheusOut}`, 60_000);
}, 240_000);

afterAll(async () => {
  prometheus?.kill('SIGTERM');
  await gateway?.kill('SIGKILL');
  await worker?.kill('SIGKILL');
  await client?.connection.close();
  await lab?.stop();
  hooks?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('each process answers /healthz and /readyz on its metrics port, and Prometheus scrapes all three', async () => {
  for (const port of [ports.worker, ports.listener, ports.gateway]) {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, `/readyz on ${port}`);
    expect((await fetch(`http://127.0.0.1:${port}/nothing`)).status).toBe(404);
  }
  const up = await eventually(async () => {
    const r = await query('up == 1');
    return r.length === 3 ? r.map((s) => s.metric.job).sort() : undefined;
  }, 'all three targets up');
  expect(up).toEqual(['runbooks-gateway', 'runbooks-listener', 'runbooks-worker']);
  expect(await valueOf('runbooks_worker_ready')).toBe(1);
  expect(await valueOf('runbooks_orgunit_capture_streaming{slot="runbooks_orgunit_sync"}')).toBe(1);
}, 120_000);

test('a gated run as Prometheus sees it: started, steps, open gate and its deadline, a webhook failing twice, the approval through the gateway, completed', async () => {
  const { handle } = await startGated(client, queue, { gate: { timeout: '2h', approvers: ['carol'], notify: [{ approver: 'carol', webhook: 'ops-chat' }] } });
  await waitForGate(handle, 'cutover');
  await until('runbooks_runs_started_total{runbook="gatedRunbook"}', (v) => v === 1, 'the run counted as started');
  await until('max(runbooks_approval_gates_open{runbook="gatedRunbook"})', (v) => v >= 1, 'its gate counted as open');
  // Other files' runs wait in the same namespace, some with later deadlines, and the worker reads the gates at most
  // every 15 s: wait until the first deadline is ours or earlier (at most 2 h from now) and still ahead.
  await until('min(runbooks_approval_gate_deadline_timestamp_seconds{runbook="gatedRunbook"})',
    (v) => v > Date.now() / 1000 && v <= Date.now() / 1000 + 7200, 'a gate deadline ahead, at most ours (2 h)');
  await until('runbooks_approval_delivery_failures_total{channel="webhook"}', (v) => v === 2, 'two failed webhook deliveries');
  await until('runbooks_approval_deliveries_total{channel="webhook"}', (v) => v === 1, 'then one delivered');

  // Carol approves with the link the webhook carried, through the gateway; a forged link is refused.
  const link = new URL(hookRequests.find((r) => r.status === 200)!.body.links[0].url);
  const forged = await fetch(`${link.origin}/approve`, { method: 'POST', body: new URLSearchParams({ t: `${link.searchParams.get('t')}x`, decision: 'approve' }) });
  expect(forged.status).toBe(403);
  const approved = await fetch(`${link.origin}/approve`, { method: 'POST', body: new URLSearchParams({ t: link.searchParams.get('t')!, decision: 'approve' }) });
  expect(approved.status).toBe(200);
  await handle.result();

  await until('runbooks_runs_finished_total{runbook="gatedRunbook",outcome="completed"}', (v) => v === 1, 'the run counted as completed');
  const steps = await eventually(async () => {
    const r = await query('runbooks_step_duration_seconds_count{runbook="gatedRunbook"}');
    return r.length === 4 ? Object.fromEntries(r.map((s) => [s.metric.step, Number(s.value[1])])) : undefined;
  }, 'four steps timed');
  expect(steps).toEqual({ preflight: 1, takeDown: 1, cutover: 1, finish: 1 });
  expect(await valueOf('runbooks_approval_gate_wait_seconds_count{runbook="gatedRunbook"}')).toBe(1);
  await until('runbooks_gateway_decisions_total{outcome="approved"}', (v) => v === 1, 'the approval counted by the gateway');
  expect(await valueOf('runbooks_gateway_decisions_total{outcome="refused",reason="forbidden"}')).toBe(1);
  expect(await valueOf('sum(runbooks_gateway_responses_total{route="/approve"})')).toBe(2);
  // No workflow id, run id or uid as a label anywhere.
  const labels = await (await fetch(`${promUrl}/api/v1/labels`)).json() as { data: string[] };
  expect(labels.data.filter((l) => /workflow_?id|run_?id|uid|link/i.test(l))).toEqual([]);
}, 180_000);

test('the capture lag grows in Prometheus while the listener is stopped, and recovers after it restarts', async () => {
  const lagBytes = 'max(runbooks_orgunit_capture_lag_bytes{slot="runbooks_orgunit_sync"})';
  await until('runbooks_orgunit_capture_lag_seconds{job="runbooks-listener"}', (v) => v >= 0, 'the listener\'s lag in seconds');
  await lab.listener!.kill('SIGTERM');
  await until('up{job="runbooks-listener"}', (v) => v === 0, 'the listener seen down');
  const before = await slotLag();

  // Source users keep working: 20 transactions of 10 new org units each.
  const root = newUid('M');
  await sourceImport(lab, 'organisationUnit', [{ id: root, name: 'Monitored', shortName: 'Monitored', openingDate: '2020-01-01' }]);
  for (let i = 0; i < 20; i++) {
    await sourceImport(lab, 'organisationUnit', Array.from({ length: 10 }, (_, k) => ({
      id: newUid('U'), name: `Unit ${i}-${k}`, shortName: `Unit ${i}-${k}`, openingDate: '2020-01-01', parent: { id: root },
    })));
  }
  const behind = await slotLag();
  expect(behind).toBeGreaterThan(before);
  // The worker measures the slot too: the lag keeps moving in Prometheus with the listener down.
  const seen = await until(lagBytes, (v) => v >= behind, 'the lag grown to what the slot holds');
  expect(await valueOf('up{job="runbooks-listener"}')).toBe(0);

  const handedBefore = (await valueOf('sum(runbooks_orgunit_changes_handed_over_total{target="t1",type="organisationUnit"})')) ?? 0;
  await startListener();
  await until(lagBytes, (v) => v < seen / 2 && v < behind - before, 'the lag recovered after the restart', 120_000);
  await until('sum(runbooks_orgunit_changes_handed_over_total{target="t1",type="organisationUnit"})', (v) => v >= 201 || v > handedBefore, 'the backlog handed over');
  expect(await valueOf('runbooks_orgunit_capture_streaming{slot="runbooks_orgunit_sync"}')).toBe(1);
}, 480_000);

/** The metric names a PromQL expression refers to (ours and the SDK's; `up` is Prometheus's own). */
const metricNames = (expr: string) => [...expr.matchAll(/\b(?:runbooks|temporal)_[a-z0-9_]+\b/g)].map((m) => m[0]);

test('every metric the Grafana dashboard and the alert rules name is one the processes expose', async () => {
  const dashboard = JSON.parse(readFileSync(path.join(repoRoot, 'deploy/grafana/runbooks.json'), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
  const rules = readFileSync(path.join(repoRoot, 'deploy/prometheus/runbooks.rules.yml'), 'utf8');
  const named = [...new Set([...exprs.flatMap(metricNames), ...metricNames(rules)])].sort();
  expect(named.length).toBeGreaterThan(25);
  const exposed = new Set((await (await fetch(`${promUrl}/api/v1/label/__name__/values`)).json() as { data: string[] }).data);
  expect(named.filter((n) => !exposed.has(n))).toEqual([]);
  // And Prometheus evaluates every expression without an error.
  for (const e of exprs) await query(e);
}, 60_000);

test('RUNBOOKS_LOG_FORMAT=json: one JSON object per line from each process, with the run\'s context, and no secret anywhere', async () => {
  const outputs = { worker: worker.output(), gateway: gateway.output(), listener: listenerOutputs.join('') };
  for (const [name, out] of Object.entries(outputs)) {
    const lines = out.split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThan(0);
    const bad = lines.filter((l) => { try { const o = JSON.parse(l); return !(o.time && o.level && typeof o.message === 'string'); } catch { return true; } });
    expect({ name, bad: bad.slice(0, 5) }).toEqual({ name, bad: [] });
  }
  const lines = outputs.worker.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const inStep = lines.filter((l) => l.runbook === 'gatedRunbook' && l.workflowId && l.runId && typeof l.step === 'string');
  expect(new Set(inStep.map((l) => l.step))).toEqual(new Set(['preflight', 'takeDown', 'cutover', 'finish']));

  const secrets = [approvalSecret, hookToken, ...readdirSync(lab.secretsDir).map((f) => readFileSync(path.join(lab.secretsDir, f), 'utf8').trim())];
  const link = hookRequests.find((r) => r.status === 200)!.body.links[0].url as string;
  secrets.push(new URL(link).searchParams.get('t')!);
  for (const [name, out] of Object.entries(outputs)) {
    expect({ name, leaked: secrets.filter((s) => out.includes(s)).length }).toEqual({ name, leaked: 0 });
  }
});
