/**
 * Change capture for the org-unit sync: reads the source's logical replication slot (pgoutput),
 * works out which resources each committed transaction touched, hands each to its sync
 * workflow (signal-with-start), and only then tells PostgreSQL it may forget that WAL.
 *
 * At-least-once by construction: acknowledgement is never automatic (the library's keepalive
 * would acknowledge what was received, not what was handed over); a killed listener resumes
 * at the slot's confirmed position, and a change handed over twice is one more harmless signal.
 */
import type { Client } from '@temporalio/client';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import type { Pool } from 'pg';
import type { SyncConfig } from '../activities/dhis2/config';
import { handOver, handOverToBatch, syncSettings } from '../activities/dhis2/handoff';
import { runLimited } from '../activities/lib/limited';
import { resolveSecret } from '../activities/lib/secrets';
import { membershipTables, resourceTables, type ResourceType } from '../contracts/dhis2/resources';

/** One committed source transaction, reduced to the resources it touched. */
interface Txn {
  endLsn: bigint;
  committedAt: Date;
  resources: Map<string, { type: ResourceType; uid: string }>;
  /** Membership rows name their group or group set by numeric id: resolved at hand-over. */
  owners: Array<{ type: ResourceType; table: string; id: string }>;
  /** When its commit arrived here (Date.now()). */
  receivedAt: number;
}

/**
 * With `batches`, a hand-over waits until its oldest transaction is this old, so the transactions
 * of a burst go in one signal per target: at 100 commits/s that is five signals a second instead of
 * one per commit, and each signal costs the batch workflow a workflow task (README, the sync's
 * "Benchmark": the figures for each window tried).
 */
const handOverWindowMs = 200;

export interface CaptureStatus {
  slot: string;
  connected: boolean;
  /** Everything up to here is handed over and acknowledged. */
  confirmedLsn: string;
  pendingTransactions: number;
  handedOver: number;
  transactions: number;
  /** Seconds since the oldest transaction not yet handed over committed (0 when none waits). */
  lagSeconds: number;
  lagBytes?: number;
  lastCommitAt?: string;
  lastError?: string;
}

export const lsnToBig = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};
export const bigToLsn = (n: bigint): string => `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;

/** The library reports lsn+1 as flushed; PostgreSQL wants exactly the position everything before is safe. */
const reportable = (n: bigint): string => bigToLsn(n > 0n ? n - 1n : 0n);

const handoverConcurrency = 64;

/** How to reach the source database as the capture role (its password resolved from its secret). */
export function sourceConnection(config: SyncConfig) {
  const db = config.source.database;
  const password = resolveSecret(db.password.secret, { host: db.host, purpose: 'replication-password' });
  const ssl = db.ssl === 'disable' ? undefined : { rejectUnauthorized: db.ssl === 'verify-full' };
  return { host: db.host, port: db.port, user: db.user, password, database: db.database, ssl };
}

/** What the capture tells its observer (the listener's metrics). */
export interface CaptureEvents {
  handedOver(target: string, type: ResourceType): void;
  reconnecting(): void;
}
const unobserved: CaptureEvents = { handedOver: () => undefined, reconnecting: () => undefined };

/** Bytes of WAL the slot still holds: what the server has written past the slot's confirmed position (undefined: no such slot). */
export async function slotLagBytes(db: Pick<Pool, 'query'>, slot: string): Promise<number | undefined> {
  const { rows } = await db.query<{ lag: string | null }>(
    'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  const lag = rows[0]?.lag;
  return lag === null || lag === undefined ? undefined : Math.max(0, Number(lag));
}

export class ChangeCapture {
  private service?: LogicalReplicationService;
  private open?: Txn;
  private queue: Txn[] = [];
  private flushing = false;
  private confirmed = 0n;
  private generation = 0;
  private readonly ownerUids = new Map<string, string>();
  private stopped = false;
  readonly status: CaptureStatus;

  constructor(
    private readonly config: SyncConfig,
    private readonly db: { host: string; port: number; user: string; password: string; database: string; ssl?: object | boolean },
    private readonly lookups: Pool,
    private readonly client: Client,
    private readonly taskQueue: string,
    private readonly log: (level: 'info' | 'warn' | 'error', message: string, meta?: object) => void,
    private readonly events: CaptureEvents = unobserved,
  ) {
    this.status = { slot: config.source.database.slot, connected: false, confirmedLsn: '0/0', pendingTransactions: 0, handedOver: 0, transactions: 0, lagSeconds: 0 };
  }

  /** Streams until stop(); reconnects with backoff when the connection drops. */
  async run(): Promise<void> {
    let delay = 1000;
    while (!this.stopped) {
      const started = Date.now();
      try {
        await this.stream();
      } catch (err) {
        this.status.lastError = (err as Error).message;
        if (!this.stopped) this.log('warn', 'Change stream ended; reconnecting', { error: (err as Error).message, inMs: delay });
        if (!this.stopped) this.events.reconnecting();
      }
      this.status.connected = false;
      if (this.stopped) break;
      delay = Date.now() - started > 60_000 ? 1000 : Math.min(delay * 2, 30_000);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.service?.stop().catch(() => undefined);
  }

  private async stream(): Promise<void> {
    // A new connection re-sends everything after the confirmed position: drop what the old one left.
    this.generation += 1;
    this.queue = [];
    this.open = undefined;
    const { slot, publication } = this.config.source.database;
    const service = new LogicalReplicationService(
      { host: this.db.host, port: this.db.port, user: this.db.user, password: this.db.password, database: this.db.database, ssl: this.db.ssl },
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    this.service = service;
    service.on('data', (_lsn: string, msg: Record<string, unknown>) => this.receive(msg));
    service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => this.heartbeat(lsn, shouldRespond));
    service.on('start', () => { this.status.connected = true; this.log('info', 'Change stream started', { slot, publication }); });
    let failure: Error | undefined;
    service.on('error', (err: Error) => { failure = err; });
    await service.subscribe(new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication] }), slot);
    if (failure) throw failure;
    if (!this.stopped) throw new Error('the replication connection closed');
  }

  private receive(msg: Record<string, unknown>): void {
    switch (msg.tag) {
      case 'begin':
        this.open = { endLsn: 0n, committedAt: new Date(), receivedAt: 0, resources: new Map(), owners: [] };
        return;
      case 'insert': case 'update': case 'delete':
        if (this.open) this.touch(this.open, msg as unknown as RowChange);
        return;
      case 'commit': {
        const txn = this.open;
        this.open = undefined;
        const end = msg.commitEndLsn as string | null;
        if (!txn || !end) return;
        txn.endLsn = lsnToBig(end);
        txn.committedAt = pgTime(msg.commitTime as bigint);
        txn.receivedAt = Date.now();
        this.queue.push(txn);
        this.status.transactions += 1;
        this.status.lastCommitAt = txn.committedAt.toISOString();
        void this.flush();
        return;
      }
      default:
    }
  }

  /** Which resource a row change concerns: its own row, or the group / group set owning a membership row. */
  private touch(txn: Txn, change: RowChange): void {
    const table = change.relation.name;
    const rows = [change.new, change.old].filter((r): r is Record<string, unknown> => Boolean(r));
    const resourceType = (resourceTables as Record<string, ResourceType>)[table];
    if (resourceType) {
      for (const row of rows) {
        if (typeof row.uid !== 'string') continue;
        txn.resources.set(`${resourceType}:${row.uid}`, { type: resourceType, uid: row.uid });
        const idColumn = `${table}id`;
        if (row[idColumn] !== undefined && row[idColumn] !== null) this.ownerUids.set(`${table}:${row[idColumn]}`, row.uid);
      }
      return;
    }
    const membership = (membershipTables as Record<string, typeof membershipTables[keyof typeof membershipTables]>)[table];
    if (!membership) return;
    for (const row of rows) {
      const id = row[membership.ownerColumn];
      if (id !== undefined && id !== null) txn.owners.push({ type: membership.owner, table: membership.ownerTable, id: String(id) });
    }
  }

  private heartbeat(lsn: string, shouldRespond: boolean): void {
    const service = this.service;
    if (!service) return;
    // Nothing received is waiting: everything up to the server's position is safe to confirm.
    if (!this.open && !this.queue.length && !this.flushing) this.confirmed = maxBig(this.confirmed, lsnToBig(lsn));
    if (shouldRespond || !this.queue.length) void service.acknowledge(reportable(this.confirmed)).catch(() => undefined);
    this.status.confirmedLsn = bigToLsn(this.confirmed);
  }

  /** Hands over every queued transaction, then acknowledges the last one. One flush at a time. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length && !this.stopped) {
        // Nothing is acknowledged before the hand-over, so waiting loses nothing if the listener dies meanwhile.
        const wait = this.config.batches ? handOverWindowMs - (Date.now() - this.queue[0].receivedAt) : 0;
        if (wait > 0) {
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        const generation = this.generation;
        const batch = this.queue.slice();
        this.status.pendingTransactions = batch.length;
        this.status.lagSeconds = Math.max(0, (Date.now() - batch[0].committedAt.getTime()) / 1000);
        try {
          await this.handOverBatch(batch);
        } catch (err) {
          // Temporal unreachable: keep the batch (nothing acknowledged) and try again shortly.
          this.status.lastError = `hand-over failed: ${(err as Error).message}`;
          this.log('warn', 'Hand-over to Temporal failed; retrying', { error: (err as Error).message });
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        if (generation !== this.generation) continue;
        this.queue.splice(0, batch.length);
        const last = batch[batch.length - 1];
        this.confirmed = maxBig(this.confirmed, last.endLsn);
        this.status.confirmedLsn = bigToLsn(this.confirmed);
        await this.service?.acknowledge(reportable(this.confirmed)).catch(() => undefined);
      }
    } finally {
      this.flushing = false;
      this.status.pendingTransactions = this.queue.length;
      if (!this.queue.length) this.status.lagSeconds = 0;
    }
  }

  private async handOverBatch(batch: Txn[]): Promise<void> {
    const resources = new Map<string, { type: ResourceType; uid: string; committedAt: Date; lsn: bigint }>();
    for (const txn of batch) {
      for (const owner of await this.resolveOwners(txn.owners)) txn.resources.set(`${owner.type}:${owner.uid}`, owner);
      for (const [key, r] of txn.resources) resources.set(key, { ...r, committedAt: txn.committedAt, lsn: txn.endLsn });
    }
    if (this.config.batches) return this.handOverToBatches([...resources.values()]);
    const jobs = [...resources.values()].flatMap((r) => this.config.targets
      .filter((t) => t.resources.includes(r.type))
      .map((t) => () => handOver(this.client, this.taskQueue, {
        target: t.name, type: r.type, uid: r.uid, settings: syncSettings(this.config, t),
        change: { lsn: bigToLsn(r.lsn), committedAt: r.committedAt.toISOString() },
      }).then(() => this.events.handedOver(t.name, r.type))));
    await runLimited(jobs, handoverConcurrency);
    this.status.handedOver += jobs.length;
  }

  /** With `batches`: every change of a flush in one signal per target (its orgUnitBatch), not one per resource and target. */
  private async handOverToBatches(resources: Array<{ type: ResourceType; uid: string; committedAt: Date; lsn: bigint }>): Promise<void> {
    await Promise.all(this.config.targets.map(async (t) => {
      const mine = resources.filter((r) => t.resources.includes(r.type));
      if (!mine.length) return;
      await handOverToBatch(this.client, this.taskQueue, t.name, syncSettings(this.config, t),
        mine.map((r) => ({ type: r.type, uid: r.uid, lsn: bigToLsn(r.lsn), committedAt: r.committedAt.toISOString() })));
      for (const r of mine) this.events.handedOver(t.name, r.type);
      this.status.handedOver += mine.length;
    }));
  }

  /** Numeric group / group-set ids to uids: from rows seen in the stream, else from the source database. */
  private async resolveOwners(owners: Txn['owners']): Promise<Array<{ type: ResourceType; uid: string }>> {
    const out: Array<{ type: ResourceType; uid: string }> = [];
    const missing = new Map<string, Txn['owners']>();
    for (const o of owners) {
      const uid = this.ownerUids.get(`${o.table}:${o.id}`);
      if (uid) out.push({ type: o.type, uid });
      else missing.set(o.table, [...(missing.get(o.table) ?? []), o]);
    }
    for (const [table, list] of missing) {
      const ids = [...new Set(list.map((o) => o.id))];
      // table is one of two constants from membershipTables, never input.
      const { rows } = await this.lookups.query<{ id: string; uid: string }>(`SELECT ${table}id::text AS id, uid FROM ${table} WHERE ${table}id = ANY($1::bigint[])`, [ids]);
      for (const row of rows) {
        this.ownerUids.set(`${table}:${row.id}`, row.uid);
        out.push({ type: list[0].type, uid: row.uid });
      }
      // An owner gone from the source was deleted in the same or a later transaction: its own row's delete is captured.
    }
    if (this.ownerUids.size > 100_000) this.ownerUids.clear();
    return out;
  }

  /** Bytes of WAL the slot still holds for us: what the server has written past our confirmed position. */
  async measureLagBytes(): Promise<number | undefined> {
    this.status.lagBytes = await slotLagBytes(this.lookups, this.config.source.database.slot);
    if (this.queue.length) this.status.lagSeconds = Math.max(0, (Date.now() - this.queue[0].committedAt.getTime()) / 1000);
    return this.status.lagBytes;
  }
}

interface RowChange { relation: { name: string }; new?: Record<string, unknown> | null; old?: Record<string, unknown> | null }

const maxBig = (a: bigint, b: bigint) => (a > b ? a : b);

/** pgoutput commit time, as the library gives it: microseconds since the Unix epoch. */
function pgTime(micros: bigint): Date {
  return new Date(Number(BigInt(micros) / 1000n));
}
