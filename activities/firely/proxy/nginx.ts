/**
 * nginx: the upstream lives in an include file of its own. A switch writes the new file beside the
 * old one, moves it into place, checks the whole configuration with `nginx -t` (a failure puts the
 * old file back, so nginx never reloads a broken configuration), reloads gracefully (`nginx -s
 * reload`: old workers finish their requests), then asks through the proxy until only the new
 * upstream answers.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { NginxProxy } from '../../../contracts/firely/schema';
import { cmd, shq } from '../../lib/shell';
import type { SshSession } from '../../lib/ssh';
import { onSshHost } from '../../lib/ssh-pool';
import { servedBy, untilServedBy, type ProxyBackend, type SwitchReport } from './backend';

/** The include file's whole content for one upstream server. */
export const upstreamBlock = (name: string, server: string) =>
  `# Written by Runbooks (migrateFirelyServer): the Firely Server that serves clients.\nupstream ${name} {\n    server ${server};\n}\n`;

const serverOf = (text: string) => /^\s*server\s+([^\s;]+)/m.exec(text)?.[1];

/** The commands and quoted file names one nginx needs. */
function commandsOf(p: NginxProxy) {
  const sudo = p.sudo ? 'sudo -n ' : '';
  return {
    sudo,
    nginx: `${sudo}${cmd(p.nginx, ...(p.configFile ? ['-c', p.configFile] : []))}`,
    file: shq(p.upstreamFile),
    staged: shq(`${p.upstreamFile}.runbooks-new`),
    /** The file before the switch, for the way back. */
    kept: shq(`${p.upstreamFile}.runbooks-previous`),
  };
}

export const nginxBackend = (p: NginxProxy): ProxyBackend => ({
  async switchTo(to, dryRun) {
    const changed = await onSshHost(p.host, (s) => switchUpstream(s, p, to, dryRun));
    if (!dryRun) await untilServedBy(p, [to], `Check ${p.upstreamHeader} in the nginx configuration.`);
    return changed;
  },
});

async function switchUpstream(s: SshSession, p: NginxProxy, to: string, dryRun: boolean): Promise<SwitchReport> {
  const { sudo, file, staged, kept } = commandsOf(p);
  const from = serverOf(await s.run(`cat -- ${file}`, { what: `reading ${p.upstreamFile}` }));
  if (from === to) {
    // In place already; but an attempt that died between the move and the reload left nginx on the old file.
    if (dryRun || await servedBy(p, to)) return { changed: false, actions: [], from };
    await testAndReload(s, p, to);
    return { changed: true, actions: [`reloaded nginx on ${p.host.name}: upstream ${p.upstreamName} was already ${to} in the file`], from };
  }
  if (dryRun) return { changed: false, actions: [`would switch upstream ${p.upstreamName} on ${p.host.name} from ${from} to ${to}`], from };
  // Written beside the file (same directory: the move is a rename); the old one kept for the way back.
  await s.run(`umask 022; ${sudo}rm -f -- ${staged} && ${sudo}tee ${staged} >/dev/null && ${sudo}cp -p -- ${file} ${kept} && ${sudo}mv -f -- ${staged} ${file}`,
    { stdin: upstreamBlock(p.upstreamName, to), what: `writing ${p.upstreamFile}` });
  await testAndReload(s, p, to);
  return { changed: true, actions: [`switched upstream ${p.upstreamName} on ${p.host.name} from ${from} to ${to} (nginx -t, graceful reload)`], from };
}

/** nginx -t, and on success a graceful reload; a refused configuration is replaced by the kept one. */
async function testAndReload(s: SshSession, p: NginxProxy, to: string): Promise<void> {
  const { sudo, nginx, file, kept } = commandsOf(p);
  const test = await s.exec(`${nginx} -t 2>&1`);
  if (test.code !== 0) {
    await s.run(`[ ! -f ${kept} ] || ${sudo}mv -f -- ${kept} ${file}`, { what: `putting ${p.upstreamFile} back` });
    throw ApplicationFailure.nonRetryable(`nginx -t on ${p.host.name} refused the configuration with upstream ${to}; the previous file is back and nginx was not reloaded:\n${test.stdout.trim()}`, 'ProxyConfigRefused');
  }
  await s.run(`${nginx} -s reload`, { what: 'nginx -s reload' });
}
