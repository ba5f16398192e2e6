/**
 * A benchmark ends within the bound it prints at start, with a clear failure saying what it was
 * waiting for when that bound passes (issue 24, finding 8: a benchmark hung for 15 minutes).
 */
import { readFileSync } from 'node:fs';
import { eventually, startProcess } from './support/processes';
import { alive, descendants } from './support/process-tree';

const cmdline = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; } };

test('past its deadline, a benchmark says what it waited for, kills what it started and exits 1', async () => {
  const bench = startProcess('scripts/bench.ts', ['promotion', '--deadline', '8'], {});
  await bench.waitFor(/promotion benchmark: ends within 8 s/);
  // What it started: the dev server and the worker (which takes longer than 8 s to be ready).
  const started = await eventually(async () => { const d = descendants(bench.child.pid!); return d.some((p) => cmdline(p).includes('workers/worker.ts')) && d; }, 'the bench\'s worker process', 8_000);
  const code = await Promise.race([bench.exited, new Promise<string>((r) => setTimeout(() => r('still running 60 s later'), 60_000))]);
  expect(code).toBe(1);
  expect(bench.output()).toMatch(/promotion benchmark FAILED: not done within 8 s; it was waiting for .+\./);
  expect(started.filter(alive)).toEqual([]);
}, 90_000);
