/**
 * What Health Connect needs around a mirrored HSSYS: HS_Services enabled with a known password
 * (and the interoperability credential of the same name),
 * the network host name pointing at the load balancer, and the mirror monitor launch task on the
 * backup. Each looks first and acts only when needed.
 */
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import type { ChangeReport } from '../../contracts/messages';
import type { IrisNode } from '../../contracts/iris/schema';
import type { SecretRef } from '../../contracts/input';
import { resolveSecret } from '../lib/secrets';
import { inspectMember } from './inspect';
import { checkStatus, osString, runScript } from './session';

/**
 * IRIS never gives a password back, so the runbook keeps a salted scrypt fingerprint of the one it
 * set (in ^Runbooks in IRISSYS, beside IRIS's own password hashes): a second run can tell that the
 * password is already the secret's without setting it again.
 */
const fingerprint = (password: string, salt = randomBytes(16).toString('hex')) => `${salt}$${scryptSync(password, salt, 32).toString('hex')}`;
function fingerprintMatches(stored: string, password: string): boolean {
  const [salt, hash] = stored.split('$');
  if (!salt || !hash || !/^[0-9a-f]{64}$/.test(hash)) return false;
  return timingSafeEqual(Buffer.from(fingerprint(password, salt).split('$')[1], 'hex'), Buffer.from(hash, 'hex'));
}

export async function ensureHsServices(r: { node: IrisNode; mirror: string; password: SecretRef; dryRun: boolean }): Promise<ChangeReport> {
  const password = resolveSecret(r.password.secret, { host: r.node.address, purpose: 'iris-password' });
  const hs = (await inspectMember(r.node, r.mirror)).hsServices;
  if (hs.enabled && !hs.changePassword && fingerprintMatches(hs.fingerprint, password)) return { changed: false, actions: [] };
  const action = `HS_Services on ${r.node.name}: enabled, password (and the HS_Services credential) from secret "${r.password.secret}"`;
  if (r.dryRun) return { changed: false, actions: [`would set ${action}`] };
  await runScript(r.node, '%SYS', [
    `kill p set p("Enabled")=1,p("ChangePassword")=0,p("Password")=${osString(password)}`,
    checkStatus('##class(Security.Users).Modify("HS_Services",.p)', 'Changing HS_Services'),
    'kill p',
  ], { redact: [password, password.replace(/"/g, '""')] });
  // The interoperability credential of the same name, which Health Connect's productions log in with.
  await runScript(r.node, 'HSLIB', [
    checkStatus(`##class(Ens.Config.Credentials).SetCredential("HS_Services","HS_Services",${osString(password)},1)`, 'Setting the HS_Services credential'),
  ], { redact: [password, password.replace(/"/g, '""')] });
  await runScript(r.node, '%SYS', [`set ^Runbooks("HS_Services","fingerprint")=${osString(fingerprint(password))}`]);
  return { changed: true, actions: [`set ${action}`] };
}

/** ^%SYS("HealthShare","NetworkHostName") in HSSYS: set on the primary before HSSYS is copied, so the backup has it too. */
export async function ensureNetworkHostName(r: { node: IrisNode; mirror: string; name: string; dryRun: boolean }): Promise<ChangeReport> {
  const state = await inspectMember(r.node, r.mirror);
  if (state.networkHostName === r.name) return { changed: false, actions: [] };
  const action = `network host name ${r.name} on ${r.node.name} (was ${state.networkHostName || 'not set'})`;
  if (r.dryRun) return { changed: false, actions: [`would set ${action}`] };
  if (!state.databases.HSSYS.mounted) throw new Error(`HSSYS is not mounted on ${r.node.name}: the network host name cannot be set`);
  await runScript(r.node, '%SYS', [`set ^|"HSSYS"|%SYS("HealthShare","NetworkHostName")=${osString(r.name)}`]);
  return { changed: true, actions: [`set ${action}`] };
}

/**
 * The mirror monitor launch task on the backup (HSLIB): keeps IRISSYS's Health Connect settings in
 * step there. Schedule() is once per namespace; a marker in ^Runbooks says this member has it.
 */
export async function scheduleMirrorTask(r: { node: IrisNode; mirror: string; namespace: string; dryRun: boolean }): Promise<ChangeReport> {
  const marker = `^Runbooks("MirrorTask",${osString(r.namespace)})`;
  const known = await runScript(r.node, '%SYS', [`do o.%Set("scheduled",$get(${marker}))`]);
  if (String(known.scheduled) === '1') return { changed: false, actions: [] };
  const action = `the mirror monitor task for ${r.namespace} on ${r.node.name}`;
  if (r.dryRun) return { changed: false, actions: [`would schedule ${action}`] };
  await runScript(r.node, 'HSLIB', [checkStatus(`##class(HS.Util.Mirror.Task).Schedule(${osString(r.namespace)})`, 'Scheduling the mirror monitor task')]);
  await runScript(r.node, '%SYS', [`set ${marker}=1`]);
  return { changed: true, actions: [`scheduled ${action}`] };
}
