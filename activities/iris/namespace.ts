/** A mirrored Foundation namespace: installed on the primary with Mirror=1, its production set to auto-start, seen on the backup. */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { IrisNode } from '../../contracts/iris/schema';
import { healthy } from './inspect';
import { checkMirrorPair, type PairRequest } from './preflight';
import { checkStatus, osString, runScript } from './session';
import { refuse } from '../../contracts/refuse';


async function namespaceExists(node: IrisNode, namespace: string): Promise<boolean> {
  const r = await runScript(node, '%SYS', [`do o.%Set("exists",##class(Config.Namespaces).Exists(${osString(namespace)}))`]);
  return String(r.exists) === '1';
}

export interface NamespacePlan { exists: boolean; onBackup: boolean }

/**
 * HSSYS mirrored and caught up on the backup, HS_Services usable, and the namespace absent or
 * already exactly a mirrored Foundation namespace of this mirror (an install leaves an existing
 * namespace as it is, so a different one would stay different).
 */
export async function preflightMirroredNamespace(r: PairRequest & { namespace: string }): Promise<NamespacePlan> {
  const { primary, backup } = await checkMirrorPair({ ...r, databases: [r.namespace] });
  if (!healthy(backup.databases.HSSYS, r.mirror) || backup.missing.includes('HSSYS')) {
    throw refuse(`HSSYS is not mirrored, active and caught up on ${r.backup.name}: run mirrorHssys first.`);
  }
  if (!primary.hsServices.enabled || primary.hsServices.changePassword) {
    throw refuse(`HS_Services on ${r.primary.name} is ${primary.hsServices.enabled ? 'set to change its password at next login' : 'disabled'}: the Foundation install needs it usable. Run mirrorHssys, which sets it from its secret.`);
  }
  const exists = await namespaceExists(r.primary, r.namespace);
  if (!exists) return { exists: false, onBackup: false };
  const db = primary.databases[r.namespace];
  if (!db?.dir || !db.mirrored || db.mirrorSet.toUpperCase() !== r.mirror) {
    throw refuse(`Namespace ${r.namespace} already exists on ${r.primary.name} with different settings: its database ${db?.dir ? `is ${db.mirrored ? `mirrored in ${db.mirrorSet}` : 'not mirrored'}` : 'is not a database of the same name'}, ` +
      `not a mirrored database of ${r.mirror}. A Foundation install would leave it as it is: choose another name, or remove that namespace first.`);
  }
  return { exists: true, onBackup: healthy(backup.databases[r.namespace], r.mirror) && await namespaceExists(r.backup, r.namespace) };
}

export async function installFoundationNamespace(r: { node: IrisNode; namespace: string; dryRun: boolean }): Promise<ChangeReport> {
  if (await namespaceExists(r.node, r.namespace)) return { changed: false, actions: [] };
  const action = `Foundation namespace ${r.namespace} on ${r.node.name}, mirrored`;
  if (r.dryRun) return { changed: false, actions: [`would install ${action}`] };
  await runScript(r.node, 'HSLIB', [
    'kill vars set vars("Mirror")=1',
    checkStatus(`##class(HS.Util.Installer.Foundation).Install(${osString(r.namespace)},.vars)`, `Installing ${r.namespace}`),
  ], { timeoutMs: 30 * 60_000 });
  return { changed: true, actions: [`installed ${action}`] };
}

/** <NS>PKG.FoundationProduction starts with the instance, and the productions are started (HS.Director). */
export async function enableProductionAutoStart(r: { node: IrisNode; namespace: string; dryRun: boolean }): Promise<ChangeReport> {
  const marker = `^Runbooks("AutoStart",${osString(r.namespace)})`;
  const known = await runScript(r.node, '%SYS', [`do o.%Set("set",$get(${marker}))`]);
  if (String(known.set) === '1') return { changed: false, actions: [] };
  const production = `${r.namespace}PKG.FoundationProduction`;
  if (r.dryRun) return { changed: false, actions: [`would set ${production} to start automatically on ${r.node.name} and start it`] };
  // SetAutoStart acts on the current namespace: the session runs in the Foundation namespace itself.
  await runScript(r.node, r.namespace, [checkStatus(`##class(Ens.Director).SetAutoStart(${osString(production)},1)`, `Setting ${production} to auto-start`)]);
  await runScript(r.node, 'HSLIB', [checkStatus('##class(HS.Director).StartAll()', 'Starting the productions')]);
  await runScript(r.node, '%SYS', [`set ${marker}=1`]);
  return { changed: true, actions: [`set ${production} to start automatically on ${r.node.name} and started it`] };
}

/** Waits until the namespace exists on the backup (the mirror monitor task creates it there). */
export async function waitForNamespace(r: { node: IrisNode; namespace: string; withinSeconds: number; dryRun: boolean }): Promise<{ present: boolean }> {
  if (r.dryRun) return { present: false };
  const started = Date.now();
  for (let wait = 250; ; wait = Math.min(wait * 2, 5_000)) {
    if (await namespaceExists(r.node, r.namespace)) return { present: true };
    if (Date.now() - started > r.withinSeconds * 1000) {
      throw ApplicationFailure.nonRetryable(`Namespace ${r.namespace} did not appear on ${r.node.name} within ${r.withinSeconds} s: is the mirror monitor task scheduled there (mirrorHssys does it)?`, 'NamespaceMissing');
    }
    Context.current().heartbeat();
    await Context.current().sleep(wait);
  }
}
