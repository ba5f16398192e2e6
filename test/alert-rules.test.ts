/**
 * The alert rules in deploy/prometheus/ are valid (promtool check rules) and fire exactly when
 * they should: promtool's unit tests (runbooks.rules.test.yml) feed each alert series that fire it
 * and series that do not. The example scrape configuration is valid too.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './support/processes';

const dir = path.join(repoRoot, 'deploy/prometheus');
const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });

test('promtool check rules: every rule parses', () => {
  const r = promtool('check', 'rules', 'runbooks.rules.yml');
  expect(`${r.stdout}${r.stderr}`).toContain('SUCCESS: 6 rules found');
  expect(r.status).toBe(0);
});

test('promtool test rules: each alert fires on its series and stays quiet on the others', () => {
  const r = promtool('test', 'rules', 'runbooks.rules.test.yml');
  expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: expect.stringContaining('SUCCESS') });
});

test('the example scrape configuration is valid and loads the rules', () => {
  const r = promtool('check', 'config', 'prometheus.example.yml');
  expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: expect.stringContaining('SUCCESS: 1 rule files found') });
});
