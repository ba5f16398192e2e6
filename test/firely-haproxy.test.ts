/**
 * The reverse proxy switch of the Firely migration, HAProxy profile: a real HAProxy on a lab host,
 * switched through its runtime API (admin socket, over SSH), under a steady client load: the old
 * and new Firely Server simulators are the two servers of its backend.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { switchProxyUpstream, type SwitchReport } from '../activities/firely/proxy';
import { parseServersState } from '../activities/firely/proxy/haproxy';
import { sshPool } from '../activities/lib/ssh-pool';
import { haproxyProxy, migrateFirelyServerInput } from '../contracts/firely/schema';
import { startFirelyLab, type FirelyLab } from './lab/firely';
import { startLoad } from './support/load';

const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'firely-haproxy-secrets-'));
let lab: FirelyLab;
const env = new MockActivityEnvironment();
const switchTo = (to: string, extra: Record<string, unknown> = {}) =>
  env.run(() => switchProxyUpstream({ proxy: haproxyProxy.parse({ ...lab.proxyInput(), ...extra }), to, dryRun: false })) as Promise<SwitchReport>;

beforeAll(async () => {
  process.env.RUNBOOKS_SECRETS_DIR = secretsDir;
  lab = await startFirelyLab({ secretsDir, proxy: 'haproxy' });
}, 120_000);
afterAll(async () => {
  await sshPool.closeAll();
  await lab?.stop();
  rmSync(secretsDir, { recursive: true, force: true });
});

test('under a steady load the switch to the new server and back fails no request; afterwards only the chosen server answers', async () => {
  const [oldUp, newUp] = [lab.upstreamOf(lab.old), lab.upstreamOf(lab.new)];
  expect(lab.currentUpstream()).toBe(oldUp);
  const load = startLoad(lab.proxyUrl, { connections: 4 });
  await load.after(300);
  // A dry run says what it would do and changes nothing.
  const dry = await env.run(() => switchProxyUpstream({ proxy: haproxyProxy.parse(lab.proxyInput()), to: newUp, dryRun: true }));
  expect(dry).toMatchObject({ changed: false, from: oldUp, actions: [expect.stringMatching(/^would switch backend firely on proxy from .* to .*drain then maint/)] });
  expect(lab.currentUpstream()).toBe(oldUp);

  const toNew = await switchTo(newUp);
  expect(toNew).toMatchObject({ changed: true, from: oldUp });
  expect(toNew.actions[0]).toBe(`switched backend firely on proxy from ${oldUp} to ${newUp} (HAProxy runtime API: ready, drain, maint)`);
  expect(lab.currentUpstream()).toBe(newUp);
  // Saved where a reload reads it back: the new server up, the old one in forced maintenance.
  const saved = lab.proxy.sh('cat /etc/haproxy-firely/servers.state').stdout;
  expect(saved).toMatch(/^1\n# be_id /);
  expect(saved).toMatch(/ firely \d+ old \S+ \d+ 1 /);
  const seenBefore = load.stats.byUpstream.get(newUp) ?? 0;
  const oldBefore = load.stats.byUpstream.get(oldUp) ?? 0;
  await load.after(300);
  expect((load.stats.byUpstream.get(newUp) ?? 0) - seenBefore).toBeGreaterThanOrEqual(300);
  expect(load.stats.byUpstream.get(oldUp) ?? 0).toBe(oldBefore);
  // Again: nothing to do.
  expect(await switchTo(newUp)).toMatchObject({ changed: false, actions: [] });
  // And back, as a rollback does.
  expect(await switchTo(oldUp)).toMatchObject({ changed: true, from: newUp });
  expect(lab.currentUpstream()).toBe(oldUp);
  const newAfterBack = load.stats.byUpstream.get(newUp) ?? 0;
  await load.after(300);
  expect(load.stats.byUpstream.get(newUp) ?? 0).toBe(newAfterBack);
  expect(await switchTo(oldUp)).toMatchObject({ changed: false, actions: [] });
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  expect(stats.byUpstream.get(oldUp)).toBeGreaterThan(0);
  expect(stats.written.length).toBeGreaterThan(100);
}, 180_000);

test('a server that is not in the backend is refused naming the backend and its servers; nothing changes, traffic goes on', async () => {
  const before = lab.currentUpstream();
  const load = startLoad(lab.proxyUrl, { connections: 2 });
  await load.after(100);
  const err = await switchTo('10.255.255.1:4080').catch((e: Error) => e);
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(/^10\.255\.255\.1:4080 is not a server of backend firely on proxy \(it has: old .* \(ready\), new .* \(maint\)\); nothing was changed$/);
  expect(lab.currentUpstream()).toBe(before);
  // HAProxy's own refusals (answered as text) are errors with what it said.
  await expect(switchTo(lab.upstreamOf(lab.new), { backend: 'nofirely' })).rejects.toThrow(/backend nofirely: not a server state list \(version 1\)\. HAProxy answered: Can't find backend\./);
  expect(lab.currentUpstream()).toBe(before);
  await load.after(100);
  const stats = await load.stop();
  expect(stats.failures).toEqual([]);
  expect([...stats.byUpstream.keys()]).toEqual([before]);
}, 120_000);

test('the schema refuses a bad HAProxy input naming the field', () => {
  const input = { ...lab.migrationInput(), proxy: { ...lab.proxyInput(), backend: 'fire ly', adminSocket: '/run/haproxy/a,dmin.sock' } };
  const r = migrateFirelyServerInput.safeParse(input);
  expect(r.success).toBe(false);
  const fields = r.error!.issues.map((i) => i.path.join('.'));
  expect(fields).toEqual(expect.arrayContaining(['proxy.backend', 'proxy.adminSocket']));
  // And a good one is accepted with its defaults.
  const ok = haproxyProxy.parse({ kind: 'haproxy', host: lab.proxyInput().host, verifyUrl: 'http://proxy.example:8080/metadata' });
  expect(ok).toMatchObject({ adminSocket: '/run/haproxy/admin.sock', backend: 'firely', socat: '/usr/bin/socat', sudo: false, upstreamHeader: 'X-Upstream' });
  expect(ok.stateFile).toBeUndefined();
});

test('whatever the admin socket says, the parser names it or reads it, and never crashes the worker', () => {
  const header = '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port';
  const list = ['1', header, '3 firely 1 old 10.0.0.1 2 0 1 1 5 1 0 2 0 0 0 0 - 4080', '3 firely 2 new 10.0.0.2 2 4 1 1 5 1 0 0 8 0 0 0 - 4080',
    '3 firely 3 gone 10.0.0.3 0 9 1 1 5 1 0 0 8 0 0 0 - 4080', '4 other 1 x 10.0.0.9 2 0 1 1 5 1 0 2 0 0 0 0 - 80', 'short line', ''].join('\n');
  expect(parseServersState(list, 'firely')).toEqual([
    { name: 'old', addr: '10.0.0.1', port: 4080, fqdn: undefined, admin: 'ready', running: true },
    // `disabled` in the configuration, then set ready: serves.
    { name: 'new', addr: '10.0.0.2', port: 4080, fqdn: undefined, admin: 'ready', running: true },
    { name: 'gone', addr: '10.0.0.3', port: 4080, fqdn: undefined, admin: 'maint', running: false },
  ]);
  expect(() => parseServersState('No such server.\n', 'firely')).toThrow(/HAProxy answered: No such server\./);
  expect(() => parseServersState('', 'firely')).toThrow(/HAProxy answered: \(nothing\)/);
  expect(() => parseServersState('1\n# be_id be_name srv_id\n', 'firely')).toThrow(/no srv_name, srv_addr, srv_port, srv_op_state, srv_admin_state column/);
  expect(() => parseServersState(['1', header, '3 firely 1 old 10.0.0.1 x 0 1 1 5 1 0 2 0 0 0 0 - 4080'].join('\n'), 'firely')).toThrow(/cannot read the server state line/);
  const huge = `1\n${header}\n${'3 firely 1 old 10.0.0.1 2 0 1 1 5 1 0 2 0 0 0 0 - 4080\n'.repeat(100_000)}`;
  expect(parseServersState(huge, 'firely').length).toBeLessThanOrEqual(10_000);
  expect(() => parseServersState('x'.repeat(5_000_000), 'firely')).toThrow(/^not a server state list/);
});

test('a new server that does not answer through the proxy is put back in maintenance before anything drains; clients stay on the old one', async () => {
  const [oldUp, newUp] = [lab.upstreamOf(lab.old), lab.upstreamOf(lab.new)];
  expect(lab.currentUpstream()).toBe(oldUp);
  await lab.new.stop();
  const load = startLoad(lab.proxyUrl, { connections: 2 });
  await load.after(100);
  await expect(switchTo(newUp)).rejects.toThrow(new RegExp(`is not served by ${newUp} .* new is back in maintenance; clients stay on ${oldUp}\\.$`, 's'));
  expect(lab.currentUpstream()).toBe(oldUp);
  await load.after(100);
  const stats = await load.stop();
  // A request HAProxy sent to the dead server meanwhile was redispatched to the old one (option redispatch).
  expect(stats.failures).toEqual([]);
  expect([...stats.byUpstream.keys()]).toEqual([oldUp]);
}, 150_000);
