/**
 * A steady client load through a proxy, as the clinic systems in front of Firely Server make it:
 * a few connections, each sending reads (the capability statement, a search) and writes (new
 * Patients), one request after another. Every answer is checked; every failure is kept with why.
 */
import { Pool } from 'undici';

export interface LoadStats {
  requests: number;
  failures: string[];
  /** Patients whose creation was acknowledged (201), with the server that answered. */
  written: Array<{ id: string; by: string }>;
  /** Which upstream answered, per answer (X-Upstream). */
  byUpstream: Map<string, number>;
  latenciesMs: number[];
}

export function startLoad(baseUrl: string, opts: { connections?: number; writeEvery?: number } = {}) {
  const pool = new Pool(baseUrl, { connections: opts.connections ?? 4, pipelining: 1 });
  const stats: LoadStats = { requests: 0, failures: [], written: [], byUpstream: new Map(), latenciesMs: [] };
  let stopping = false;
  const one = async (n: number) => {
    const write = n % (opts.writeEvery ?? 5) === 0;
    const path = write ? '/Patient' : n % 2 ? '/metadata' : '/Patient?_count=1';
    const t0 = performance.now();
    try {
      const res = await pool.request({
        method: write ? 'POST' : 'GET', path,
        headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
        body: write ? JSON.stringify({ resourceType: 'Patient', name: [{ family: `Load${n}` }] }) : undefined,
        headersTimeout: 30_000, bodyTimeout: 30_000,
      });
      const body = await res.body.text();
      stats.latenciesMs.push(performance.now() - t0);
      const upstream = String(res.headers['x-upstream'] ?? '?');
      stats.byUpstream.set(upstream, (stats.byUpstream.get(upstream) ?? 0) + 1);
      if (res.statusCode !== (write ? 201 : 200)) stats.failures.push(`${write ? 'POST' : 'GET'} ${path}: ${res.statusCode} ${body.slice(0, 200)}`);
      else if (write) stats.written.push({ id: JSON.parse(body).id, by: upstream });
    } catch (err) {
      stats.failures.push(`${write ? 'POST' : 'GET'} ${path}: ${(err as Error).message}`);
    } finally {
      stats.requests += 1;
    }
  };
  let n = 0;
  const lanes = Array.from({ length: opts.connections ?? 4 }, async () => { while (!stopping) await one(n++); });
  const done = Promise.all(lanes);
  return {
    stats,
    /** Resolves once `count` more requests have been answered. */
    async after(count: number): Promise<void> {
      const target = stats.requests + count;
      while (stats.requests < target) await new Promise((r) => setTimeout(r, 20));
    },
    async stop(): Promise<LoadStats> {
      stopping = true;
      await done;
      await pool.close();
      return stats;
    },
  };
}
