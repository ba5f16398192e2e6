/** Refuses to set up a standby on a wrong picture of the world, with a message an operator can act on. */
import type { PgHost } from '../../contracts/postgres/schema';
import { onHost, profileOf, withSql } from './hosts';
import { inspectServer, type ServerState } from './inspect';
import { checkCertificates } from './app-health';
import { refuse } from '../../contracts/refuse';

export interface SetupPreflightRequest {
  primary: PgHost;
  standby: PgHost;
  slot: string;
  replaceStandbyData: boolean;
  rewind: boolean;
  /** The OpenELIS certificates the standby must have before it may become a standby (absent: not checked). */
  certificates?: { dir: string; required: string[]; sameAsPrimary: string[] };
}

export interface SetupPreflight {
  alreadyStreaming: boolean;
  primaryVersion: number;
  standbyMajor: number;
  standbyData: ServerState['dataDir'];
  standbyRunning: boolean;
  databaseBytes: number;
  freeBytes: number;
  /** The primary invalidated the standby's slot (it fell more than max_slot_wal_keep_size behind): the standby needs a fresh copy. */
  slotInvalidated: boolean;
}

/** wal_status "lost": the primary removed WAL the slot's standby still needed. */
async function slotLost(primary: PgHost, slot: string): Promise<boolean> {
  return onHost(primary, (s) => withSql(primary, s, async (db) =>
    (await db.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND wal_status = 'lost'`, [slot])).rowCount === 1));
}


async function installedMajor(host: PgHost): Promise<number> {
  const out = await onHost(host, (s) => s.run(profileOf(host).tool('postgres', ['-V']), { what: 'reading the PostgreSQL version' }));
  const m = /\(PostgreSQL\) (\d+)/.exec(out);
  if (!m) throw refuse(`Cannot tell the PostgreSQL version on ${host.name} from "${out.trim()}".`);
  return Number(m[1]);
}

export async function preflightStandbySetup(req: SetupPreflightRequest): Promise<SetupPreflight> {
  const [p, s] = [await inspectServer(req.primary), await inspectServer(req.standby)];
  if (!p.reachable) throw refuse(`Cannot reach the primary ${req.primary.name}: ${p.unreachableReason}.`);
  if (!s.reachable) throw refuse(`Cannot reach the standby ${req.standby.name}: ${s.unreachableReason}.`);
  if (!p.running) throw refuse(`The database on the primary ${req.primary.name} is not running.`);
  if (p.inRecovery) throw refuse(`${req.primary.name} is in recovery: it is a standby, not a primary. Are primary and standby swapped?`);
  const standbyMajor = await installedMajor(req.standby);
  const primaryMajor = Math.floor((p.versionNum ?? 0) / 10000);
  if (standbyMajor !== primaryMajor) throw refuse(`The standby ${req.standby.name} has PostgreSQL ${standbyMajor}, the primary ${primaryMajor}: streaming replication needs the same major version.`);

  // Checked before anything changes: a standby without them would be promoted into a webapp that cannot start.
  if (req.certificates) await checkCertificates({ primary: req.primary, standby: req.standby, ...req.certificates });
  const slotInvalidated = await slotLost(req.primary, req.slot);
  const alreadyStreaming = !slotInvalidated && Boolean(s.running && s.inRecovery && s.walReceiver?.status === 'streaming'
    && s.walReceiver.slot === req.slot && s.walReceiver.senderHost === req.primary.address);
  if (!alreadyStreaming) {
    if (slotInvalidated && s.dataDir === 'cluster' && !req.replaceStandbyData) {
      throw refuse(`The replication slot ${req.slot} on ${req.primary.name} was invalidated: ${req.standby.name} fell more than max_slot_wal_keep_size behind and cannot catch up. ` +
        'Set "replaceStandbyData": true to give it a fresh copy (its old data directory is kept aside under a dated name).');
    }
    if (s.running && s.inRecovery === false && !req.replaceStandbyData && !req.rewind) {
      throw refuse(`${req.standby.name} runs as a primary with its own data. If that data may be replaced, set "replaceStandbyData": true (it is kept aside under a dated name).`);
    }
    if ((s.dataDir === 'cluster' || s.dataDir === 'other') && !req.replaceStandbyData && !req.rewind) {
      throw refuse(`The data directory of ${req.standby.name} (${profileOf(req.standby).dataDir}) is not empty. Set "replaceStandbyData": true to keep it aside under a dated name and replace it.`);
    }
    const needed = Math.ceil((p.databaseBytes ?? 0) * 1.2) + 64 * 1024 * 1024;
    if ((s.freeBytes ?? 0) < needed) {
      throw refuse(`${req.standby.name} has ${s.freeBytes} bytes free next to its data directory; the primary's databases need about ${needed}. Free space first.`);
    }
  }
  return {
    alreadyStreaming, primaryVersion: p.versionNum ?? 0, standbyMajor, standbyData: s.dataDir, standbyRunning: s.running,
    databaseBytes: p.databaseBytes ?? 0, freeBytes: s.freeBytes ?? 0, slotInvalidated,
  };
}
