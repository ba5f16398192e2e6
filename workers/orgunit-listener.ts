/**
 * The org-unit change listener: streams the source DHIS2 database's changes (ChangeCapture) into
 * the sync workflows. Started by scripts/start.sh when ORGUNIT_SYNC_CONFIG is set, or alone:
 *
 *   ORGUNIT_SYNC_CONFIG=sync.json npx tsx workers/orgunit-listener.ts
 *
 * Logs its lag (bytes and seconds behind) every `listener.lagLogEvery`, and serves it as JSON on
 * 127.0.0.1:<listener.statusPort>/status (what `npm run runbook -- sync-status` prints).
 */
import { createServer, type Server } from 'node:http';
import { Pool } from 'pg';
import { currentSyncConfig, type SyncConfig } from '../activities/dhis2/config';
import { durationSeconds } from '../contracts/input';
import { connectClient, taskQueue } from './connection';
import { processLog } from './log';
import { startListenerMetrics } from './metrics-listener';
import { ChangeCapture, sourceConnection } from './orgunit-capture';

const log = processLog();

/** The slot and publication exist, with the plugin we read: otherwise say to run orgUnitSyncSetup. */
async function checkSource(pool: Pool, config: SyncConfig): Promise<void> {
  const { slot, publication } = config.source.database;
  const { rows: slots } = await pool.query<{ plugin: string; slot_type: string }>('SELECT plugin, slot_type FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  const { rows: pubs } = await pool.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  const problems: string[] = [];
  if (!slots.length) problems.push(`replication slot "${slot}" does not exist`);
  else if (slots[0].plugin !== 'pgoutput') problems.push(`replication slot "${slot}" uses ${slots[0].plugin}, not pgoutput`);
  if (!pubs.length) problems.push(`publication "${publication}" does not exist`);
  if (problems.length) throw new Error(`The source database is not ready for change capture: ${problems.join('; ')}. Run the orgUnitSyncSetup runbook first.`);
}

function serveStatus(capture: ChangeCapture, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/status') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(capture.status));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function main(): Promise<void> {
  const config = currentSyncConfig();
  const db = sourceConnection(config);
  const lookups = new Pool({ ...db, max: 2, connectionTimeoutMillis: 10_000 });
  lookups.on('error', (err) => log('warn', 'Source database connection error', { error: err.message }));
  await checkSource(lookups, config);
  const client = await connectClient();
  const metrics = await startListenerMetrics(config.source.database.slot, config.targets);
  const capture = new ChangeCapture(config, db, lookups, client, taskQueue(), log, metrics?.events);
  metrics?.watch(capture);
  const status = await serveStatus(capture, config.listener.statusPort);
  const address = status.address();
  const port = typeof address === 'object' && address ? address.port : config.listener.statusPort;

  const every = durationSeconds(config.listener.lagLogEvery) * 1000;
  const lagTimer = setInterval(() => {
    capture.measureLagBytes().catch(() => undefined).finally(() => {
      const s = capture.status;
      log('info', 'Change capture lag', { lagBytes: s.lagBytes, lagSeconds: Number(s.lagSeconds.toFixed(3)), pendingTransactions: s.pendingTransactions, confirmedLsn: s.confirmedLsn, connected: s.connected });
    });
  }, every);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(lagTimer);
    await capture.stop();
    status.close();
    await metrics?.close();
    await lookups.end().catch(() => undefined);
    await client.connection.close().catch(() => undefined);
    log('info', 'Org-unit listener stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  log('info', 'Org-unit listener ready', {
    slot: config.source.database.slot, publication: config.source.database.publication, targets: config.targets.map((t) => t.name),
    taskQueue: taskQueue(), statusUrl: `http://127.0.0.1:${port}/status`, metricsUrl: metrics && `${metrics.url}/metrics`, pid: process.pid,
  });
  await capture.run();
}

main().catch((err) => {
  process.stderr.write(`Org-unit listener failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
