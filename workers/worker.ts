/**
 * The Temporal worker: every runbook in workflows/ and every activity in activities/, on the
 * `runbooks` task queue (RUNBOOKS_TASK_QUEUE). On SIGINT/SIGTERM it stops polling and lets
 * running activities finish within RUNBOOKS_SHUTDOWN_GRACE (default 30s).
 */
import { DefaultLogger, NativeConnection, Runtime, Worker, type ActivityInterceptorsFactory, type LogEntry } from '@temporalio/worker';
import { ApplicationFailure, type Duration } from '@temporalio/common';
import { createActivities } from '../activities';
import { loadChannelConfig } from '../activities/approvals/channels';
import { closeDhis2Agents } from '../activities/dhis2/api';
import { loadSyncConfig, syncConfigEnv } from '../activities/dhis2/config';
import { syncActivityQueue } from '../contracts/dhis2/resources';
import { sshPool } from '../activities/lib/ssh-pool';
import { loadSecretScopes } from '../activities/lib/secrets';
import { connectClient, connectWorker, ensureSearchAttributes, taskQueue, TemporalUnreachableError } from './connection';

export interface RunWorkerOptions {
  /** The workflows module; defaults to workflows/index.ts. */
  workflowsPath?: string;
  /** A bundle prepared by bundleWorkflowCode (RUNBOOKS_WORKFLOW_BUNDLE), to skip bundling at start. */
  workflowBundlePath?: string;
  activities?: object;
  /** Activity interceptors (the tests' crash injection). */
  activityInterceptors?: ActivityInterceptorsFactory[];
}

function installJsonLogger(): void {
  const level = (process.env.RUNBOOKS_LOG_LEVEL as 'INFO' | 'DEBUG' | 'WARN' | 'ERROR') || 'INFO';
  Runtime.install({
    logger: new DefaultLogger(level, (entry: LogEntry) => {
      const line = { time: new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString(), level: entry.level, message: entry.message, ...entry.meta };
      process.stdout.write(`${JSON.stringify(line, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
    }),
  });
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<void> {
  installJsonLogger();
  const log = Runtime.instance().logger;
  // A bad channel configuration stops the worker now, naming every bad field, not at a gate hours into a run.
  const channels = loadChannelConfig();
  const scopes = loadSecretScopes();
  if (process.env[syncConfigEnv]) loadSyncConfig();
  if (!scopes) log.warn('RUNBOOKS_SECRET_SCOPES is not set: any secret may be sent to any host a run names (development only)');
  log.info('Approval request channels', { email: Boolean(channels.email), webhooks: Object.keys(channels.webhooks) });
  const { connection, namespace, address } = await connectWorker();

  const client = await connectClient();
  const warning = await ensureSearchAttributes(client).catch((err) => `Could not check search attributes: ${String(err)}`);
  if (warning) log.warn(warning);
  await client.connection.close();

  const activities = options.activities ?? createActivities();
  const bundlePath = options.workflowBundlePath ?? process.env.RUNBOOKS_WORKFLOW_BUNDLE;
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue: taskQueue(),
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : { workflowsPath: options.workflowsPath ?? require.resolve('../workflows') }),
    activities,
    interceptors: { activity: options.activityInterceptors ?? [] },
    shutdownGraceTime: (process.env.RUNBOOKS_SHUTDOWN_GRACE || '30s') as Duration,
  });
  const syncWorkers = await createSyncTargetWorkers(connection, namespace, activities, options.activityInterceptors);
  log.info('Worker ready', { taskQueue: taskQueue(), namespace, address, pid: process.pid, orgUnitSyncTargets: syncWorkers.map((w) => w.options.taskQueue) });
  try {
    await Promise.all([worker.run(), ...syncWorkers.map((w) => w.run())]);
  } finally {
    sshPool.closeAll();
    await closeDhis2Agents();
    await connection.close();
    log.info('Worker stopped', { pid: process.pid });
  }
}

/**
 * With ORGUNIT_SYNC_CONFIG: one activity worker per DHIS2 target on that target's own queue, with
 * its own slots, so a slow or failing target never takes the slots another target needs.
 */
async function createSyncTargetWorkers(connection: NativeConnection, namespace: string, activities: object, interceptors?: ActivityInterceptorsFactory[]): Promise<Worker[]> {
  if (!process.env[syncConfigEnv]) return [];
  const config = loadSyncConfig();
  return Promise.all(config.targets.map((t) => Worker.create({
    connection, namespace,
    taskQueue: syncActivityQueue(taskQueue(), t.name),
    activities,
    interceptors: { activity: interceptors ?? [] },
    maxConcurrentActivityTaskExecutions: t.concurrency * 4,
    shutdownGraceTime: (process.env.RUNBOOKS_SHUTDOWN_GRACE || '30s') as Duration,
  })));
}

if (require.main === module) {
  runWorker().catch((err) => {
    // A configuration error says what to fix; anything else gets its stack. Exit 4, as the CLI: Temporal unreachable.
    const text = err instanceof ApplicationFailure || err instanceof TemporalUnreachableError ? err.message : err instanceof Error ? err.stack : String(err);
    process.stderr.write(`Worker failed: ${text}\n`);
    process.exit(err instanceof TemporalUnreachableError ? 4 : 1);
  });
}
