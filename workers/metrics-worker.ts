/**
 * The worker's metrics, on RUNBOOKS_WORKER_METRICS_PORT:
 * - the Temporal SDK's own runtime metrics (task slots, poll latencies, sticky cache, workflow and
 *   activity outcomes: `temporal_*`), from the SDK's Prometheus exporter on a loopback port of its
 *   own, served on the same /metrics;
 * - runbook-level ones (`runbooks_*`): runs started and finished by runbook and outcome, step
 *   durations, gate waits (from the observing workflow interceptor, workflows/kit/observe.ts);
 *   approval deliveries and their failures by channel (an activity interceptor); open approval
 *   gates and their nearest deadline, parked syncs by target and type (visibility queries, read
 *   at most every 15 s); the capture lag of the org-unit slot (measured here too, so it keeps
 *   moving while the listener is down).
 * Labels are runbook (workflow type), step (declared step names), outcome, channel, target (from
 * the sync configuration), type (three resource types), slot: never a workflow id or a uid.
 */
import type { Client } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory, InjectedSinks, NativeConnection, RuntimeOptions, Worker } from '@temporalio/worker';
import { Pool } from 'pg';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { loadSyncConfig, syncConfigEnv } from '../activities/dhis2/config';
import { syncWorkflowType } from '../contracts/dhis2/messages';
import type { RunbookEventSinks } from '../contracts/runbook-events';
import { RunbookResource, RunbookStatus, RunbookTarget } from '../contracts/search-attributes';
import { waitingGates } from './approvals';
import { freeLoopbackPort, metricsPort, processRegistry, serveMetrics, type MetricsEndpoint } from './metrics';
import { captureLagBytesGauge } from './metrics-listener';
import { slotLagBytes, sourceConnection } from './orgunit-capture';

/** The workflow interceptor modules every bundle of the runbooks needs (the worker's own, and a prebuilt RUNBOOKS_WORKFLOW_BUNDLE). */
export const workflowInterceptorModules = [require.resolve('../workflows/kit/observe')];

const durationBuckets = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400];

/** Caches an expensive read: at most one every `everyMs`, concurrent scrapes share it. */
function everyAtMost<T>(everyMs: number, read: () => Promise<T>): () => Promise<T | undefined> {
  let last: { at: number; value: Promise<T | undefined> } | undefined;
  return () => {
    if (!last || Date.now() - last.at > everyMs) last = { at: Date.now(), value: read().catch(() => undefined) };
    return last.value;
  };
}

/** Sets a gauge to exactly these label sets: ones seen before and gone now go to 0. */
function setAll<L extends string>(gauge: Gauge<L>, seen: Map<string, Record<L, string>>, values: Array<{ labels: Record<L, string>; value: number }>): void {
  const now = new Set<string>();
  for (const { labels, value } of values) {
    const key = JSON.stringify(labels);
    now.add(key);
    seen.set(key, labels);
    gauge.set(labels, value);
  }
  for (const [key, labels] of seen) if (!now.has(key)) gauge.set(labels, 0);
}

export class WorkerObservability {
  /** The step each run is in, for activity log lines (bounded; a run's entry goes when it ends). */
  private readonly steps = new Map<string, string>();
  private endpoint?: MetricsEndpoint;
  private client?: Client;
  private sourcePool?: Pool;
  private readonly registry?: Registry;
  private readonly runs?: { started: Counter<'runbook'>; finished: Counter<'runbook' | 'outcome'>; steps: Histogram<'runbook' | 'step'>; gates: Histogram<'runbook'> };
  private readonly deliveries?: { sent: Counter<'channel'>; failed: Counter<'channel'> };

  private constructor(readonly port: number | undefined, private readonly sdkPort: number | undefined) {
    if (port === undefined) return;
    const registry = processRegistry();
    this.registry = registry;
    this.runs = {
      started: new Counter({ name: 'runbooks_runs_started_total', help: 'Runs started, by runbook (workflow type); a continue-as-new is not a new run', labelNames: ['runbook'], registers: [registry] }),
      finished: new Counter({
        name: 'runbooks_runs_finished_total', labelNames: ['runbook', 'outcome'], registers: [registry],
        help: 'Runs ended, by runbook and outcome: completed, failed, rolled_back (undone by its safe path), cancelled, planned (a dry-run)',
      }),
      steps: new Histogram({ name: 'runbooks_step_duration_seconds', help: 'Time runs spent in a step (a gate inside it included), by runbook and step', labelNames: ['runbook', 'step'], buckets: durationBuckets, registers: [registry] }),
      gates: new Histogram({ name: 'runbooks_approval_gate_wait_seconds', help: 'Time runs waited at an approval gate, by runbook', labelNames: ['runbook'], buckets: durationBuckets, registers: [registry] }),
    };
    this.deliveries = {
      sent: new Counter({ name: 'runbooks_approval_deliveries_total', help: 'Approval requests delivered (e-mail, webhook, DHIS2 ticket), by channel', labelNames: ['channel'], registers: [registry] }),
      failed: new Counter({ name: 'runbooks_approval_delivery_failures_total', help: 'Failed attempts to deliver an approval request (each is retried), by channel', labelNames: ['channel'], registers: [registry] }),
    };
    for (const channel of ['email', 'webhook', 'dhis2_ticket']) { this.deliveries.sent.inc({ channel }, 0); this.deliveries.failed.inc({ channel }, 0); }
  }

  /** Reads RUNBOOKS_WORKER_METRICS_PORT (a bad value throws, naming it) and, when set, reserves the SDK exporter's port. */
  static async create(): Promise<WorkerObservability> {
    const port = metricsPort('worker');
    return new WorkerObservability(port, port === undefined ? undefined : await freeLoopbackPort());
  }

  /** Runtime.install's telemetry options: the SDK's Prometheus exporter, with Prometheus's naming conventions. */
  get telemetryOptions(): RuntimeOptions['telemetryOptions'] {
    if (this.sdkPort === undefined) return undefined;
    return { metrics: { prometheus: { bindAddress: `127.0.0.1:${this.sdkPort}`, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true } } };
  }

  get sinks(): InjectedSinks<RunbookEventSinks> {
    const runs = this.runs;
    const steps = this.steps;
    return {
      runbookEvents: {
        started: { fn: (info) => runs?.started.inc({ runbook: info.workflowType }) },
        stepEnded: { fn: (info, step, seconds) => runs?.steps.observe({ runbook: info.workflowType, step }, seconds) },
        gateWaited: { fn: (info, seconds) => runs?.gates.observe({ runbook: info.workflowType }, seconds) },
        finished: {
          fn: (info, outcome) => {
            steps.delete(info.runId);
            runs?.finished.inc({ runbook: info.workflowType, outcome });
          },
        },
        inStep: {
          callDuringReplay: true,
          fn: (info, step) => {
            steps.delete(info.runId);
            if (step) steps.set(info.runId, step);
            if (steps.size > 10_000) steps.delete(steps.keys().next().value!);
          },
        },
      },
    };
  }

  /** Counts approval deliveries by channel; names the run's step in activity log lines. */
  get activityInterceptor(): ActivityInterceptorsFactory {
    return (ctx: Context) => ({
      inbound: {
        execute: async (input, next) => {
          const channel = deliveryChannel(ctx.info.activityType, input.args[0]);
          if (!channel || !this.deliveries) return next(input);
          try {
            const result = await next(input);
            this.deliveries.sent.inc({ channel });
            return result;
          } catch (err) {
            this.deliveries.failed.inc({ channel });
            throw err;
          }
        },
      },
      outbound: {
        getLogAttributes: (input, next) => next({ ...input, step: this.steps.get(ctx.info.workflowExecution?.runId ?? '') }),
      },
    });
  }

  /** With a metrics port: serves /metrics (own + the SDK's), /healthz, /readyz (ready: every worker polls and Temporal answers). */
  async serve(deps: { client: Client; connection: NativeConnection; workers: Worker[] }): Promise<string | undefined> {
    if (this.port === undefined || !this.registry) return undefined;
    this.client = deps.client;
    const notReady = async (): Promise<string | undefined> => {
      // A target's worker polls activities only: its workflow poller never starts (SHUTDOWN), which is not a fault.
      const stalled = deps.workers.filter((w) => {
        const s = w.getStatus();
        const pollers = [s.workflowPollerState, s.activityPollerState];
        return s.runState !== 'RUNNING' || pollers.includes('FAILED') || !pollers.includes('POLLING');
      });
      if (stalled.length) return `not polling: ${stalled.map((w) => `${w.options.taskQueue} (${w.getStatus().runState})`).join(', ')}`;
      return deps.connection.withDeadline(Date.now() + 2_000, () => deps.connection.workflowService.getSystemInfo({}))
        .then(() => undefined, (err: Error) => `Temporal does not answer: ${err.message}`);
    };
    new Gauge({
      name: 'runbooks_worker_ready', help: '1 while every worker of this process polls its task queue and Temporal answers', registers: [this.registry],
      async collect() { this.set((await notReady()) ? 0 : 1); },
    });
    this.visibilityGauges(deps.client);
    this.slotLagGauge();
    const sdk = `http://127.0.0.1:${this.sdkPort}/metrics`;
    this.endpoint = await serveMetrics({
      registry: this.registry, port: this.port, notReady,
      more: async () => { const res = await fetch(sdk, { signal: AbortSignal.timeout(2_000) }); return res.ok ? res.text() : ''; },
    });
    return this.endpoint.url;
  }

  async close(): Promise<void> {
    await this.endpoint?.close();
    await this.client?.connection.close().catch(() => undefined);
    await this.sourcePool?.end().catch(() => undefined);
  }

  /** Parked syncs by target and type, open approval gates and their nearest deadline by runbook: what visibility and the runs say. */
  private visibilityGauges(client: Client): void {
    const registry = this.registry!;
    const parked = everyAtMost(15_000, async () => {
      const counts = new Map<string, { labels: { target: string; type: string }; value: number }>();
      const query = `WorkflowType = '${syncWorkflowType}' AND ExecutionStatus = 'Running' AND ${RunbookStatus.name} = 'parked'`;
      let seen = 0;
      for await (const wf of client.workflow.list({ query })) {
        const target = String(wf.searchAttributes?.[RunbookTarget.name]?.[0] ?? 'unknown');
        const type = String(wf.searchAttributes?.[RunbookResource.name]?.[0] ?? 'unknown:').split(':')[0];
        const key = `${target}\n${type}`;
        counts.set(key, { labels: { target, type }, value: (counts.get(key)?.value ?? 0) + 1 });
        if (++seen >= 100_000) break;
      }
      return [...counts.values()];
    });
    // Every configured target and type shows, at 0 when nothing is parked.
    const parkedSeen = new Map<string, Record<'target' | 'type', string>>();
    if (process.env[syncConfigEnv]) {
      for (const t of loadSyncConfig().targets) for (const type of t.resources) parkedSeen.set(JSON.stringify({ target: t.name, type }), { target: t.name, type });
    }
    const parkedGauge = new Gauge({
      name: 'runbooks_orgunit_syncs_parked', labelNames: ['target', 'type'], registers: [registry],
      help: 'Org-unit syncs parked (a change the target refused for good, waiting for retry or drop), by target and resource type, from the visibility store',
      // A failed read leaves the last values: an error must not read as "nothing parked".
      async collect() { const v = await parked(); if (v) setAll(this, parkedSeen, v); },
    });
    setAll(parkedGauge, parkedSeen, []);

    const gates = everyAtMost(15_000, async () => {
      const byRunbook = new Map<string, { open: number; deadline: number }>();
      for (const row of (await waitingGates(client)).rows) {
        const r = byRunbook.get(row.runbook) ?? { open: 0, deadline: Infinity };
        r.open += 1;
        r.deadline = Math.min(r.deadline, Date.parse(row.gate.deadline) / 1000);
        byRunbook.set(row.runbook, r);
      }
      return byRunbook;
    });
    const openSeen = new Map<string, Record<'runbook', string>>();
    new Gauge({
      name: 'runbooks_approval_gates_open', labelNames: ['runbook'], registers: [registry],
      help: 'Approval gates open now (runs waiting for a person), by runbook',
      async collect() { const v = await gates(); if (v) setAll(this, openSeen, [...v].map(([runbook, g]) => ({ labels: { runbook }, value: g.open }))); },
    });
    new Gauge({
      name: 'runbooks_approval_gate_deadline_timestamp_seconds', labelNames: ['runbook'], registers: [registry],
      help: 'When the first open approval gate of this runbook stops waiting (its timeout outcome then applies), Unix time',
      async collect() {
        const v = await gates();
        if (!v) return;
        this.reset();
        for (const [runbook, g] of v) if (Number.isFinite(g.deadline)) this.set({ runbook }, g.deadline);
      },
    });
  }

  /** With ORGUNIT_SYNC_CONFIG: the slot's lag, read from the source as the listener does. */
  private slotLagGauge(): void {
    if (!process.env[syncConfigEnv]) return;
    const config = loadSyncConfig();
    const slot = config.source.database.slot;
    captureLagBytesGauge(this.registry!, async () => {
      if (!this.sourcePool) {
        this.sourcePool = new Pool({ ...sourceConnection(config), max: 1, connectionTimeoutMillis: 2_000, idleTimeoutMillis: 30_000 });
        this.sourcePool.on('error', () => undefined); // an idle connection dropped: the next scrape opens another
      }
      return [{ slot, bytes: await slotLagBytes(this.sourcePool, slot) }];
    });
  }
}

/** The channel an approval delivery goes by, or undefined for any other activity. */
function deliveryChannel(activityType: string, arg: unknown): string | undefined {
  if (activityType === 'openApprovalTicket') return 'dhis2_ticket';
  if (activityType !== 'sendApprovalRequest') return undefined;
  const channel = (arg as { channel?: unknown } | undefined)?.channel;
  return channel === 'email' || channel === 'webhook' ? channel : 'other';
}
