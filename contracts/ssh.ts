/**
 * How every runbook names a host it reaches over SSH: one schema for the PostgreSQL, IRIS and
 * Firely inputs. The host key is pinned (never StrictHostKeyChecking=no); the private key is named,
 * never given (the worker resolves the secret).
 */
import { z } from 'zod';
import { secretRef } from './input';

/** A label for messages: letters, digits, _ . - */
export const hostLabel = z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, 'letters, digits, _ . - (at most 63)');
export const hostAddress = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/, 'a host name or an IP address');

/** A POSIX login name as useradd accepts it by default: what `ssh user@host` and `sudo -u` take unquoted. */
export const sshUser = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a user name: lower-case letters, digits, _ - (at most 32), not starting with a digit or -');

export const sshEndpoint = z.strictObject({
  port: z.number().int().min(1).max(65535).default(22),
  user: sshUser,
  hostKey: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'the pinned host key fingerprint as `ssh-keygen -lf <key> -E sha256` prints it (SHA256:...)'),
  privateKey: secretRef,
});
export type SshEndpoint = z.infer<typeof sshEndpoint>;

/** A host as the inputs name it: a label, an address, and how to reach it over SSH. */
export const sshHost = z.strictObject({ name: hostLabel, address: hostAddress, ssh: sshEndpoint });
export type SshHost = z.infer<typeof sshHost>;
