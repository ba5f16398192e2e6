/** A lab where B already streams from A, set up by the real setupPostgresStandby runbook. */
import type { Client } from '@temporalio/client';
import { approveSignal, progressQuery } from '../../contracts/messages';
import { eventually } from '../support/processes';
import { IN_HOST, startLab, type Lab, type LabHost } from './hosts';
import { setupInput, type Profile } from './inputs';

let count = 0;

export async function streamingPair(client: Client, queue: string, kind: Profile, lab?: Lab): Promise<Lab> {
  lab ??= await startLab();
  const handle = await client.workflow.start('setupPostgresStandby', {
    taskQueue: queue, workflowId: `pair-${queue}-${++count}`, args: [setupInput(lab, kind)],
  });
  // A fresh cluster needs a restart of the primary for wal_log_hints: approve it.
  await eventually(async () => {
    const p = await handle.query(progressQuery);
    if (p.approvals.some((g) => g.gate === 'restart-primary' && g.state === 'open')) await handle.signal(approveSignal, { gate: 'restart-primary', by: 'lab' });
    if (p.status === 'completed') return true;
    // Not there yet: what the run is doing, for the message if it never gets there.
    const doing = p.steps.filter((s) => s.state === 'running' || s.state === 'failed').map((s) => `${s.name} ${s.state}`).join(', ');
    throw new Error(`the run is ${p.status}${doing ? ` (${doing})` : ''}${p.error ? `: ${p.error}` : ''}`);
  }, 'the standby set-up to complete', 90_000);
  await lab.a.sql('CREATE TABLE IF NOT EXISTS lab_orders (id bigserial PRIMARY KEY, test text NOT NULL)');
  return lab;
}

/** SIGKILL of the postmaster: the host's database dies without a shutdown checkpoint. */
export function killPostmaster(h: LabHost): void {
  const r = h.sh(`kill -9 "$(head -1 ${IN_HOST.pgData}/postmaster.pid)"`);
  if (r.code !== 0) throw new Error(`could not kill the postmaster on ${h.name}: ${r.stderr}`);
}

/** Inserts rows on a host as fast as it can until told to stop or the server goes away; remembers what was committed. */
export function startWriter(h: LabHost) {
  const committed: number[] = [];
  let stop = false;
  const done = (async () => {
    while (!stop) {
      try {
        const rows = await h.sql<{ id: string }>(`INSERT INTO lab_orders (test) VALUES ('writer') RETURNING id`);
        committed.push(Number(rows[0].id));
      } catch {
        return; // the server stopped: every id in `committed` was acknowledged as committed
      }
    }
  })();
  return { committed, stop: async () => { stop = true; await done; }, done };
}
