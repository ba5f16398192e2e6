/**
 * The reverse proxy switch of the Firely migration, against a real nginx on a lab host reached over
 * SSH, under a steady client load: the old and new Firely Server simulators behind it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { switchProxyUpstream } from '../activities/firely/proxy';
import { sshPool } from '../activities/lib/ssh-pool';
import { nginxProxy } from '../contracts/firely/schema';
import { startFirelyLab, type FirelyLab } from './lab/firely';
import { startLoad } from './support/load';

const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'firely-proxy-secrets-'));
let lab: FirelyLab;
const env = new MockActivityEnvironment();
const switchTo = (to: string, extra: Record<string, unknown> = {}) =>
  env.run(() => switchProxyUpstream({ proxy: nginxProxy.parse({ ...lab.proxyInput(), ...extra }), to, dryRun: false }));

beforeAll(async () => {
  process.env.RUNBOOKS_SECRETS_DIR = secretsDir;
  lab = await startFirelyLab({ secretsDir });
}, 120_000);
afterAll(async () => {
  await sshPool.closeAll();
  await lab?.stop();
  rmSync(secretsDir, { recursive: true, force: true });
});

test('under a steady load the switch to the new server and back fails no request; afterwards only the new server answers', async () => {
  const [oldUp, newUp] = [lab.upstreamOf(lab.old), lab.upstreamOf(lab.new)];
  const load = startLoad(lab.proxyUrl, { connections: 4 });
  await load.after(300);
  const toNew = await switchTo(newUp);
  expect(toNew).toMatchObject({ changed: true, from: oldUp });
  expect(lab.currentUpstream()).toBe(newUp);
  const seenBefore = load.stats.byUpstream.get(newUp) ?? 0;
  await load.after(300);
  expect((load.stats.byUpstream.get(newUp) ?? 0) - seenBefore).toBeGreaterThanOrEqual(300);
  // Again: nothing to do.
  expect(await switchTo(newUp)).toMatchObject({ changed: false, actions: [] });
  // And back, as a rollback does.
  expect(await switchTo(oldUp)).toMatchObject({ changed: true, from: newUp });
  await load.after(300);
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  expect(stats.byUpstream.get(oldUp)).toBeGreaterThan(0);
  expect(stats.written.length).toBeGreaterThan(100);
}, 180_000);

test('a configuration nginx -t refuses is put back and never reloaded; traffic goes on', async () => {
  const before = lab.currentUpstream();
  const load = startLoad(lab.proxyUrl, { connections: 2 });
  await load.after(100);
  await expect(switchTo('no-such-host.invalid:4080')).rejects.toThrow(/nginx -t on proxy refused the configuration with upstream no-such-host\.invalid:4080; the previous file is back and nginx was not reloaded:\n.*host not found/s);
  expect(lab.currentUpstream()).toBe(before);
  await load.after(100);
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  expect([...stats.byUpstream.keys()]).toEqual([before]);
}, 120_000);
