/** Every runbook ships an example input that validates, and an up-to-date JSON Schema; the compose file is valid. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { catalog as realCatalog } from '../contracts/catalog';
import { validateInput } from '../contracts/input';
import { jsonSchemaOf, schemaPath, staleSchemas } from '../scripts/schemas';
import { catalog as testCatalog } from './catalog';
import { repoRoot } from './support/processes';

describe.each(testCatalog.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  test('its example input validates against its schema as is', () => {
    const example = JSON.parse(readFileSync(path.join(repoRoot, entry.example), 'utf8'));
    expect(() => validateInput(entry.name, entry.schema, example)).not.toThrow();
  });
});

test('the committed JSON Schemas are what npm run schemas generates', () => {
  expect(staleSchemas(realCatalog)).toEqual([]);
  for (const entry of realCatalog) expect(JSON.parse(readFileSync(schemaPath(entry), 'utf8'))).toEqual(JSON.parse(jsonSchemaOf(entry)));
});

test('docker-compose.temporal.yml is a valid compose file with pinned images', () => {
  const r = spawnSync('docker-compose', ['-f', 'docker-compose.temporal.yml', 'config'], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, TEMPORAL_DB_PASSWORD: 'only-for-validation' },
  });
  expect(r.stderr).not.toMatch(/ERROR/);
  expect(r.status).toBe(0);
  const images = [...r.stdout.matchAll(/image: (\S+)/g)].map((m) => m[1]);
  expect(images.length).toBe(4);
  for (const image of images) expect(image).toMatch(/:\d+\.\d+(\.\d+)?(-[\w.-]+)?$/);
  // Without the password it refuses rather than start a database with a default one.
  const noPassword = spawnSync('docker-compose', ['-f', 'docker-compose.temporal.yml', 'config'], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, TEMPORAL_DB_PASSWORD: '' } });
  expect(noPassword.status).not.toBe(0);
});

test('each container of docker-compose.temporal.yml mounts only the TLS files it needs, never the CA key', () => {
  const tls = '/srv/tls-for-test';
  const r = spawnSync('docker-compose', ['-f', 'docker-compose.temporal.yml', 'config'], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, TEMPORAL_DB_PASSWORD: 'only-for-validation', TEMPORAL_TLS_DIR: tls },
  });
  expect(r.status).toBe(0);
  // The normalized config: "  <service>:" at two spaces under services, its mounts as "    - <source>:<target>:<mode>".
  const mounts: Record<string, string[]> = {};
  let service = '';
  for (const line of r.stdout.split('\n')) {
    const head = /^  ([\w-]+):$/.exec(line);
    if (head) service = head[1];
    const mount = /^    - (\/[^:]+):([^:]+)(?::(\w+))?$/.exec(line);
    if (mount && mount[1].startsWith(tls)) (mounts[service] ??= []).push(`${mount[1].slice(tls.length + 1)} ${mount[3]}`);
  }
  expect(mounts).toEqual({
    temporal: ['ca.pem ro', 'server.pem ro', 'server.key ro'],
    'temporal-admin-tools': ['ca.pem ro', 'client.pem ro', 'client.key ro'],
    'temporal-ui': ['ca.pem ro', 'client.pem ro', 'client.key ro'],
  });
  expect(r.stdout).not.toContain('ca.key');
});
