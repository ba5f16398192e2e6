/**
 * Copying a dismounted database's IRIS.DAT from the primary to the backup: streamed host to host
 * through the worker's SSH connections, written under a temporary name beside the target (same
 * file system, so the move into place is a rename), flushed, given the source's owner and mode,
 * and checksummed on both ends. A copy that differs is removed and made again.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { IrisNode } from '../../contracts/iris/schema';
import { activitySignal } from '../lib/heartbeat';
import { shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { databaseOn, mountDatabase } from './databases';
import { onInstance, onNode } from './session';

export const STAGED_SUFFIX = '.runbooks-incoming';
/** The target's own IRIS.DAT, kept aside when the copy takes its place (the way back if the copy cannot be mounted). */
export const PREVIOUS_SUFFIX = '.runbooks-previous';

const checksum = (sha256: string) => {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw ApplicationFailure.nonRetryable(`"${sha256.slice(0, 80)}" is not a SHA-256 checksum`, 'BadValue');
  return sha256;
};

export interface CopyRequest { from: IrisNode; to: IrisNode; mirror: string; database: string; attempts: number; dryRun: boolean }
export interface CopyReport extends ChangeReport { bytes: number; sha256: string; attempts: number }

interface FileFacts { uid: number; gid: number; mode: string; bytes: number; sha256: string }

/** Owner, mode, size and checksum of a file, or undefined when it does not exist. */
async function facts(s: SshSession, node: IrisNode, file: string): Promise<FileFacts | undefined> {
  const out = await s.run(onInstance(node, `[ -f ${shq(file)} ] || exit 0; stat -c '%u %g %a %s' -- ${shq(file)} && sha256sum -- ${shq(file)}`), { what: `reading ${file}` });
  const m = /^(\d+) (\d+) ([0-7]+) (\d+)\n([0-9a-f]{64}) /.exec(out);
  return m ? { uid: Number(m[1]), gid: Number(m[2]), mode: m[3], bytes: Number(m[4]), sha256: m[5] } : undefined;
}

export async function copyDatabaseFile(r: CopyRequest): Promise<CopyReport> {
  const [src, dst] = await Promise.all([r.from, r.to].map((node) => databaseOn({ node, mirror: r.mirror, database: r.database })));
  if (src.mounted && !r.dryRun) {
    throw ApplicationFailure.nonRetryable(`${r.database} is mounted on ${r.from.name}: a copy of its IRIS.DAT would not be consistent. Dismount it first.`, 'SourceMounted');
  }
  const source = `${src.dir}IRIS.DAT`;
  const staged = `${dst.dir}IRIS.DAT${STAGED_SUFFIX}`;
  return onNode(r.from, (from) => onNode(r.to, async (to) => {
    const want = await facts(from, r.from, source);
    if (!want) throw ApplicationFailure.nonRetryable(`${source} does not exist on ${r.from.name}. Nothing was changed.`, 'NoSourceFile');
    const what = `IRIS.DAT of ${r.database} (${(want.bytes / 1048576).toFixed(1)} MB, sha256 ${want.sha256.slice(0, 12)}) from ${r.from.name} to ${r.to.name}`;
    if (r.dryRun) return { changed: false, actions: [`would copy ${what}`], bytes: want.bytes, sha256: want.sha256, attempts: 0 };
    // A retry after the copy was made (the worker died before reporting it) finds it in place.
    const already = await facts(to, r.to, staged);
    if (already?.sha256 === want.sha256 && already.uid === want.uid && already.mode === want.mode) {
      return { changed: false, actions: [`${what}: already copied as ${staged}`], bytes: want.bytes, sha256: want.sha256, attempts: 0 };
    }
    const free = Number((await to.run(onInstance(r.to, `df -P -B1 -- ${shq(dst.dir)} | awk 'NR==2 {print $4}'`), { what: 'checking free space' })).trim());
    if (free < want.bytes * 1.05) {
      throw ApplicationFailure.nonRetryable(`${r.to.name} has ${free} bytes free in ${dst.dir}, ${want.bytes} are needed for the copy of ${r.database}. Nothing was changed there.`, 'NoRoom');
    }
    for (let attempt = 1; attempt <= r.attempts; attempt++) {
      // umask 077 until the mode is set; nofollow: a link planted at the staged name is not written through.
      const sink = `umask 077; rm -f -- ${shq(staged)} && dd of=${shq(staged)} bs=1M conv=fsync oflag=nofollow status=none && chmod ${want.mode} -- ${shq(staged)}` +
        ` && { [ "$(stat -c '%u:%g' -- ${shq(staged)})" = ${want.uid}:${want.gid} ] || chown ${want.uid}:${want.gid} -- ${shq(staged)}; }`;
      const signal = activitySignal();
      const piped = await from.pipeTo(onInstance(r.from, `cat -- ${shq(source)}`), to, onInstance(r.to, sink), { signal });
      if (signal?.aborted) {
        // Cancelled (or this attempt timed out): the channels are closed; leave no half copy behind.
        await to.exec(onInstance(r.to, `rm -f -- ${shq(staged)}`));
        throw signal.reason ?? new Error('the copy was cancelled');
      }
      if (piped.code !== 0 || piped.sinkCode !== 0) {
        await to.exec(onInstance(r.to, `rm -f -- ${shq(staged)}`));
        if (/chown|Operation not permitted/i.test(piped.stderr)) {
          throw ApplicationFailure.nonRetryable(`The copy on ${r.to.name} cannot be given the owner of the original (uid ${want.uid}): connect as the instance owner ` +
            `(irisowner) or as a user allowed to chown. ${piped.stderr.trim()}`, 'CopyOwner');
        }
        throw new Error(`copying ${what} failed (source exit ${piped.code}, target exit ${piped.sinkCode}): ${piped.stderr.trim().slice(0, 1000)}`);
      }
      const got = await facts(to, r.to, staged);
      if (got?.sha256 === want.sha256) {
        return { changed: true, actions: [`copied ${what} as ${staged}${attempt > 1 ? ` (attempt ${attempt}: earlier copies differed and were removed)` : ''}`], bytes: want.bytes, sha256: want.sha256, attempts: attempt };
      }
      await to.exec(onInstance(r.to, `rm -f -- ${shq(staged)}`));
    }
    throw ApplicationFailure.nonRetryable(`Every copy of ${what} (${r.attempts}) differed from the source: check the disk and the network of ${r.to.name}. Nothing was placed.`, 'CopyCorrupt');
  }));
}

export interface PlaceRequest { node: IrisNode; mirror: string; database: string; sha256: string; dryRun: boolean }

/**
 * Moves the checked copy into place on the dismounted database (a rename: never a half-written
 * IRIS.DAT). The database's own file is kept aside as IRIS.DAT.runbooks-previous.
 */
export async function placeDatabaseFile(r: PlaceRequest): Promise<ChangeReport> {
  const sha256 = checksum(r.sha256);
  const db = await databaseOn(r);
  const target = `${db.dir}IRIS.DAT`;
  const staged = `${target}${STAGED_SUFFIX}`;
  const previous = `${target}${PREVIOUS_SUFFIX}`;
  if (r.dryRun) return { changed: false, actions: [`would move the copy into place as ${target} on ${r.node.name}`] };
  if (db.mounted) throw ApplicationFailure.nonRetryable(`${r.database} is mounted on ${r.node.name}: its IRIS.DAT cannot be replaced. Nothing was changed.`, 'TargetMounted');
  const sum = (f: string) => `sha256sum -- ${shq(f)} | cut -d' ' -f1`;
  const out = await onNode(r.node, (s) => s.exec(onInstance(r.node,
    `if [ -f ${shq(staged)} ]; then [ "$(${sum(staged)})" = ${sha256} ] || { echo 'the staged copy no longer matches the source checksum' >&2; exit 3; }; ` +
    `{ [ ! -f ${shq(target)} ] || mv -f -- ${shq(target)} ${shq(previous)}; } && mv -f -- ${shq(staged)} ${shq(target)} && echo placed; ` +
    `elif [ "$(${sum(target)})" = ${sha256} ]; then echo already; else echo 'there is no staged copy' >&2; exit 3; fi`)));
  if (out.code === 3) throw ApplicationFailure.nonRetryable(`Cannot place the copy of ${r.database} on ${r.node.name}: ${out.stderr.trim()}. Run the runbook again to copy afresh.`, 'NoStagedCopy');
  if (out.code !== 0) throw new Error(`placing the copy on ${r.node.name} failed (exit ${out.code}): ${out.stderr.trim()}`);
  return out.stdout.trim() === 'placed' ? { changed: true, actions: [`moved the copy into place as ${target} on ${r.node.name}`] } : { changed: false, actions: [] };
}

/**
 * The undo of taking a database down for a copy: mounted again, and if the placed copy is what
 * is there (it may be what cannot be mounted), with the database's own file put back first.
 */
export async function restoreDatabaseFile(r: { node: IrisNode; mirror: string; database: string; placedSha256: string; dryRun: boolean }): Promise<ChangeReport> {
  const sha256 = checksum(r.placedSha256);
  const db = await databaseOn(r);
  if (db.mounted || r.dryRun) return { changed: false, actions: [] };
  const target = `${db.dir}IRIS.DAT`;
  const previous = `${target}${PREVIOUS_SUFFIX}`;
  const out = await onNode(r.node, (s) => s.run(onInstance(r.node,
    `if [ -f ${shq(previous)} ] && [ "$(sha256sum -- ${shq(target)} 2>/dev/null | cut -d' ' -f1)" = ${sha256} ]; then mv -f -- ${shq(previous)} ${shq(target)} && echo restored; fi`),
  { what: `putting the own IRIS.DAT of ${r.database} back` }));
  const mounted = await mountDatabase({ ...r, dryRun: false });
  return { changed: true, actions: [...(out.includes('restored') ? [`put the own IRIS.DAT of ${r.database} back on ${r.node.name}`] : []), ...mounted.actions] };
}
