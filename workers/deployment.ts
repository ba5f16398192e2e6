/**
 * Worker Versioning: every worker belongs to a Worker Deployment Version (deployment `runbooks`,
 * build id from RUNBOOKS_BUILD_ID, by default the git commit). Runbooks are pinned to the version
 * they started on; orgUnitSync auto-upgrades to the current version. A new build receives new runs
 * only once it is made the current version (start.sh does it for its own build; in production,
 * `npm run runbook -- versions --set-current BUILD`), and the old build's workers are stopped
 * once no pinned run still needs them (`npm run runbook -- versions`).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { ApplicationFailure, type WorkerDeploymentVersion } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const deploymentEnv = 'RUNBOOKS_DEPLOYMENT';
export const buildIdEnv = 'RUNBOOKS_BUILD_ID';

const repoRoot = path.resolve(__dirname, '..');
/** Temporal splits "deployment:build" and "deployment.build" on these; a build id may hold dots (v1.2.3), not a colon. */
const deploymentNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
const buildIdPattern = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

const badConfig = (message: string) => ApplicationFailure.nonRetryable(message, 'BadConfiguration');

export function checkBuildId(buildId: string, what = buildIdEnv): string {
  if (!buildIdPattern.test(buildId)) {
    throw badConfig(`${what} is "${buildId}": a build id is 1-128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit (e.g. a git commit or v1.4.2)`);
  }
  return buildId;
}

export function deploymentName(): string {
  const name = process.env[deploymentEnv] || 'runbooks';
  if (!deploymentNamePattern.test(name)) {
    throw badConfig(`${deploymentEnv} is "${name}": a deployment name is 1-100 letters, digits, '_' or '-' (no '.' or ':')`);
  }
  return name;
}

/** The git commit of this checkout (12 characters), when it is one. */
function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** This worker's Worker Deployment Version: RUNBOOKS_DEPLOYMENT (runbooks) and RUNBOOKS_BUILD_ID (the git commit). */
export function workerVersion(): WorkerDeploymentVersion {
  const deployment = deploymentName();
  const fromEnv = process.env[buildIdEnv];
  const buildId = fromEnv || gitCommit();
  if (!buildId) throw badConfig(`${buildIdEnv} is not set and ${repoRoot} is not a git checkout: set ${buildIdEnv} to the build you deploy (e.g. its release tag or commit)`);
  return { deploymentName: deployment, buildId: checkBuildId(buildId) };
}

const { WorkerDeploymentVersionStatus: VersionStatus, VersioningBehavior: Behavior } = temporal.api.enums.v1;

export type VersionState = 'current' | 'ramping' | 'draining' | 'drained' | 'inactive' | 'unknown';

const stateNames: Record<number, VersionState> = {
  [VersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT]: 'current',
  [VersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING]: 'ramping',
  [VersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING]: 'draining',
  [VersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED]: 'drained',
  [VersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE]: 'inactive',
};

export interface VersionSummary {
  buildId: string;
  state: VersionState;
  /** Open runs pinned to this version: its workers must run until this is 0. */
  pinnedRuns: number;
  /** Open auto-upgrading runs (orgUnitSync) whose last task ran on this version: they move on by themselves. */
  autoUpgradeRuns: number;
  createdAt?: Date;
  /** Not current, not ramping, no pinned run left: its workers may be stopped. */
  retirable: boolean;
}

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
const grpcStatus = { NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, UNAVAILABLE: 14 } as const;
const isNotFound = (err: unknown) => (err as { code?: number }).code === grpcStatus.NOT_FOUND;
const toDate = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => (t?.seconds ? new Date(Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)) : undefined);

/** The current version's build id, if the deployment has one. */
export async function currentBuild(client: Client, deployment = deploymentName()): Promise<string | undefined> {
  try {
    const info = (await client.workflowService.describeWorkerDeployment({ namespace: client.options.namespace, deploymentName: deployment })).workerDeploymentInfo;
    return info?.routingConfig?.currentDeploymentVersion?.buildId || undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The deployment's versions, newest first, with the runs each still holds (a visibility count: no waiting for the server's drainage refresh). */
export async function listVersions(client: Client, deployment = deploymentName()): Promise<{ current?: string; versions: VersionSummary[] }> {
  const namespace = client.options.namespace;
  let info: temporal.api.deployment.v1.IWorkerDeploymentInfo | null | undefined;
  try {
    info = (await client.workflowService.describeWorkerDeployment({ namespace, deploymentName: deployment })).workerDeploymentInfo;
  } catch (err) {
    if (isNotFound(err)) return { versions: [] };
    throw err;
  }
  const current = info?.routingConfig?.currentDeploymentVersion?.buildId || undefined;
  const versions = await Promise.all((info?.versionSummaries ?? []).map(async (v): Promise<VersionSummary> => {
    const buildId = v.deploymentVersion?.buildId ?? '';
    const state = stateNames[v.status ?? 0] ?? 'unknown';
    const [pinnedRuns, autoUpgradeRuns] = await Promise.all([
      countOpenRuns(client, { deploymentName: deployment, buildId }, 'Pinned'),
      countOpenRuns(client, { deploymentName: deployment, buildId }, 'AutoUpgrade'),
    ]);
    return { buildId, state, pinnedRuns, autoUpgradeRuns, createdAt: toDate(v.createTime), retirable: state !== 'current' && state !== 'ramping' && pinnedRuns === 0 };
  }));
  versions.sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
  return { current, versions };
}

/** Open runs of one version with one behavior, from the system search attributes the server keeps. */
async function countOpenRuns(client: Client, version: WorkerDeploymentVersion, behavior: 'Pinned' | 'AutoUpgrade'): Promise<number> {
  const query = `TemporalWorkerDeploymentVersion = ${quote(`${version.deploymentName}:${version.buildId}`)} AND TemporalWorkflowVersioningBehavior = '${behavior}' AND ExecutionStatus = 'Running'`;
  return (await client.workflow.count(query)).count;
}

const quote = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * Makes `buildId` the current version of the deployment: new runs go to it, auto-upgrading runs
 * move to it at their next task, pinned runs stay where they are. The version must have been seen
 * polling (its workers started); until then this retries, up to `timeoutMs`. With `taskQueues`
 * (a worker making its own build current), a version that is current already and lists them is
 * left alone: the server syncs a task queue that joins the current version by itself, and throttles
 * SetWorkerDeploymentCurrentVersion (RESOURCE_EXHAUSTED) when many workers of one build start at once.
 */
export async function setCurrentVersion(client: Client, buildId: string, options: { deployment?: string; timeoutMs?: number; identity?: string; taskQueues?: string[] } = {}): Promise<void> {
  const deployment = options.deployment ?? deploymentName();
  checkBuildId(buildId, 'the build id');
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let pause = 250;
  for (;;) {
    try {
      if (options.taskQueues && await currentWithQueues(client, deployment, buildId, options.taskQueues)) return;
      await client.workflowService.setWorkerDeploymentCurrentVersion({
        namespace: client.options.namespace, deploymentName: deployment, buildId, identity: options.identity ?? client.options.identity,
      });
      return;
    } catch (err) {
      // Not found / not yet polled: the version registers itself a moment after its first poll. Throttled: later.
      const code = (err as { code?: number }).code;
      const retryable = code === grpcStatus.NOT_FOUND || code === grpcStatus.FAILED_PRECONDITION || code === grpcStatus.UNAVAILABLE
        || code === grpcStatus.ABORTED || code === grpcStatus.RESOURCE_EXHAUSTED;
      if (!retryable || Date.now() >= deadline) {
        throw new Error(`Cannot make build ${buildId} the current version of deployment ${deployment}: ${(err as Error).message}. `
          + 'Are its workers running (with RUNBOOKS_BUILD_ID set to it) and polling every task queue the current version polls?', { cause: err });
      }
      await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random())));
      pause = Math.min(pause * 2, 4_000);
    }
  }
}

/** Whether `buildId` is the deployment's current version and has been seen polling every one of `taskQueues`. */
async function currentWithQueues(client: Client, deployment: string, buildId: string, taskQueues: string[]): Promise<boolean> {
  const namespace = client.options.namespace;
  let info;
  try {
    info = (await client.workflowService.describeWorkerDeployment({ namespace, deploymentName: deployment })).workerDeploymentInfo;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  if (info?.routingConfig?.currentDeploymentVersion?.buildId !== buildId) return false;
  const version = (await client.workflowService.describeWorkerDeploymentVersion({ namespace, deploymentVersion: { deploymentName: deployment, buildId } })).workerDeploymentVersionInfo;
  const seen = new Set((version?.taskQueueInfos ?? []).map((q) => q.name));
  // A queue of ours not registered yet (a moment after its first poll): setting it current again registers it.
  return taskQueues.every((q) => seen.has(q));
}

/** How a run's build shows in `status`: the version its last workflow task ran on, and whether it is pinned there. */
export function runVersioning(raw: { workflowExecutionInfo?: { versioningInfo?: temporal.api.workflow.v1.IWorkflowExecutionVersioningInfo | null } | null }):
  { buildId?: string; deployment?: string; behavior?: 'pinned' | 'auto-upgrade' } {
  const info = raw.workflowExecutionInfo?.versioningInfo;
  if (!info) return {};
  const version = info.deploymentVersion;
  const override = info.versioningOverride;
  const pinnedByOverride = Boolean(override?.pinned);
  const behavior = pinnedByOverride || info.behavior === Behavior.VERSIONING_BEHAVIOR_PINNED ? 'pinned'
    : info.behavior === Behavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE ? 'auto-upgrade' : undefined;
  return { buildId: version?.buildId || undefined, deployment: version?.deploymentName || undefined, behavior };
}
