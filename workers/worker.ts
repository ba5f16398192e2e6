/**
 * The Temporal worker: every runbook in workflows/ and every activity in activities/, on the
 * `runbooks` task queue (RUNBOOKS_TASK_QUEUE). On SIGINT/SIGTERM it stops polling and lets
 * running activities finish within RUNBOOKS_SHUTDOWN_GRACE (default 30s); the process is gone
 * at most 3 s after that, whatever its peers do (stopWithinGrace).
 *
 * Versioned (./deployment.ts): deployment RUNBOOKS_DEPLOYMENT (runbooks), build RUNBOOKS_BUILD_ID
 * (the git commit); runs are pinned to the build they started on unless their workflow says
 * otherwise (orgUnitSync auto-upgrades). With RUNBOOKS_SET_CURRENT=true the worker makes its build
 * the current version once it polls (start.sh; a single-host install), and says "Worker ready" after.
 */
import { Socket } from 'node:net';
import { DefaultLogger, NativeConnection, Runtime, Worker, type ActivityInterceptorsFactory, type LogEntry, type RuntimeOptions } from '@temporalio/worker';
import { ApplicationFailure, type Duration, type WorkerDeploymentVersion } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { msToNumber } from '@temporalio/common/lib/time';
import { createActivities } from '../activities';
import { loadChannelConfig } from '../activities/approvals/channels';
import { closeDhis2Agents } from '../activities/dhis2/api';
import { loadSyncConfig, syncConfigEnv } from '../activities/dhis2/config';
import { syncActivityQueue } from '../contracts/dhis2/resources';
import { sshPool } from '../activities/lib/ssh-pool';
import { loadSecretScopes } from '../activities/lib/secrets';
import { connectClient, connectWorker, ensureSearchAttributes, taskQueue, TemporalUnreachableError } from './connection';
import { currentBuild, setCurrentVersion, workerVersion } from './deployment';
import { formatLine, logFormat } from './log';
import { WorkerObservability, workflowInterceptorModules } from './metrics-worker';

export interface RunWorkerOptions {
  /** The workflows module; defaults to workflows/index.ts. */
  workflowsPath?: string;
  /** A bundle prepared by bundleWorkflowCode (RUNBOOKS_WORKFLOW_BUNDLE), to skip bundling at start. */
  workflowBundlePath?: string;
  activities?: object;
  /** Activity interceptors (the tests' crash injection). */
  activityInterceptors?: ActivityInterceptorsFactory[];
}

/** The SDK's logger (every line in RUNBOOKS_LOG_FORMAT, workers/log.ts) and, with metrics on, its Prometheus exporter. */
function installRuntime(telemetryOptions: RuntimeOptions['telemetryOptions']): void {
  const level = (process.env.RUNBOOKS_LOG_LEVEL as 'INFO' | 'DEBUG' | 'WARN' | 'ERROR') || 'INFO';
  const format = logFormat();
  Runtime.install({
    logger: new DefaultLogger(level, (entry: LogEntry) => {
      process.stdout.write(formatLine(format, entry.level, entry.message, entry.meta, new Date(Number(entry.timestampNanos / 1_000_000n))));
    }),
    telemetryOptions,
  });
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<void> {
  const observability = await WorkerObservability.create();
  installRuntime(observability.telemetryOptions);
  const log = Runtime.instance().logger;
  // A bad channel configuration stops the worker now, naming every bad field, not at a gate hours into a run.
  const channels = loadChannelConfig();
  const scopes = loadSecretScopes();
  const grace = shutdownTimes();
  if (process.env[syncConfigEnv]) loadSyncConfig();
  if (!scopes) log.warn('RUNBOOKS_SECRET_SCOPES is not set: any secret may be sent to any host a run names (development only)');
  log.info('Approval request channels', { email: Boolean(channels.email), webhooks: Object.keys(channels.webhooks) });
  const version = workerVersion();
  const makeCurrent = booleanEnv('RUNBOOKS_SET_CURRENT');
  log.info('Worker version', { deployment: version.deploymentName, buildId: version.buildId, setCurrent: makeCurrent });
  const { connection, namespace, address } = await connectWorker();

  const client = await connectClient();
  const warning = await ensureSearchAttributes(client).catch((err) => `Could not check search attributes: ${String(err)}`);
  if (warning) log.warn(warning);

  const activities = options.activities ?? createActivities();
  const interceptors = [...(options.activityInterceptors ?? []), observability.activityInterceptor];
  const bundlePath = options.workflowBundlePath ?? process.env.RUNBOOKS_WORKFLOW_BUNDLE;
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue: taskQueue(),
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : { workflowsPath: options.workflowsPath ?? require.resolve('../workflows') }),
    activities,
    // A prebuilt bundle has the workflow interceptors in it already (bundleWorkflowCode with workflowInterceptorModules).
    interceptors: { activity: interceptors, ...(bundlePath ? {} : { workflowModules: workflowInterceptorModules }) },
    sinks: observability.sinks,
    workerDeploymentOptions: { version, useWorkerVersioning: true, defaultVersioningBehavior: 'PINNED' },
    ...grace.options,
  });
  const syncWorkers = await createSyncTargetWorkers(connection, namespace, activities, interceptors, version);
  stopWithinGrace(grace.graceMs, log);
  const running = Promise.all([worker.run(), ...syncWorkers.map((w) => w.run())]);
  try {
    // The version exists once the server has seen it poll, so it can only be made current now.
    if (makeCurrent) {
      await Promise.race([setCurrentVersion(client, version.buildId, {
        deployment: version.deploymentName, timeoutMs: 120_000, taskQueues: [taskQueue(), ...syncWorkers.map((w) => w.options.taskQueue)],
      }), running]);
    } else {
      await sayWhetherCurrent(client, version.buildId, log);
    }
    // The client stays open for the metrics' visibility queries (closed at once when metrics are off).
    const metricsUrl = await observability.serve({ client, connection, workers: [worker, ...syncWorkers] });
    if (!metricsUrl) await client.connection.close();
    log.info('Worker ready', {
      taskQueue: taskQueue(), namespace, address, pid: process.pid, deployment: version.deploymentName, buildId: version.buildId,
      orgUnitSyncTargets: syncWorkers.map((w) => w.options.taskQueue), metricsUrl: metricsUrl && `${metricsUrl}/metrics`,
    });
    await running;
  } catch (err) {
    // Stop polling before the error ends the process, as a signal would.
    for (const w of [worker, ...syncWorkers]) if (w.getState() === 'RUNNING') w.shutdown();
    await running.catch(() => undefined);
    throw err;
  } finally {
    await sshPool.closeAll();
    await closeDhis2Agents();
    await observability.close();
    await connection.close();
    log.info('Worker stopped', { pid: process.pid });
  }
}

/**
 * With ORGUNIT_SYNC_CONFIG: one activity worker per DHIS2 target on that target's own queue, with
 * its own slots, so a slow or failing target never takes the slots another target needs.
 */
async function createSyncTargetWorkers(connection: NativeConnection, namespace: string, activities: object, interceptors: ActivityInterceptorsFactory[] | undefined,
  version: WorkerDeploymentVersion): Promise<Worker[]> {
  if (!process.env[syncConfigEnv]) return [];
  const config = loadSyncConfig();
  return Promise.all(config.targets.map((t) => Worker.create({
    connection, namespace,
    taskQueue: syncActivityQueue(taskQueue(), t.name),
    activities,
    interceptors: { activity: interceptors ?? [] },
    maxConcurrentActivityTaskExecutions: t.concurrency * 4,
    // Same version as the workflows: the next build must poll these queues too before it can be made current.
    workerDeploymentOptions: { version, useWorkerVersioning: true, defaultVersioningBehavior: 'PINNED' },
    ...shutdownTimes().options,
  })));
}

function booleanEnv(name: string): boolean {
  const text = (process.env[name] || 'false').toLowerCase();
  if (!['true', 'false', '1', '0'].includes(text)) throw ApplicationFailure.nonRetryable(`${name} is "${process.env[name]}": write true or false.`, 'BadConfiguration');
  return text === 'true' || text === '1';
}

/** A new build gets no new runs until it is made current: say so, and how. */
async function sayWhetherCurrent(client: Client, buildId: string, log: { info(m: string, meta?: Record<string, unknown>): void; warn(m: string, meta?: Record<string, unknown>): void }): Promise<void> {
  const current = await currentBuild(client).catch(() => undefined);
  if (current === buildId) return;
  log.warn(`Build ${buildId} is not the current version (${current ? `new runs go to ${current}` : 'none is'}): `
    + `make it current with \`npm run runbook -- versions --set-current ${buildId}\` once its workers run everywhere`, { buildId, current });
}

/** RUNBOOKS_SHUTDOWN_GRACE, and the worker options that bound a stop by it: activities left running 2 s after the grace are abandoned. */
function shutdownTimes(): { graceMs: number; options: { shutdownGraceTime: number; shutdownForceTime: number } } {
  const text = process.env.RUNBOOKS_SHUTDOWN_GRACE || '30s';
  let graceMs = NaN;
  try { graceMs = msToNumber(text as Duration); } catch { /* reported below */ }
  if (!Number.isFinite(graceMs) || graceMs < 0) {
    throw ApplicationFailure.nonRetryable(`RUNBOOKS_SHUTDOWN_GRACE is "${text}": not a duration. Write e.g. 30s or 2m.`, 'BadConfiguration');
  }
  return { graceMs, options: { shutdownGraceTime: graceMs, shutdownForceTime: graceMs + 2_000 } };
}

/**
 * A stop ends within the grace whatever the hosts do. The SDK cancels running activities at the
 * grace; then every SSH session is closed too (destroyed a second later if its host does not
 * answer: a vanished host never does, and its half-closed connection would hold the process for
 * the kernel's ~15 minutes of retransmissions), so an activity waiting on one fails at once. If
 * anything still holds the process 3 s after the grace, it exits anyway, saying so.
 */
function stopWithinGrace(graceMs: number, log: { warn(message: string, meta?: Record<string, unknown>): void }): void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2']; // the SDK's shutdown signals
  const stopping = () => {
    for (const s of signals) process.off(s, stopping);
    setTimeout(() => {
      log.warn('Shutdown grace over: cancelling activities and closing SSH sessions', { graceMs });
      void sshPool.closeAll();
    }, graceMs).unref();
    setTimeout(() => {
      process.stderr.write(`Worker still not stopped 3 s after its shutdown grace (${graceMs} ms): exiting. Still open: ${openResources()}\n`);
      process.exit(1);
    }, graceMs + 3_000).unref();
  };
  for (const s of signals) process.on(s, stopping);
}

/** What keeps the process alive (sockets to which peer, timers...), for the forced exit's message. */
function openResources(): string {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const sockets = handles.flatMap((h) => (h instanceof Socket && h.remoteAddress ? [`a connection to ${h.remoteAddress}:${h.remotePort}`] : []));
  return [...sockets, ...process.getActiveResourcesInfo().filter((r) => r !== 'TCPSocketWrap')].join(', ') || 'nothing known';
}

if (require.main === module) {
  // Stopped: exit now, not when the last idle keep-alive socket times out.
  runWorker().then(() => process.exit(0), (err) => {
    // A configuration error says what to fix; anything else gets its stack. Exit 4, as the CLI: Temporal unreachable.
    const text = err instanceof ApplicationFailure || err instanceof TemporalUnreachableError ? err.message : err instanceof Error ? err.stack : String(err);
    process.stderr.write(`Worker failed: ${text}\n`);
    process.exit(err instanceof TemporalUnreachableError ? 4 : 1);
  });
}
