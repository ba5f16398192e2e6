/** The runbooks' crash-matrix scenarios on lab hosts: a fresh lab each, and what must hold at the end. */
import type { Client } from '@temporalio/client';
import type { CrashScenario } from '../support/crash-matrix';
import { eventually } from '../support/processes';
import { approveUntilDone } from '../support/runs';
import { IN_HOST, startLab, type Lab } from './hosts';
import { mirrorHssysInputFor, startIrisLab, type IrisLab } from './iris';
import { hostInput, setupInput } from './inputs';
import { killPostmaster, streamingPair } from './pair';

const inRecovery = async (lab: Lab, h: 'a' | 'b') => (await lab[h].sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r;

/** setupPostgresStandby on the pg_ctl profile: at the end B streams from A, whatever crashed. */
export function setupScenario(secretsDir: string): CrashScenario<Lab> {
  return {
    name: 'setup', workflowType: 'setupPostgresStandby', workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
    async prepare() {
      const lab = await startLab({ secretsDir });
      return { input: setupInput(lab, 'pg_ctl'), world: lab, cleanup: () => lab.stop() };
    },
    drive: approveUntilDone,
    async check(lab, result) {
      if (!(result as { streaming?: boolean }).streaming) throw new Error(`the run did not report streaming: ${JSON.stringify(result)}`);
      if (await inRecovery(lab, 'a')) throw new Error('A is in recovery: no primary left');
      if (!(await inRecovery(lab, 'b'))) throw new Error('B is not in recovery: two primaries');
      const streaming = await lab.a.sql(`SELECT 1 FROM pg_stat_replication WHERE application_name = 'lab-b' AND state = 'streaming'`);
      if (streaming.length !== 1) throw new Error(`A sees ${streaming.length} streaming standbys named lab-b`);
      await lab.a.sql(`CREATE TABLE IF NOT EXISTS crash_check (n int); INSERT INTO crash_check VALUES (1)`);
      await eventually(async () => (await lab.b.sql<{ n: number }>('SELECT count(*)::int AS n FROM crash_check'))[0].n === 1, 'a row written on A to reach B', 20_000);
      const kept = lab.b.sh(`ls -d ${IN_HOST.pgData}.replaced-* 2>/dev/null | wc -l`).stdout.trim();
      if (kept !== '1') throw new Error(`B's old data directory should be kept aside exactly once, found ${kept}`);
    },
  };
}

/** Failover of a SIGKILLed primary on the openelis-docker profile: B is the one primary, every row is there, A stays fenced. */
export function promoteScenario(client: Client, pairQueue: string, secretsDir: string): CrashScenario<{ lab: Lab; rows: number }> {
  return {
    name: 'promote', workflowType: 'promotePostgresStandby', workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
    async prepare() {
      const lab = await streamingPair(client, pairQueue, 'openelis-docker', await startLab({ secretsDir }));
      await lab.a.sql(`INSERT INTO lab_orders (test) SELECT 'before failover' FROM generate_series(1, 100)`);
      const lsn = (await lab.a.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0].l;
      await eventually(async () => (await lab.b.sql<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [lsn]))[0].ok, 'B to replay every row', 20_000);
      killPostmaster(lab.a);
      const input = {
        mode: 'failover', oldPrimary: hostInput(lab.a, 'openelis-docker'), standby: hostInput(lab.b, 'openelis-docker'),
        promotionApproval: { required: false }, requestedBy: 'alice', catchupWithinSeconds: 30, fenceStopSeconds: 5,
      };
      return { input, world: { lab, rows: 100 }, cleanup: () => lab.stop() };
    },
    drive: approveUntilDone,
    async check({ lab, rows }, result) {
      if (!(result as { newPrimary?: string }).newPrimary) throw new Error(`unexpected result ${JSON.stringify(result)}`);
      if (await inRecovery(lab, 'b')) throw new Error('B is still in recovery');
      const count = (await lab.b.sql<{ n: number }>('SELECT count(*)::int AS n FROM lab_orders'))[0].n;
      if (count !== rows) throw new Error(`B has ${count} of the ${rows} committed rows`);
      if (lab.a.isUp()) throw new Error('A runs: two primaries are possible');
      if (lab.a.sh(`docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' openelisglobal-database`).stdout.trim() !== 'no') throw new Error('A can restart on its own');
      if (lab.a.sh(`test -f ${IN_HOST.pgData}/standby.signal`).code !== 0) throw new Error('A would start writable: no standby.signal');
    },
  };
}

/**
 * mirrorHssys on a fresh mirror pair: whatever crashed, HSSYS ends mirrored (mounted and mirrored
 * on the primary; mounted, active and caught up on the backup) and never dismounted on either.
 */
export function mirrorHssysScenario(secretsDir: string): CrashScenario<IrisLab> {
  return {
    name: 'hssys', workflowType: 'mirrorHssys', workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir },
    async prepare() {
      const lab = await startIrisLab({ secretsDir, containers: ['b'] });
      return { input: mirrorHssysInputFor(lab), world: lab, cleanup: () => lab.stop() };
    },
    drive: approveUntilDone,
    async check(lab, result) {
      if (!(result as { mirrored?: boolean }).mirrored) throw new Error(`the run did not report HSSYS mirrored: ${JSON.stringify(result)}`);
      const [a, b] = [lab.a.state().databases.HSSYS, lab.b.state().databases.HSSYS];
      if (!a.mounted || !b.mounted) throw new Error(`HSSYS is dismounted on ${a.mounted ? 'the backup' : 'the primary'}`);
      if (!a.mirror || a.mirror.activationRequired) throw new Error(`HSSYS on the primary is not mirrored: ${JSON.stringify(a.mirror)}`);
      if (!b.mirror || b.mirror.activationRequired || b.mirror.catchup) throw new Error(`HSSYS on the backup is not active and caught up: ${JSON.stringify(b.mirror)}`);
      if (lab.b.state().tasks.length !== 1) throw new Error(`the backup has ${lab.b.state().tasks.length} mirror monitor tasks, not 1`);
    },
  };
}
