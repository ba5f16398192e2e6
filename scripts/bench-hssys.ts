/**
 * How long mirrorHssys leaves HSSYS unavailable on the primary: from the moment the primary's
 * instance marks it dismounted to the moment it is mounted again (read from the instance's own
 * state every 2 ms, outside the runbook), beside the floor, a bare copy of the same IRIS.DAT
 * between the same two lab hosts over the same kind of SSH channels (cat | dd, no checks).
 * Also where the window goes: the dismount, copy and mount activities' durations from the history.
 *
 * Options: --runs N (default 5). Needs root (the lab's network namespaces and sshd).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { connectSsh } from '../activities/lib/ssh';
import { eventMs, pct } from './lib/bench';
import { findTemporalCli, startDevServer } from './lib/dev-server';
import { freePort } from '../test/support/global-setup';
import { startProcess } from '../test/support/processes';
import { IRIS_OWNER, IRIS_SSH_KEY_SECRET, mirrorHssysInputFor, startIrisLab, type IrisLab, type IrisLabHost } from '../test/lab/iris';

const row = (label: string, xs: number[]) => `  ${label.padEnd(44)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   max ${Math.max(...xs).toFixed(0).padStart(5)} ms`;

/** The bare copy: cat on A piped through this process into dd on B, as the runbook's copy streams it. */
async function bareCopy(lab: IrisLab): Promise<number> {
  const target = (h: IrisLabHost) => ({ label: h.name, host: h.address, port: 22, user: IRIS_OWNER.name, hostKey: h.hostKey, privateKey: { secret: IRIS_SSH_KEY_SECRET } });
  const [a, b] = await Promise.all([connectSsh(target(lab.a)), connectSsh(target(lab.b))]);
  try {
    const t0 = performance.now();
    const r = await a.pipeTo('cat -- /usr/irissys/mgr/hssys/IRIS.DAT', b, 'dd of=/home/irisowner/bench-copy bs=1M conv=fsync status=none');
    const took = performance.now() - t0;
    if (r.code !== 0 || r.sinkCode !== 0) throw new Error(`the bare copy failed: ${r.stderr}`);
    await b.run('rm -f /home/irisowner/bench-copy');
    return took;
  } finally {
    a.close();
    b.close();
  }
}

/** Watches the primary's HSSYS mount flag; resolves with the dismounted window once it is mounted again. */
function watchUnavailable(lab: IrisLab): { window: Promise<number>; stop(): void } {
  let down: number | undefined;
  let stopped = false;
  const window = new Promise<number>((resolve, reject) => {
    const tick = () => {
      if (stopped) return reject(new Error('HSSYS was never dismounted on the primary'));
      let mounted: boolean;
      try { mounted = lab.a.state().databases.HSSYS.mounted; } catch { setTimeout(tick, 2); return; }
      const now = performance.now();
      if (!mounted && down === undefined) down = now;
      if (mounted && down !== undefined) return resolve(now - down);
      setTimeout(tick, 2);
    };
    tick();
  });
  window.catch(() => undefined);
  return { window, stop: () => { stopped = true; } };
}

export async function hssysBench(runs: number, repoRoot: string): Promise<void> {
  const server = await startDevServer({ cliPath: findTemporalCli(repoRoot), port: await freePort() });
  const queue = `bench-hssys-${process.pid}`;
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'bench-secrets-'));
  process.env.RUNBOOKS_SECRETS_DIR = secretsDir;
  const worker = startProcess('workers/worker.ts', [], { RUNBOOKS_SET_CURRENT: 'true', TEMPORAL_ADDRESS: server.address, RUNBOOKS_TASK_QUEUE: queue, RUNBOOKS_SECRETS_DIR: secretsDir });
  await worker.waitFor(/Worker ready/);
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  let datBytes = 0;
  const figures = { unavailable: [] as number[], floor: [] as number[], dismount: [] as number[], copy: [] as number[], mount: [] as number[], run: [] as number[] };
  try {
    for (let i = 0; i < runs; i++) {
      const lab = await startIrisLab({ secretsDir });
      try {
        datBytes = statSync(lab.a.hssysDat).size;
        figures.floor.push(await bareCopy(lab));
        const watch = watchUnavailable(lab);
        const t0 = performance.now();
        const handle = await client.workflow.start('mirrorHssys', { taskQueue: queue, workflowId: `bench-hssys-${process.pid}-${i}`, args: [mirrorHssysInputFor(lab)] });
        try {
          await handle.result();
        } finally {
          watch.stop();
        }
        figures.run.push(performance.now() - t0);
        figures.unavailable.push(await watch.window);
        // Where the window goes: the primary's dismount, the copy and the primary's mount (first of each), start to completion.
        const events = (await handle.fetchHistory()).events ?? [];
        const took = (type: string) => {
          const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type);
          const started = events.find((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '') === String(scheduled?.eventId));
          const completed = events.find((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === String(scheduled?.eventId));
          return eventMs(completed?.eventTime) - eventMs(started?.eventTime);
        };
        figures.dismount.push(took('dismountDatabase'));
        figures.copy.push(took('copyDatabaseFile'));
        figures.mount.push(took('mountDatabase'));
        console.log(`run ${i + 1}: HSSYS unavailable on the primary ${figures.unavailable[i].toFixed(0)} ms; bare copy ${figures.floor[i].toFixed(0)} ms; whole run ${figures.run[i].toFixed(0)} ms`);
      } finally {
        await lab.stop();
      }
    }
    console.log(`\nhssys benchmark (IRIS simulator, IRIS.DAT of ${(datBytes / 1048576).toFixed(1)} MB, both members reached over SSH, ${runs} runs)`);
    console.log(row('HSSYS unavailable on the primary', figures.unavailable));
    console.log(row('floor: bare copy of IRIS.DAT A -> B', figures.floor));
    console.log(row('  of which: dismount activity', figures.dismount));
    console.log(row('  of which: copy activity (checksums, owner)', figures.copy));
    console.log(row('  of which: mount activity', figures.mount));
    console.log(row('whole run, start to end', figures.run));
    console.log(`\n  unavailable / floor: ${(pct(figures.unavailable, 50) / pct(figures.floor, 50)).toFixed(1)}x at p50`);
  } finally {
    await worker.kill('SIGTERM');
    await client.connection.close();
    await server.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  }
}
