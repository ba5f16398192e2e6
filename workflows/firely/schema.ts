/** Inputs of the Firely Server migration runbook (so far: the reverse proxy it switches). */
import { z } from 'zod';
import { secretRef } from '../kit/input';

const absolutePath = z.string().regex(/^\/[^\0\n]*$/, 'an absolute path').refine((p) => !p.split('/').includes('..'), 'must not contain ".."');
export const hostPort = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port, e.g. 10.0.0.5:4080');

export const sshHost = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, 'letters, digits, _ . - (at most 63)'),
  address: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/, 'a host name or an IP address'),
  ssh: z.strictObject({
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a user name'),
    hostKey: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'the pinned host key fingerprint as `ssh-keygen -lf <key> -E sha256` prints it (SHA256:...)'),
    privateKey: secretRef,
  }),
});
export type SshHost = z.infer<typeof sshHost>;

export const nginxProxy = z.strictObject({
  kind: z.literal('nginx'),
  host: sshHost.describe('Where nginx runs'),
  upstreamFile: absolutePath.describe('The include file that holds only the upstream block, e.g. /etc/nginx/conf.d/firely-upstream.conf'),
  upstreamName: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an upstream name').default('firely'),
  nginx: absolutePath.default('/usr/sbin/nginx'),
  configFile: absolutePath.optional().describe('nginx -c; default: nginx\'s own'),
  sudo: z.boolean().default(false).describe('Run nginx -t / -s reload and the file move with sudo -n'),
  verifyUrl: z.url({ protocol: /^https?$/ }).describe('A URL through the proxy, asked after the switch'),
  upstreamHeader: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').default('X-Upstream')
    .describe('The response header that names the upstream which answered (add_header X-Upstream $upstream_addr always;)'),
});
export type NginxProxy = z.infer<typeof nginxProxy>;
