/** Proof that replication works: the primary sees the standby streaming, and a canary row crosses over. */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { PgHost } from '../../contracts/postgres/schema';
import { onHost, withSql } from './hosts';

export interface VerifyRequest { primary: PgHost; standby: PgHost; canaryId: string; withinSeconds: number; dryRun: boolean }
export interface VerifyResult { streaming: boolean; canaryLagMs?: number; actions: string[]; changed: boolean }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(deadline: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    Context.current().heartbeat();
    await sleep(250);
  }
}

export async function verifyStreaming(req: VerifyRequest): Promise<VerifyResult> {
  if (req.dryRun) return { streaming: false, changed: false, actions: [`would check that ${req.primary.name} sees ${req.standby.name} streaming and that a canary row arrives within ${req.withinSeconds}s`] };
  const deadline = Date.now() + req.withinSeconds * 1000;
  return onHost(req.primary, (ps) => withSql(req.primary, ps, (primary) => onHost(req.standby, (ss) => withSql(req.standby, ss, async (standby) => {
    const streaming = await until(deadline, async () => {
      const r = (await primary.query(`SELECT state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`, [req.standby.name])).rowCount;
      return r ? true : undefined;
    });
    if (!streaming) {
      throw ApplicationFailure.nonRetryable(`${req.primary.name} does not see ${req.standby.name} streaming after ${req.withinSeconds}s: check the standby's log, pg_hba.conf on the primary and the replication password`, 'NotStreaming');
    }
    if (!(await standby.query('SELECT pg_is_in_recovery() AS r')).rows[0].r) {
      throw ApplicationFailure.nonRetryable(`${req.standby.name} is not in recovery: it is not a standby`, 'NotAStandby');
    }
    await primary.query('CREATE TABLE IF NOT EXISTS runbooks_canary (id text PRIMARY KEY, written_at timestamptz NOT NULL)');
    const written = (await primary.query(`INSERT INTO runbooks_canary (id, written_at) VALUES ($1, clock_timestamp())
      ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at RETURNING written_at::text AS at`, [req.canaryId])).rows[0].at as string;
    const started = Date.now();
    const arrived = await until(deadline, async () => {
      const r = (await standby.query('SELECT written_at::text AS at FROM runbooks_canary WHERE id = $1', [req.canaryId])).rows[0];
      return r?.at === written ? true : undefined;
    });
    if (!arrived) throw ApplicationFailure.nonRetryable(`The canary row written on ${req.primary.name} did not reach ${req.standby.name} within ${req.withinSeconds}s`, 'CanaryMissing');
    const lag = Date.now() - started;
    return { streaming: true, canaryLagMs: lag, changed: false, actions: [`${req.standby.name} streams from ${req.primary.name}; a canary row arrived in ${lag} ms`] };
  }))));
}
