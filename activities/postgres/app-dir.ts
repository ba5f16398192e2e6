/**
 * Copies the application directory (/var/lib/openelis-global) from primary to standby through the
 * worker, except what must not travel: the database, the backups, and the secrets unless asked.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../workflows/kit/runbook';
import type { PgHost } from '../../workflows/postgres/schema';
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

export async function copyAppDir(req: CopyAppDirRequest): Promise<ChangeReport> {
  return onHost(req.primary, (src) => onHost(req.standby, async (dst) => {
    const [want, have] = [await manifest(src, req.primary, req), await manifest(dst, req.standby, req)];
    if (!want) throw ApplicationFailure.nonRetryable(`${req.path} on ${req.primary.name} is missing or empty`, 'AppDirMissing');
    if (want === have) return { changed: false, actions: [] };
    const files = want.split('\n').filter(Boolean).length;
    const what = `copy ${files} files of ${req.path} from ${req.primary.name} to ${req.standby.name} (not ${excludes(req).join(', ')})`;
    if (req.dryRun) return { changed: false, actions: [`would ${what}`] };

    const tarExcludes = excludes(req).map((e) => `--exclude=${shq(`./${e}`)}`).join(' ');
    const copied = await src.pipeTo(profileOf(req.primary).asAdmin(`tar -C ${shq(req.path)} ${tarExcludes} -cf - .`),
      dst, profileOf(req.standby).asAdmin(`mkdir -p ${shq(req.path)} && tar -C ${shq(req.path)} -xpf -`));
    if (copied.code !== 0 || copied.sinkCode !== 0) throw new Error(`Copying ${req.path} failed (tar exit ${copied.code}/${copied.sinkCode}): ${copied.stderr.trim().slice(0, 1500)}`);
    if ((await manifest(dst, req.standby, req)) !== want) throw new Error(`After the copy ${req.path} on ${req.standby.name} still differs from ${req.primary.name}`);
    return { changed: true, actions: [`copied ${files} files of ${req.path} from ${req.primary.name} to ${req.standby.name} (not ${excludes(req).join(', ')})`] };
  }));
}
