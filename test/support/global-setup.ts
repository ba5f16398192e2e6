/**
 * One real Temporal dev server for the whole run (the `temporal` CLI), and one bundle of the
 * test worker's workflows so every worker the tests start skips bundling.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { findTemporalCli, startDevServer, type DevServer } from '../../scripts/lib/dev-server';
import { freeLoopbackPort } from '../../workers/metrics';
import { workflowInterceptorModules } from '../../workers/metrics-worker';

declare global {
  // eslint-disable-next-line no-var
  var __runbooksDevServer: DevServer | undefined;
}

/** A free loopback port (the same helper the worker uses for the SDK's exporter). */
export const freePort = freeLoopbackPort;

export default async function globalSetup(): Promise<void> {
  const repoRoot = path.resolve(__dirname, '../..');
  const work = mkdtempSync(path.join(os.tmpdir(), 'runbooks-test-'));
  const cliPath = findTemporalCli(repoRoot);
  if (!cliPath) throw new Error('The test suite needs the temporal CLI: run ./scripts/test.sh, which installs it');
  // RUNBOOKS_TEST_TEMPORAL_DB keeps the runs in a file, to capture their histories afterwards (README "When to re-capture").
  const server = await startDevServer({ cliPath, port: await freePort(), logFile: path.join(work, 'temporal.log'), dbFile: process.env.RUNBOOKS_TEST_TEMPORAL_DB || undefined });
  globalThis.__runbooksDevServer = server;

  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), workflowInterceptorModules, logger: quietLogger });
  const bundle = path.join(work, 'workflow-bundle.js');
  writeFileSync(bundle, code);

  Object.assign(process.env, {
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_CLI_PATH: cliPath,
    RUNBOOKS_WORKFLOW_BUNDLE: bundle,
    RUNBOOKS_TEST_WORKDIR: work,
  });
}

const quietLogger = {
  log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined,
  warn: (m: string) => console.warn(m), error: (m: string) => console.error(m),
};
