/**
 * Refusing to act on a wrong picture of the world: both members reachable, in the mirror the
 * input names, started, with the roles the input says. Nothing here changes anything.
 */
import type { IrisNode } from '../../contracts/iris/schema';
import { healthy, inspectMember, type MemberState } from './inspect';
import { refuse } from '../../contracts/refuse';

export interface PairRequest { primary: IrisNode; backup: IrisNode; mirror: string; databases?: string[] }

/** Both members as they are, or a refusal that says what is wrong and what to do. */
export async function checkMirrorPair(r: PairRequest): Promise<{ primary: MemberState; backup: MemberState }> {
  const [primary, backup] = await Promise.all([r.primary, r.backup].map(async (node) => {
    try {
      return await inspectMember(node, r.mirror, r.databases);
    } catch (err) {
      throw refuse(`${node.name} (${node.address}) cannot be asked for its mirror state: ${(err as Error).message}.`);
    }
  }));
  for (const [node, s] of [[r.primary, primary], [r.backup, backup]] as const) {
    if (!s.member || s.mirrorName.toUpperCase() !== r.mirror) throw refuse(`${node.name} is ${s.member ? `a member of mirror ${s.mirrorName}` : 'not a mirror member'}, not of ${r.mirror}.`);
    if (!s.mirrorStarted) throw refuse(`Mirror ${r.mirror} is not started on ${node.name}.`);
  }
  if (primary.role === 'Backup' && backup.role === 'Primary') {
    throw refuse(`Roles are swapped: ${r.primary.name} is the Backup and ${r.backup.name} the Primary (after a failover?). ` +
      'Swap "primary" and "backup" in the input, or switch the mirror back with switchIrisMirror first.');
  }
  if (primary.role !== 'Primary' || primary.memberStatus !== 'Active') throw refuse(`${r.primary.name} is ${primary.role || 'no failover member'} (${primary.memberStatus || 'no status'}), not the active Primary.`);
  if (backup.role !== 'Backup' || backup.memberStatus !== 'Active') throw refuse(`${r.backup.name} is ${backup.role || 'no failover member'} (${backup.memberStatus || 'no status'}), not an active Backup.`);
  return { primary, backup };
}

export type BackupNeeds = 'nothing' | 'activate' | 'catchup' | 'copy';

export interface HssysPlan {
  primaryMirrored: boolean;
  /** What the backup's HSSYS needs: nothing (healthy), activation, catch-up, or a fresh copy from the primary. */
  backupNeeds: BackupNeeds;
  primaryMounted: boolean;
  networkHostName: string;
}

export async function preflightMirrorHssys(r: PairRequest): Promise<HssysPlan> {
  const { primary, backup } = await checkMirrorPair(r);
  const [p, b] = [primary.databases.HSSYS, backup.databases.HSSYS];
  if (!p.dir || !b.dir) throw refuse(`HSSYS does not exist on ${!p.dir ? r.primary.name : r.backup.name}: is Health Connect installed there?`);
  if (p.mirrored && p.mirrorSet.toUpperCase() !== r.mirror) throw refuse(`HSSYS on ${r.primary.name} is mirrored in ${p.mirrorSet}, not ${r.mirror}.`);
  const sameMirror = b.mounted && b.mirrored && b.mirrorSet.toUpperCase() === r.mirror;
  const backupNeeds: BackupNeeds = !p.mirrored || !sameMirror ? 'copy'
    : healthy(b, r.mirror) && !backup.missing.includes('HSSYS') ? 'nothing' : b.activationRequired ? 'activate' : 'catchup';
  return { primaryMirrored: p.mirrored, backupNeeds, primaryMounted: p.mounted, networkHostName: primary.networkHostName };
}

/** The end state mirrorHssys promises; throws naming what is not so. */
export async function verifyHssysMirror(r: PairRequest & { networkHostName: string }): Promise<{ mirrored: true; missing: string[] }> {
  // Retryable, and worded for the end of a run that changed things (not a preflight refusal).
  const { primary, backup } = await checkMirrorPair(r).catch((err: Error) => { throw new Error(`Cannot verify the mirror: ${err.message.replace(/ Nothing was changed\.$/, '')}`); });
  const problems: string[] = [];
  const p = primary.databases.HSSYS;
  if (!p.mounted || !p.mirrored) problems.push(`on ${r.primary.name} HSSYS is ${p.mounted ? '' : 'not mounted, '}${p.mirrored ? 'mirrored' : 'not mirrored'}`);
  if (!healthy(backup.databases.HSSYS, r.mirror)) problems.push(`on ${r.backup.name} HSSYS is not an active, caught-up mirrored database`);
  if (backup.missing.length) problems.push(`${r.backup.name} is missing mirrored databases: ${backup.missing.join(', ')}`);
  if (backup.networkHostName !== r.networkHostName) problems.push(`${r.backup.name} has network host name "${backup.networkHostName}", not "${r.networkHostName}"`);
  if (problems.length) throw new Error(`HSSYS is not mirrored as it should be: ${problems.join('; ')}`);
  return { mirrored: true, missing: [] };
}
