/**
 * Copies the application directory (/var/lib/openelis-global) from primary to standby through the
 * worker, except what must not travel: the database, the backups, and the secrets unless asked.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { PgHost } from '../../contracts/postgres/schema';
import { shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { onHost, profileOf } from './hosts';

export interface CopyAppDirRequest { primary: PgHost; standby: PgHost; path: string; includeSecrets: boolean; exclude: string[]; dryRun: boolean }

function excludes(req: CopyAppDirRequest): string[] {
  // The database and every copy of it kept aside (data.replaced-*, data.failed-*) stay where they are.
  const list = ['data', 'data.*', 'backups', '.runbooks-*', ...(req.includeSecrets ? [] : ['secrets']), ...req.exclude];
  return [...new Set(list.map((e) => e.replace(/^\.\//, '').replace(/\/+$/, '')))];
}

/** One line per file: checksum and relative path, in a stable order. */
async function manifest(s: SshSession, host: PgHost, req: CopyAppDirRequest): Promise<string> {
  const prune = excludes(req).map((e) => `-path ${shq(`./${e}`)}`).join(' -o ');
  const r = await s.exec(profileOf(host).asAdmin(`cd ${shq(req.path)} 2>/dev/null || exit 0; find . \\( ${prune} \\) -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum`));
  if (r.code !== 0) throw new Error(`Listing ${req.path} on ${host.name} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The relative paths of the files to keep in step (NUL-separated: any file name is safe). */
async function files(s: SshSession, host: PgHost, req: CopyAppDirRequest): Promise<string[]> {
  const prune = excludes(req).map((e) => `-path ${shq(`./${e}`)}`).join(' -o ');
  const r = await s.exec(profileOf(host).asAdmin(`cd ${shq(req.path)} 2>/dev/null || exit 0; find . \\( ${prune} \\) -prune -o -type f -print0`));
  if (r.code !== 0) throw new Error(`Listing ${req.path} on ${host.name} failed: ${r.stderr.trim()}`);
  return r.stdout.split('\0').filter(Boolean);
}

/**
 * Makes the standby's application directory exactly the primary's (but for what must not travel):
 * copies what differs and deletes the files the primary does not have, saying which.
 */
export async function copyAppDir(req: CopyAppDirRequest): Promise<ChangeReport> {
  return onHost(req.primary, (src) => onHost(req.standby, async (dst) => {
    const [want, have] = await Promise.all([manifest(src, req.primary, req), manifest(dst, req.standby, req)]);
    if (!want) throw ApplicationFailure.nonRetryable(`${req.path} on ${req.primary.name} is missing or empty`, 'AppDirMissing');
    if (want === have) return { changed: false, actions: [] };
    const [theirs, ours] = await Promise.all([files(src, req.primary, req), files(dst, req.standby, req)]);
    const keep = new Set(theirs);
    // Only what the standby's own listing found inside the directory, outside every excluded path.
    const extra = ours.filter((f) => !keep.has(f) && f.startsWith('./') && !f.split('/').includes('..'));
    const what = `copy ${theirs.length} files of ${req.path} from ${req.primary.name} to ${req.standby.name} (not ${excludes(req).join(', ')})`;
    const deleting = extra.length ? [`delete ${extra.length} file(s) on ${req.standby.name} that ${req.primary.name} does not have: ${listed(extra)}`] : [];
    if (req.dryRun) return { changed: false, actions: [`would ${what}`, ...deleting.map((d) => `would ${d}`)] };

    const tarExcludes = excludes(req).map((e) => `--exclude=${shq(`./${e}`)}`).join(' ');
    const copied = await src.pipeTo(profileOf(req.primary).asAdmin(`tar -C ${shq(req.path)} ${tarExcludes} -cf - .`),
      dst, profileOf(req.standby).asAdmin(`mkdir -p ${shq(req.path)} && tar -C ${shq(req.path)} -xpf -`));
    if (copied.code !== 0 || copied.sinkCode !== 0) throw new Error(`Copying ${req.path} failed (tar exit ${copied.code}/${copied.sinkCode}): ${copied.stderr.trim().slice(0, 1500)}`);
    if (extra.length) {
      await dst.run(profileOf(req.standby).asAdmin(`cd ${shq(req.path)} && xargs -0 rm -f --`), { stdin: `${extra.join('\0')}\0`, what: 'deleting files the primary does not have' });
    }
    if ((await manifest(dst, req.standby, req)) !== want) throw new Error(`After the copy ${req.path} on ${req.standby.name} still differs from ${req.primary.name}`);
    return { changed: true, actions: [`copied ${theirs.length} files of ${req.path} from ${req.primary.name} to ${req.standby.name} (not ${excludes(req).join(', ')})`, ...deleting.map((d) => d.replace(/^delete/, 'deleted'))] };
  }));
}

const listed = (paths: string[]) => `${paths.slice(0, 20).map((p) => p.slice(2)).join(', ')}${paths.length > 20 ? `, and ${paths.length - 20} more` : ''}`;
