/**
 * A steady client load through a proxy, as the clinic systems in front of Firely Server make it:
 * a few keep-alive connections, each sending reads (the capability statement, a Patient by id) and writes
 * (Patients PUT with an id the client chose, so a write can be sent again safely), one request after
 * another. Every answer is checked; every failure is kept with why.
 *
 * As HTTP clients do for idempotent requests, a request whose kept-alive connection the proxy closed
 * before any answer (an nginx reload closes its old workers' idle connections) is sent once more on
 * a new connection; those are counted in `resent`. A second failure, or any error status, is a failure.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';

export interface LoadStats {
  requests: number;
  failures: string[];
  /** Requests sent again after their connection was closed before any answer. */
  resent: number;
  /** Patients whose creation was acknowledged (201), with the server that answered. */
  written: Array<{ id: string; by: string }>;
  /** Which upstream answered, per answer (X-Upstream). */
  byUpstream: Map<string, number>;
  latenciesMs: number[];
  /**
   * Every request, answered or failed, in the order they ended: when it was first sent
   * (performance.now()), how long until its whole answer (or its failure), which upstream answered
   * ('?' when none did), whether it succeeded, whether it was sent again. At most `maxSamples`
   * (the first ones; default 200,000).
   */
  samples: LoadSample[];
}

export interface LoadSample {
  sentAt: number;
  ms: number;
  upstream: string;
  ok: boolean;
  resent: boolean;
}

export interface LoadOptions {
  connections?: number;
  /** Every n-th request is a write (default 5). */
  writeEvery?: number;
  maxSamples?: number;
  /** Patients the reads ask for by id (resources every server behind the proxy has); without them reads ask /metadata only. */
  readIds?: string[];
}

export function startLoad(baseUrl: string, opts: LoadOptions = {}) {
  const pool = new Pool(baseUrl, { connections: opts.connections ?? 4, pipelining: 1 });
  const stats: LoadStats = { requests: 0, failures: [], resent: 0, written: [], byUpstream: new Map(), latenciesMs: [], samples: [] };
  const maxSamples = opts.maxSamples ?? 200_000;
  const sample = (s: LoadSample) => { if (stats.samples.length < maxSamples) stats.samples.push(s); };
  let stopping = false;
  const one = async (n: number) => {
    const write = n % (opts.writeEvery ?? 5) === 0;
    const id = randomUUID();
    // Reads: the capability statement, and Patients by id (a search would scan the whole table on FerretDB).
    const readId = opts.readIds?.length ? opts.readIds[n % opts.readIds.length] : undefined;
    const path = write ? `/Patient/${id}` : n % 2 || !readId ? '/metadata' : `/Patient/${readId}`;
    const method = write ? 'PUT' : 'GET';
    const t0 = performance.now();
    let again = false;
    const send = () => pool.request({
      method, path,
      headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
      body: write ? JSON.stringify({ resourceType: 'Patient', id, name: [{ family: `Load${n}` }] }) : undefined,
      headersTimeout: 30_000, bodyTimeout: 30_000,
    });
    try {
      const res = await send().catch((err: Error & { code?: string }) => {
        if (err.code !== 'UND_ERR_SOCKET' && err.code !== 'ECONNRESET') throw err;
        stats.resent += 1;
        again = true;
        return send();
      });
      const body = await res.body.text();
      const took = performance.now() - t0;
      stats.latenciesMs.push(took);
      const upstream = String(res.headers['x-upstream'] ?? '?');
      stats.byUpstream.set(upstream, (stats.byUpstream.get(upstream) ?? 0) + 1);
      // A PUT that was sent again may find its first copy arrived: 200 (updated) instead of 201.
      const ok = write ? res.statusCode === 201 || res.statusCode === 200 : res.statusCode === 200;
      sample({ sentAt: t0, ms: took, upstream, ok, resent: again });
      if (!ok) stats.failures.push(`${method} ${path}: ${res.statusCode} ${body.slice(0, 200)}`);
      else if (write) stats.written.push({ id, by: upstream });
    } catch (err) {
      sample({ sentAt: t0, ms: performance.now() - t0, upstream: '?', ok: false, resent: again });
      stats.failures.push(`${method} ${path}: ${(err as Error).message}`);
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
