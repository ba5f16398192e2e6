/**
 * The main job: a Temporal dev server with its Web UI (unless TEMPORAL_ADDRESS points elsewhere),
 * the worker and the approval gateway, and with ORGUNIT_SYNC_CONFIG the org-unit change listener.
 * Ctrl-C stops all of it. The worker makes its build (RUNBOOKS_BUILD_ID, the git commit by default)
 * the current version of the `runbooks` deployment, so new runs go to it.
 *
 * Env: TEMPORAL_ADDRESS (use that server), RUNBOOKS_STATE_DIR (.temporal), TEMPORAL_PORT (7233),
 * TEMPORAL_UI_PORT (8233), APPROVAL_PORT (8240), TEMPORAL_CLI_PATH, APPROVAL_COOKIE_SECRET (given to the
 * gateway only). `npm run runbook -- link` finds the same secret and port from RUNBOOKS_STATE_DIR and APPROVAL_PORT.
 */
import path from 'node:path';
import { findTemporalCli, startDevServer, type DevServer } from './lib/dev-server';
import { devApprovalSecret } from '../workers/approvals';
import { startProcess, type Proc } from './lib/processes';
import { connectClient } from '../workers/connection';
import { listVersions, workerVersion } from '../workers/deployment';

const repoRoot = path.resolve(__dirname, '..');
const stateDir = path.resolve(process.env.RUNBOOKS_STATE_DIR || path.join(repoRoot, '.temporal'));
const say = (text: string) => process.stdout.write(`[start] ${text}\n`);

async function main(): Promise<void> {
  let server: DevServer | undefined;
  const children: Proc[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping the worker, the approval gateway and the listener...');
    await Promise.all(children.map((c) => c.stop(35_000)));
    if (server) { say('stopping the Temporal dev server...'); await server.stop(); }
    say('stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const env: Record<string, string> = {};
  if (!process.env.TEMPORAL_ADDRESS) {
    const cliPath = process.env.TEMPORAL_CLI_PATH || findTemporalCli(repoRoot);
    say(cliPath ? `Temporal dev server from ${cliPath}` : 'no temporal CLI: the SDK downloads a dev server (needs internet)');
    server = await startDevServer({
      cliPath, dbFile: path.join(stateDir, 'temporal.db'), logFile: path.join(stateDir, 'temporal.log'),
      port: Number(process.env.TEMPORAL_PORT || 7233), uiPort: Number(process.env.TEMPORAL_UI_PORT || 8233),
    });
    env.TEMPORAL_ADDRESS = server.address;
  }
  const address = env.TEMPORAL_ADDRESS || process.env.TEMPORAL_ADDRESS;
  if (!process.env.APPROVAL_SECRET && !process.env.APPROVAL_SECRET_FILE) {
    devApprovalSecret(stateDir);
    env.APPROVAL_SECRET_FILE = path.join(stateDir, 'approval-secret');
  }
  const approvalPort = process.env.APPROVAL_PORT || '8240';
  env.APPROVAL_BASE_URL = process.env.APPROVAL_BASE_URL || `http://127.0.0.1:${approvalPort}`;
  // The operators' inbox links each waiting run to its page in the UI.
  if (server?.uiUrl && !process.env.APPROVAL_UI_URL) env.APPROVAL_UI_URL = server.uiUrl;

  const version = workerVersion(); // a bad RUNBOOKS_BUILD_ID stops here, before anything starts
  env.RUNBOOKS_SET_CURRENT = 'true';

  // The sign-in cookies' key is the gateway's alone: the worker and the listener do not inherit it.
  const gatewayOnly: Record<string, string> = {};
  for (const name of ['APPROVAL_COOKIE_SECRET', 'APPROVAL_COOKIE_SECRET_FILE']) {
    if (process.env[name]) gatewayOnly[name] = process.env[name]!;
    delete process.env[name];
  }

  const jobs: Array<readonly [string, string, RegExp]> = [['worker', 'workers/worker.ts', /Worker ready/], ['approvals', 'workers/approvals.ts', /Approval gateway ready/]];
  // The org-unit change listener runs when there is an org-unit sync to feed.
  if (process.env.ORGUNIT_SYNC_CONFIG) jobs.push(['orgunit-listener', 'workers/orgunit-listener.ts', /Org-unit listener ready/]);
  for (const [name, script, ready] of jobs) {
    const child = startProcess(name, path.join(repoRoot, script), { ...env, APPROVAL_PORT: approvalPort, RUNBOOKS_STATE_DIR: stateDir, ...(name === 'approvals' ? gatewayOnly : {}) });
    children.push(child);
    child.exited.then((code) => { if (!stopping) { say(`${name} exited unexpectedly (code ${code}); stopping everything`); void stopAll(1); } });
    await child.ready(ready, 120_000);
  }

  say('ready:');
  say(`  Temporal       ${address}${server ? ` (dev server, data in ${path.join(stateDir, 'temporal.db')})` : ''}`);
  if (server?.uiUrl) say(`  Web UI         ${server.uiUrl}`);
  say(`  task queue     ${process.env.RUNBOOKS_TASK_QUEUE || 'runbooks'}`);
  say(`  build          ${version.buildId} (the current version of deployment ${version.deploymentName})`);
  say(`  approvals      ${env.APPROVAL_BASE_URL}  (your inbox of waiting approvals: npm run runbook -- inbox-link --for <you>)`);
  if (process.env.ORGUNIT_SYNC_CONFIG) say(`  org-unit sync  listening (config ${process.env.ORGUNIT_SYNC_CONFIG}); lag: npm run runbook -- sync-status`);
  say('  start a runbook: npm run runbook -- list ; Ctrl-C stops everything');
  await sayStrandedRuns(version.buildId, address);
}

/** Runs pinned to an earlier build wait for a worker of that build: say which, and what to do. */
async function sayStrandedRuns(buildId: string, address: string | undefined): Promise<void> {
  if (address) process.env.TEMPORAL_ADDRESS ??= address;
  const client = await connectClient().catch(() => undefined);
  if (!client) return;
  try {
    const { versions } = await listVersions(client);
    for (const v of versions.filter((x) => x.buildId !== buildId && x.pinnedRuns > 0)) {
      say(`  note: ${v.pinnedRuns} run(s) are pinned to build ${v.buildId} and wait for a worker of that build: start one from that commit`
        + ` (RUNBOOKS_BUILD_ID=${v.buildId} TEMPORAL_ADDRESS=${address} npm run worker), or see npm run runbook -- versions`);
    }
  } catch { /* only a note */ } finally {
    await client.connection.close();
  }
}

main().catch((err) => {
  process.stderr.write(`[start] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
