/** ./scripts/start.sh as a newcomer runs it: the UI answers, and Ctrl-C leaves nothing behind. */
import { spawn } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './support/global-setup';
import { eventually, repoRoot } from './support/processes';
import { alive, descendants } from './support/process-tree';

test('start.sh brings up the dev server with its UI, the worker and the gateway, and SIGINT stops all of it', async () => {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'start-sh-'));
  const [port, uiPort, approvalPort] = [await freePort(), await freePort(), await freePort()];
  const env: Record<string, string | undefined> = { ...process.env, RUNBOOKS_STATE_DIR: stateDir, TEMPORAL_PORT: String(port), TEMPORAL_UI_PORT: String(uiPort), APPROVAL_PORT: String(approvalPort) };
  delete env.TEMPORAL_ADDRESS;
  const child = spawn(path.join(repoRoot, 'scripts/start.sh'), [], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  await eventually(async () => out.includes('[start] ready'), `start.sh to be ready; output:\n${out}`, 120_000);
  const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
  expect(ui.status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${approvalPort}/healthz`)).status).toBe(200);
  expect(out).toContain(`http://127.0.0.1:${uiPort}`);
  expect(statSync(path.join(stateDir, 'temporal.db')).size).toBeGreaterThan(0);
  expect(statSync(path.join(stateDir, 'approval-secret')).mode & 0o777).toBe(0o600);

  const family = descendants(child.pid!);
  expect(family.length).toBeGreaterThanOrEqual(3); // dev server, worker, gateway
  child.kill('SIGINT');
  expect(await exited).toBe(0);
  await eventually(async () => family.every((pid) => !alive(pid)), 'every process started by start.sh to exit', 40_000);
  await expect(fetch(`http://127.0.0.1:${uiPort}/`)).rejects.toThrow();
});
