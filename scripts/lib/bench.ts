/** What the benchmarks share: percentiles, event times, waiting for a state, the in-process floor worker, and the global deadline. */
import os from 'node:os';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { removeOwnLabs } from '../../test/lab/netns';
import { descendants } from '../../test/support/process-tree';

let waitingFor = 'the benchmark to start';

/** Names what the benchmark waits for now: the deadline's message says it. */
export function waitingOn(what: string): void {
  waitingFor = what;
}

/**
 * Every benchmark ends, with figures or a clear failure, within a bound printed at its start.
 * Past it: what it was waiting for is printed, every process it started is killed (worker, servers,
 * lab hosts), its labs removed, and it exits 1 — a stuck peer never turns a benchmark into a hang.
 */
export function benchDeadline(name: string, ms: number): void {
  const bound = ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${Math.round(ms / 1000)} s`;
  console.log(`${name} benchmark: ends within ${bound} (--deadline SECONDS to change)`);
  setTimeout(() => {
    console.error(`\n${name} benchmark FAILED: not done within ${bound}; it was waiting for ${waitingFor}. Killing what it started and removing its labs.`);
    for (const pid of descendants(process.pid).reverse()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    try { removeOwnLabs(); } catch (err) { console.error(`Removing the labs failed too: ${String(err)}`); }
    process.exit(1);
  }, ms).unref();
}

/** The p-th percentile (nearest rank) of some measurements. */
/** The machine's load, to print at a benchmark's start and end: a busy machine shows in its figures. */
export const loadLine = (): string => `load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} cores`;

export const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

/** A history event's time, in milliseconds since the epoch. */
export const eventMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

/** Polls `probe` until it gives a value (a failed probe counts as not yet). */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 10): Promise<T> {
  waitingOn(what);
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    const v = await probe().catch(() => undefined);
    if (v) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Runs `body` with a worker in this process serving the test workflows (the benchmarks' floors) on `queue`. */
export async function withFloorWorker<T>(address: string, queue: string, body: (client: Client) => Promise<T>): Promise<T> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address }), taskQueue: queue,
    workflowsPath: require.resolve('../../test/workflows'), activities: { async floorNoop() { /* nothing */ } },
  });
  const running = worker.run();
  const client = new Client({ connection: await Connection.connect({ address }) });
  try {
    return await body(client);
  } finally {
    worker.shutdown();
    await running;
    await client.connection.close();
  }
}
