/**
 * Moves on one database of one member, each idempotent (look first, act only if needed, report
 * what was done) and each one `iris session` with its %Status checked: mount, dismount, add to
 * the mirror, activate, catch up, and waiting until a backup's copy is active and caught up.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { IrisNode } from '../../contracts/iris/schema';
import { healthy, inspectMember, type DatabaseView } from './inspect';
import { checkStatus, osString, runScript } from './session';

export interface DatabaseRequest { node: IrisNode; mirror: string; database: string; dryRun: boolean }

const none = (): ChangeReport => ({ changed: false, actions: [] });
/** What was done (`dismounted X`), or in a dry-run what would be (`would dismount X`). */
const did = (dryRun: boolean, [done, todo]: [string, string], what: string): ChangeReport => ({ changed: !dryRun, actions: [dryRun ? `would ${todo} ${what}` : `${done} ${what}`] });

/** The database's state on the node; a node without it is a wrong picture of the world. */
export async function databaseOn(r: { node: IrisNode; mirror: string; database: string }): Promise<DatabaseView> {
  const state = await inspectMember(r.node, r.mirror, [r.database]);
  const db = state.databases[r.database.toUpperCase()];
  if (!db?.dir) throw ApplicationFailure.nonRetryable(`${r.node.name} has no database ${r.database}. Nothing was changed.`, 'NoSuchDatabase');
  return db;
}

/** Runs one %Status call on the database's directory (`dir` in the call). */
const onDirectory = (r: DatabaseRequest, db: DatabaseView, call: string, what: string) =>
  runScript(r.node, '%SYS', [`set dir=${osString(db.dir)}`, checkStatus(call, `${what} ${r.database} on ${r.node.name}`)]);

export async function dismountDatabase(r: DatabaseRequest): Promise<ChangeReport> {
  const db = await databaseOn(r);
  if (!db.mounted) return none();
  if (!r.dryRun) await onDirectory(r, db, '##class(SYS.Database).DismountDatabase(dir)', 'Dismounting');
  return did(r.dryRun, ['dismounted', 'dismount'], `${r.database} on ${r.node.name}`);
}

export async function mountDatabase(r: DatabaseRequest): Promise<ChangeReport> {
  const db = await databaseOn(r);
  if (db.mounted) return none();
  if (!r.dryRun) await onDirectory(r, db, '##class(SYS.Database).MountDatabase(dir)', 'Mounting');
  return did(r.dryRun, ['mounted', 'mount'], `${r.database} on ${r.node.name}`);
}

/** On the primary: the database joins the mirror (its IRIS.DAT gets the mirror's label). */
export async function addDatabaseToMirror(r: DatabaseRequest): Promise<ChangeReport> {
  const db = await databaseOn(r);
  if (db.mirrored) {
    if (db.mirrorSet.toUpperCase() === r.mirror) return none();
    throw ApplicationFailure.nonRetryable(`${r.database} on ${r.node.name} is mirrored in ${db.mirrorSet}, not ${r.mirror}. Nothing was changed.`, 'OtherMirror');
  }
  if (!r.dryRun) await onDirectory(r, db, '##class(SYS.Mirror).AddDatabase(dir)', 'Adding to the mirror');
  return did(r.dryRun, ['added', 'add'], `${r.database} to mirror ${r.mirror} on ${r.node.name}`);
}

/** On the backup: a copy placed and mounted needs activation before it can catch up. */
export async function activateDatabase(r: DatabaseRequest): Promise<ChangeReport> {
  const db = await databaseOn(r);
  // In a dry-run the copy has not been placed yet: anything but a healthy copy would need this.
  if (r.dryRun) return healthy(db, r.mirror) ? none() : did(true, ['activated', 'activate'], `${r.database} on ${r.node.name}`);
  if (!db.mounted || !db.mirrored) {
    throw new Error(`${r.database} on ${r.node.name} is not a mounted mirrored database (mounted ${db.mounted}, mirrored ${db.mirrored}): it cannot be activated`);
  }
  if (!db.activationRequired) return none();
  await onDirectory(r, db, '##class(SYS.Mirror).ActivateMirroredDatabase(dir)', 'Activating');
  return did(false, ['activated', 'activate'], `${r.database} on ${r.node.name}`);
}

/** On the backup: brings the activated database up to the primary's journal. */
export async function catchUpDatabase(r: DatabaseRequest): Promise<ChangeReport> {
  const db = await databaseOn(r);
  if (r.dryRun) return healthy(db, r.mirror) ? none() : did(true, ['caught up', 'catch up'], `${r.database} on ${r.node.name}`);
  if (!db.catchupPending) return none();
  await runScript(r.node, '%SYS', [
    `set dir=${osString(db.dir)},db=##class(SYS.Database).%OpenId(dir),errsfns=""`,
    checkStatus('##class(SYS.Mirror).CatchupDB($lb(db.SFN),,.errsfns)', `Catching up ${r.database} on ${r.node.name}`),
  ]);
  return did(false, ['caught up', 'catch up'], `${r.database} on ${r.node.name}`);
}

/** Polls until the database on the backup is mirrored, active and caught up, and none is missing. */
export async function waitUntilCaughtUp(r: DatabaseRequest & { withinSeconds: number }): Promise<{ caughtUp: boolean; seconds: number }> {
  const started = Date.now();
  if (r.dryRun) return { caughtUp: false, seconds: 0 };
  for (let wait = 250; ; wait = Math.min(wait * 2, 5_000)) {
    const state = await inspectMember(r.node, r.mirror, [r.database]);
    const db = state.databases[r.database.toUpperCase()];
    if (healthy(db, r.mirror) && !state.missing.includes(r.database.toUpperCase())) return { caughtUp: true, seconds: Math.round((Date.now() - started) / 1000) };
    if (Date.now() - started > r.withinSeconds * 1000) {
      throw ApplicationFailure.nonRetryable(
        `${r.database} on ${r.node.name} is not active and caught up after ${r.withinSeconds} s: mounted ${db?.mounted}, mirrored ${db?.mirrored}, ` +
        `activation required ${db?.activationRequired}, catch-up pending ${db?.catchupPending}, downloading ${db?.downloading}. ` +
        'Look at the Mirror Monitor of the backup, then run the runbook again.', 'NotCaughtUp');
    }
    Context.current().heartbeat();
    await Context.current().sleep(wait);
  }
}
