/**
 * Org-unit approval benchmark: from the approver's click (the POST of the signed link's form, with
 * the draft version the page showed, which the gateway checks against the draft as it is now) to
 * the change visible on the target (its COMMIT), p50/p95 over --runs changes, one at a time. The
 * floor, on the same Temporal server in the same run: a raw signal round trip (signal a waiting
 * workflow, it ends, the client sees the result).
 */
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { startGateway } from '../workers/approvals';
import { echoReadyQuery, echoSignal } from '../test/workflows/floor';
import { loadLine, pct, until, withFloorWorker } from './lib/bench';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startDhis2Lab, sourceImport } from '../test/lab/dhis2';
import { startProcess } from '../test/support/processes';

const row = (label: string, xs: number[]) => `  ${label.padEnd(44)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p95 ${pct(xs, 95).toFixed(0).padStart(5)} ms   max ${Math.max(...xs).toFixed(0).padStart(5)} ms`;

/** A raw signal round trip on the same server: signal -> the waiting run ends -> the client has its result. */
function signalFloor(address: string, runs: number): Promise<number[]> {
  const queue = `bench-echo-${process.pid}`;
  return withFloorWorker(address, queue, async (client) => {
    const out: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const handle = await client.workflow.start('signalEcho', { taskQueue: queue, workflowId: `bench-echo-${process.pid}-${i}` });
      await handle.query(echoReadyQuery);
      const t0 = Date.now();
      await handle.signal(echoSignal);
      await handle.result();
      if (i > 0) out.push(Date.now() - t0);
    }
    return out;
  });
}

export async function orgunitApprovalBench(runs: number, repoRoot: string): Promise<void> {
  const atStart = loadLine();
  const server = await startDevServer({ cliPath: findTemporalCli(repoRoot), port: await freePort() });
  process.env.TEMPORAL_ADDRESS = server.address;
  const lab = await startDhis2Lab([]);
  const target = await lab.addTarget('a1', { config: { fieldsRequireApproval: ['organisationunit.code'], approval: { approvers: ['alice'], timeout: '1h' } } });
  const queue = `bench-approval-${process.pid}`;
  const secret = randomBytes(32).toString('base64url');
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const gateway = await startGateway({ client, secret, port: 0 });
  const worker = startProcess('workers/worker.ts', [], {
    ...lab.workerEnv, RUNBOOKS_SET_CURRENT: 'true', TEMPORAL_ADDRESS: server.address, RUNBOOKS_TASK_QUEUE: queue, APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url,
  });
  await worker.waitFor(/Worker ready/);
  try {
    await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: `bench-setup-${Date.now()}`, args: [lab.setupInput()] });
    await lab.startListener(queue);
    const click: number[] = [];
    const page: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const uid = `B${String(i).padStart(4, '0')}${randomBytes(3).toString('hex')}`;
      await sourceImport(lab, 'organisationUnit', [{ id: uid, name: `Bench ${i}`, shortName: `Bench ${i}`, code: `BENCH_${uid}`, openingDate: '2020-01-01' }]);
      // The approver's own link comes in a private message to them (the ticket carries none).
      const link = await until(`alice's approval link for ${uid}`, async () => {
        const pm = (await target.messages()).find((t: { subject: string; messageType: string }) => t.messageType === 'PRIVATE' && t.subject.includes('Your approval link') && t.subject.includes(uid));
        return /\n(https?:\/\/\S+\/approve\?t=\S+)/.exec(pm?.messages?.[0]?.text ?? '')?.[1];
      });
      const visible = new Promise<number>((resolve) => {
        const off = target.onWrite((w) => { if (w.uid === uid) { off(); resolve(w.at); } });
      });
      // The approver opens the link first (the page shows the draft and its version, which the form carries): not measured.
      const fp = /name="fp" value="([0-9a-f]+)"/.exec(await (await fetch(link)).text())?.[1];
      if (!fp) throw new Error(`the approval page for ${uid} shows no draft version`);
      const t0 = Date.now();
      const res = await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: new URL(link).searchParams.get('t')!, decision: 'approve', fp }) });
      await res.text();
      const answered = Date.now();
      const at = await visible;
      // The first change warms the worker, the gateway and the target's connections: not measured.
      if (i > 0) { click.push(at - t0); page.push(answered - t0); }
      if (process.env.BENCH_VERBOSE) console.log(`  ${uid}: click -> visible ${at - t0} ms, page answered ${answered - t0} ms (${res.status})`);
    }
    await lab.listener?.kill('SIGTERM');
    await worker.kill('SIGTERM');
    const floor = await signalFloor(server.address, runs);
    console.log(`org-unit approval benchmark: ${runs} gated creates on one target, approved one at a time through the gateway`);
    console.log(row('link click (POST) -> change visible on target', click));
    console.log(row('link click (POST) -> confirmation page', page));
    console.log(row('floor: raw signal round trip, same server', floor));
    console.log(`  at start: ${atStart}; at end: ${loadLine()}`);
    console.log(`  ratio (click -> visible / floor)              p50 ${(pct(click, 50) / pct(floor, 50)).toFixed(1)}x   p95 ${(pct(click, 95) / pct(floor, 95)).toFixed(1)}x`);
  } finally {
    await lab.listener?.kill('SIGTERM');
    await worker.kill('SIGTERM');
    await gateway.close();
    await client.connection.close();
    await lab.stop();
    await server.stop();
  }
}
