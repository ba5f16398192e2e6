/**
 * The OpenELIS side of a standby: its certificates (checked, never copied: the procedure leaves
 * /etc/openelis-global to each server) and, after a promotion, the webapp's own health answer.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ChangeReport } from '../../contracts/messages';
import type { PgHost } from '../../contracts/postgres/schema';
import { shq } from '../lib/shell';
import type { SshSession } from '../lib/ssh';
import { onHost, profileOf } from './hosts';

export interface CertificatesRequest { primary: PgHost; standby: PgHost; dir: string; required: string[]; sameAsPrimary: string[] }

/** sha256 of each file, or "missing" (an empty file counts as missing): only checksums leave the host, never contents. */
async function checksums(s: SshSession, host: PgHost, dir: string, files: string[]): Promise<Map<string, string>> {
  const script = files.map((f) => `f=${shq(`${dir}/${f}`)}; if [ -s "$f" ] && [ ! -L "$f" ]; then sha256sum < "$f" | cut -c1-64; else echo missing; fi`).join('; ');
  const out = (await s.run(profileOf(host).asAdmin(script), { what: `reading checksums in ${dir}` })).trim().split('\n');
  return new Map(files.map((f, i) => [f, out[i] ?? 'missing']));
}

/**
 * The standby has every certificate file the webapp mounts, and the ones that must match (the
 * copied common.properties holds the primary's keystore and truststore passwords) are the primary's.
 * Refuses, naming each file and what to do, before anything is changed.
 */
export async function checkCertificates(req: CertificatesRequest): Promise<ChangeReport> {
  const files = [...new Set([...req.required, ...req.sameAsPrimary])];
  if (!files.length) return { changed: false, actions: [] };
  const [theirs, ours] = await Promise.all([
    onHost(req.primary, (s) => checksums(s, req.primary, req.dir, req.sameAsPrimary)),
    onHost(req.standby, (s) => checksums(s, req.standby, req.dir, files)),
  ]);
  const missing = files.filter((f) => ours.get(f) === 'missing' && (req.required.includes(f) || theirs.get(f) !== 'missing'));
  const differ = req.sameAsPrimary.filter((f) => ours.get(f) !== 'missing' && theirs.get(f) !== 'missing' && ours.get(f) !== theirs.get(f));
  const primaryLacks = req.sameAsPrimary.filter((f) => theirs.get(f) === 'missing' && ours.get(f) !== 'missing');
  const problems = [
    ...(missing.length ? [`${req.standby.name} has no ${missing.join(', ')} in ${req.dir}`] : []),
    ...(differ.length ? [`${differ.join(', ')} in ${req.dir} differ between ${req.primary.name} and ${req.standby.name} (the copied secrets hold the primary's keystore and truststore passwords)`] : []),
    ...(primaryLacks.length ? [`${req.primary.name} has no ${primaryLacks.join(', ')} in ${req.dir} to compare with`] : []),
  ];
  if (problems.length) {
    throw ApplicationFailure.nonRetryable(`The OpenELIS certificates are not ready for a failover: ${problems.join('; ')}. ` +
      `Copy the primary's keystore and truststore to ${req.dir} on ${req.standby.name} (and a client_facing_keystore that covers its address), then run again. Nothing was changed.`,
    'CertificatesNotReady');
  }
  return { changed: false, actions: [`${req.standby.name} has ${files.join(', ')} in ${req.dir}; ${req.sameAsPrimary.join(', ') || 'nothing'} the same as on ${req.primary.name}`] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One health question, asked on the host: the HTTP status and the start of the body. */
async function askHealth(s: SshSession, url: string): Promise<{ status: number; body: string; error?: string }> {
  // -k: the webapp's own certificate on the host itself, as OpenELIS's healthcheck asks it (install/openelis_healthcheck.sh).
  const r = await s.exec(`curl -k -sS --max-time 10 --max-filesize 65536 -o - -w '\\n%{http_code}' ${shq(url)}`);
  const lines = r.stdout.replace(/\n$/, '').split('\n');
  const status = Number(lines.pop() ?? 0);
  return { status, body: lines.join('\n').slice(0, 300), error: r.code !== 0 ? r.stderr.trim().slice(0, 300) : undefined };
}

const isUp = (body: string) => {
  try { return (JSON.parse(body) as { status?: unknown }).status === 'UP'; } catch { return false; }
};

/**
 * After a promotion: the application's own health answer (OpenELIS: GET /api/OpenELIS-Global/health
 * answers {"status":"UP"} once the webapp has started, which needs its database login). Waits for
 * it within the profile's bound; a webapp that never answers healthy fails the run, saying why.
 */
export async function checkApplicationHealth(req: { host: PgHost; dryRun: boolean }): Promise<ChangeReport & { healthy?: boolean }> {
  const health = profileOf(req.host).appHealth;
  if (!health) return { changed: false, actions: [] };
  if (req.dryRun) return { changed: false, actions: [`would wait up to ${health.withinSeconds}s for ${health.url} on ${req.host.name} to answer {"status":"UP"}`] };
  const deadline = Date.now() + health.withinSeconds * 1000;
  return onHost(req.host, async (s) => {
    for (;;) {
      const answer = await askHealth(s, health.url);
      if (answer.status === 200 && isUp(answer.body)) {
        return { changed: false, healthy: true, actions: [`the application on ${req.host.name} answers healthy at ${health.url}`] };
      }
      if (Date.now() > deadline) {
        const last = answer.error ? answer.error : `HTTP ${answer.status}${answer.body ? `: ${answer.body}` : ''}`;
        throw ApplicationFailure.nonRetryable(`The application on ${req.host.name} did not answer healthy at ${health.url} within ${health.withinSeconds}s (last answer: ${last}). ` +
          'The database is promoted and takes writes, but the webapp does not serve: check its log (docker logs openelisglobal-webapp). A webapp that cannot log in ' +
          "to its database usually means secrets/ was not copied from the old primary (setupPostgresStandby's appDir.includeSecrets).", 'ApplicationUnhealthy');
      }
      Context.current().heartbeat();
      await sleep(1000);
    }
  });
}
