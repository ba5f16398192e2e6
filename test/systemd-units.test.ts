/**
 * The service units of deploy/systemd/ (an operations host): systemd's own checker accepts them
 * without a word (it only warns, exit 0, on an unknown key or a bad value, so a warning fails here
 * too), and each keeps what the README promises: a restart policy, the dedicated user, no
 * privileges to gain, a read-only system, secrets as credentials, the worker templated by build.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './support/processes';

const unitsDir = path.join(repoRoot, 'deploy/systemd');
const units = ['runbooks-worker@.service', 'runbooks-approvals.service', 'runbooks-orgunit-listener.service'];

/** The [Service] section's settings: key -> every value it is given. */
function serviceSettings(unit: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(path.join(unitsDir, unit), 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) { section = header[1]; continue; }
    const eq = line.indexOf('=');
    if (section !== 'Service' || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

function verify(files: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('/usr/bin/systemd-analyze', ['verify', '--man=no', ...files], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, output: `${stdout}${stderr}`.trim() });
    });
  });
}

test('systemd-analyze verify accepts every unit, without a warning (the worker as an instance: runbooks-worker@<build>)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'units-'));
  try {
    const files = units.map((u) => {
      const file = path.join(dir, u.replace('@.service', '@0a1b2c3d4e5f.service'));
      copyFileSync(path.join(unitsDir, u), file);
      return file;
    });
    expect(await verify(files)).toEqual({ code: 0, output: '' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the checker catches what it must: a misspelt hardening key and a bad value are reported', async () => {
  // The test above relies on the output being empty only when all is well.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'units-'));
  try {
    const file = path.join(dir, 'runbooks-approvals.service');
    const text = readFileSync(path.join(unitsDir, 'runbooks-approvals.service'), 'utf8');
    writeFileSync(file, text.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes').replace('ProtectSystem=strict', 'ProtectSystem=strictly'));
    const { output } = await verify([file]);
    expect(output).toMatch(/Unknown key 'NoNewPrivilege'/);
    expect(output).toMatch(/strictly/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.each(units)('%s restarts on failure, runs as the runbooks user, gains no privilege, writes nothing outside its private /tmp, reads secrets as credentials', (unit) => {
  const s = serviceSettings(unit);
  const one = (key: string) => s.get(key)?.at(-1);
  expect(one('Restart')).toBe('on-failure');
  expect(one('User')).toBe('runbooks');
  expect(one('NoNewPrivileges')).toBe('yes');
  expect(one('ProtectSystem')).toBe('strict');
  expect(one('PrivateTmp')).toBe('yes');
  expect(one('CapabilityBoundingSet')).toBe('');
  expect(s.get('ReadWritePaths')).toBeUndefined();
  expect(one('ExecStart')).toMatch(/^\/usr\/bin\/node --import tsx workers\/[a-z-]+\.ts$/);
  // Secrets come in as credentials (%d), never as values in the unit or its environment.
  expect(s.get('LoadCredential')).toContain('temporal-client.key:/etc/runbooks/credentials/temporal-client.key');
  expect(s.get('Environment')).toContain('TEMPORAL_TLS_CLIENT_KEY_PATH=%d/temporal-client.key');
  expect(s.get('Environment')!.join(' ')).not.toMatch(/(SECRET|PASSWORD|TOKEN)=(?!%d)/);
});

test('the worker is templated by build: two builds run side by side, each from its own release, as its own version', () => {
  const s = serviceSettings('runbooks-worker@.service');
  expect(s.get('WorkingDirectory')).toEqual(['/opt/runbooks/releases/%i']);
  expect(s.get('Environment')).toContain('RUNBOOKS_BUILD_ID=%i');
  expect(s.get('Environment')).toContain('RUNBOOKS_SECRETS_DIR=%d');
  // Longer than the worker's own bound on a stop (RUNBOOKS_SHUTDOWN_GRACE 30s + 3 s): systemd never kills it mid-grace.
  expect(Number(/^(\d+)s$/.exec(s.get('TimeoutStopSec')![0])![1])).toBeGreaterThan(33);
});
