/**
 * The org-unit change listener's metrics: how far behind the source it is (bytes of WAL the slot
 * holds, seconds since the oldest commit not yet handed over), what it handed over, how often it
 * had to reconnect, the last position it acknowledged. Labels: the slot (one per listener), the
 * target (from the configuration) and the resource type (three): never a uid.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ResourceType } from '../contracts/dhis2/resources';
import { metricsPort, processRegistry, serveMetrics } from './metrics';
import { lsnToBig, type CaptureEvents, type ChangeCapture } from './orgunit-capture';

/** The lag in bytes, as both the listener and the worker measure it (the worker's keeps moving while the listener is down). */
export function captureLagBytesGauge(registry: Registry, measure: () => Promise<Array<{ slot: string; bytes: number | undefined }>>): Gauge<'slot'> {
  return new Gauge({
    name: 'runbooks_orgunit_capture_lag_bytes',
    help: 'Bytes of WAL the replication slot holds that the org-unit capture has not acknowledged yet (pg_current_wal_lsn - confirmed_flush_lsn)',
    labelNames: ['slot'],
    registers: [registry],
    async collect() {
      for (const { slot, bytes } of await measure().catch(() => [])) {
        if (bytes === undefined) this.remove({ slot });
        else this.set({ slot }, bytes);
      }
    },
  });
}

/** The listener's metrics; the returned events go to its ChangeCapture. */
export function listenerMetrics(registry: Registry, slot: string, targets: Array<{ name: string; resources: ResourceType[] }>, capture: () => ChangeCapture | undefined): CaptureEvents {
  const status = () => capture()?.status;
  captureLagBytesGauge(registry, async () => {
    const c = capture();
    return c ? [{ slot, bytes: await c.measureLagBytes() }] : [];
  });
  new Gauge({
    name: 'runbooks_orgunit_capture_lag_seconds', labelNames: ['slot'], registers: [registry],
    help: 'Seconds since the oldest source commit not yet handed over to Temporal committed (0 when nothing waits)',
    collect() { const s = status(); if (s) this.set({ slot }, s.lagSeconds); },
  });
  new Gauge({
    name: 'runbooks_orgunit_capture_streaming', labelNames: ['slot'], registers: [registry],
    help: '1 while the listener streams from its replication slot, 0 while it is disconnected or reconnecting',
    collect() { this.set({ slot }, status()?.connected ? 1 : 0); },
  });
  new Gauge({
    name: 'runbooks_orgunit_capture_pending_transactions', labelNames: ['slot'], registers: [registry],
    help: 'Committed source transactions received but not yet handed over',
    collect() { this.set({ slot }, status()?.pendingTransactions ?? 0); },
  });
  new Gauge({
    name: 'runbooks_orgunit_capture_acknowledged_lsn_bytes', labelNames: ['slot'], registers: [registry],
    help: 'The last WAL position (LSN, as a byte offset) acknowledged to PostgreSQL: everything before it is handed over',
    collect() { const s = status(); if (s) this.set({ slot }, Number(lsnToBig(s.confirmedLsn))); },
  });
  const handedOver = new Counter({
    name: 'runbooks_orgunit_changes_handed_over_total', labelNames: ['target', 'type'], registers: [registry],
    help: 'Changed resources handed over to their sync workflow (signal-with-start), by target and resource type',
  });
  const reconnects = new Counter({
    name: 'runbooks_orgunit_capture_reconnects_total', labelNames: ['slot'], registers: [registry],
    help: 'Times the change stream ended and the listener reconnected',
  });
  reconnects.inc({ slot }, 0);
  // Every configured target and type shows from the start, at 0 until a change is handed over.
  for (const t of targets) for (const type of t.resources) handedOver.inc({ target: t.name, type }, 0);
  return {
    handedOver: (target: string, type: ResourceType) => handedOver.inc({ target, type }),
    reconnecting: () => reconnects.inc({ slot }),
  };
}

export interface ListenerMetrics { events: CaptureEvents; url: string; watch(capture: ChangeCapture): void; close(): Promise<void> }

/** With RUNBOOKS_LISTENER_METRICS_PORT: the listener's /metrics, /healthz, /readyz (ready: streaming from its slot). */
export async function startListenerMetrics(slot: string, targets: Array<{ name: string; resources: ResourceType[] }>): Promise<ListenerMetrics | undefined> {
  const port = metricsPort('listener');
  if (port === undefined) return undefined;
  let watched: ChangeCapture | undefined;
  const registry = processRegistry();
  const events = listenerMetrics(registry, slot, targets, () => watched);
  const endpoint = await serveMetrics({
    registry, port,
    notReady: async () => {
      if (!watched) return 'starting';
      const s = watched.status;
      return s.connected ? undefined : `not streaming from slot ${slot}${s.lastError ? `: ${s.lastError}` : ''}`;
    },
  });
  return { events, url: endpoint.url, watch: (c) => { watched = c; }, close: () => endpoint.close() };
}
