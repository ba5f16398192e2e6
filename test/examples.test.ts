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
