/** Inputs of the Health Connect (InterSystems IRIS) mirroring runbooks. */
import { z } from 'zod';
import { approvalPolicy, defaultApprovalPolicy, runbookInputFields, secretRef } from '../input';
import { hostAddress, hostLabel, sshEndpoint, sshUser } from '../ssh';
import { httpUrl } from '../endpoints';
import { haproxyProxy } from '../firely/schema';

export const irisNode = z.strictObject({
  name: hostLabel.describe('A label for messages, e.g. healthconnect-0'),
  address: hostAddress.describe('Host name or IP: SSH goes there, and so does the mirror health check'),
  ssh: sshEndpoint.extend({ user: sshUser.describe('Best the instance owner (irisowner), so copies of IRIS.DAT keep their owner') }),
  instance: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,31}$/, 'an instance name as `iris list` shows it').default('IRIS'),
  container: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'a container name'),
    sudo: z.boolean().default(false).describe('Prefix docker with sudo -n'),
  }).optional().describe('The container deployment: run `iris` and file commands through `docker exec -i <name>`'),
  mirrorStatusUrl: httpUrl.optional()
    .describe('The member\'s /csp/mirror_status.cxw as the load balancer\'s health check reaches it, usually through its Web Gateway (e.g. http://webgw1:8080/ap1a/csp/mirror_status.cxw). switchIrisMirror needs it: recent IRIS has no private web server on 52773'),
});
export type IrisNode = z.infer<typeof irisNode>;

const mirrorName = z.string().regex(/^[A-Z][A-Z0-9_]{0,14}$/, 'a mirror name: upper-case letters, digits, _ (at most 15)').default('HEALTHCONNECT');

const pair = {
  primary: irisNode.describe('The member that is primary now'),
  backup: irisNode.describe('The failover member that is backup now'),
  mirror: mirrorName,
};
const distinct = (i: { primary: IrisNode; backup: IrisNode }) => i.primary.address !== i.backup.address || !!i.primary.container !== !!i.backup.container
  || (i.primary.container && i.backup.container && i.primary.container.name !== i.backup.container.name);
const sameMember = { message: 'primary and backup are the same member', path: ['backup', 'address'] };

export const mirrorHssysInput = z.strictObject({
  ...runbookInputFields,
  ...pair,
  networkHostName: hostAddress.describe('The load balancer or VIP name that Health Connect hands out (set before the copy, so the backup gets it too)'),
  hsServices: z.strictObject({ password: secretRef.describe('HS_Services\'s password (set on both members)') }),
  copyAttempts: z.number().int().min(1).max(10).default(3).describe('How many times a copy whose checksum differs is redone'),
  catchUpWithinSeconds: z.number().int().min(5).max(86_400).default(600),
}).refine(distinct, sameMember);
export type MirrorHssysInput = z.infer<typeof mirrorHssysInput>;

export const namespaceName = z.string().regex(/^[A-Z][A-Z0-9]{0,63}$/, 'a Foundation namespace name: upper-case letters and digits, starting with a letter');

export const createMirroredNamespaceInput = z.strictObject({
  ...runbookInputFields,
  ...pair,
  namespace: namespaceName,
  autoStartProduction: z.boolean().default(true).describe('Set <NS>PKG.FoundationProduction to start with the instance'),
  catchUpWithinSeconds: z.number().int().min(5).max(86_400).default(600),
}).refine(distinct, sameMember);
export type CreateMirroredNamespaceInput = z.infer<typeof createMirroredNamespaceInput>;

const haproxyServer = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'an HAProxy server name: letters, digits, _ . : - (at most 64)');

/** The HAProxy in front of the members' superserver port (1972), read through its runtime API (the seeds' internal LB). */
export const irisLoadBalancer = haproxyProxy.pick({ host: true, adminSocket: true, socat: true, sudo: true }).extend({
  backend: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a backend name: letters, digits, _ . : - (at most 64)')
    .describe('The backend whose servers are the members\' superserver ports (1972), health-checked so that only the primary is UP'),
  primaryServer: haproxyServer.describe('The `server` name of the input\'s primary member in that backend'),
  backupServer: haproxyServer.describe('The `server` name of the input\'s backup member in that backend'),
}).refine((lb) => lb.primaryServer !== lb.backupServer, { message: 'primaryServer and backupServer are the same server', path: ['backupServer'] });
export type IrisLoadBalancer = z.infer<typeof irisLoadBalancer>;

export const switchIrisMirrorInput = z.strictObject({
  ...runbookInputFields,
  ...pair,
  applicationUrl: httpUrl.describe('A URL through the load balancer that must answer 2xx after the switch'),
  loadBalancer: irisLoadBalancer.optional()
    .describe('HAProxy in front of the superserver port: checked to route to the primary only before the gate, and to the new primary only after the take-over'),
  switchApproval: approvalPolicy.default(defaultApprovalPolicy),
  takeOverWithinSeconds: z.number().int().min(5).max(3600).default(120),
  rejoinWithinSeconds: z.number().int().min(5).max(86_400).default(600),
}).refine(distinct, sameMember);
export type SwitchIrisMirrorInput = z.infer<typeof switchIrisMirrorInput>;

/** One run at a time per mirror member. */
export const memberLocks = (...nodes: IrisNode[]) => nodes.map((n) => `iris:${n.address}:${n.container?.name ?? n.instance}`);

/** Every secret a run would send, where, and why: checked against the worker's scopes before anything connects. */
export function irisSecretUses(nodes: IrisNode[], hsServices?: { secret: string }, loadBalancer?: IrisLoadBalancer) {
  return [...nodes, ...(loadBalancer ? [loadBalancer.host] : [])].flatMap((n) => [
    { secret: n.ssh.privateKey.secret, host: n.address, purpose: 'ssh-key' as const },
    ...(hsServices && n !== loadBalancer?.host ? [{ secret: hsServices.secret, host: n.address, purpose: 'iris-password' as const }] : []),
  ]);
}

export const statusUrlOf = (n: IrisNode) => n.mirrorStatusUrl ?? `http://${n.address.includes(':') ? `[${n.address}]` : n.address}:52773/csp/mirror_status.cxw`;
