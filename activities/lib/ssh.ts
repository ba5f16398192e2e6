/**
 * SSH to the hosts a runbook acts on, with pinned host keys (never "accept any key").
 * Commands are strings built with `cmd`/`shq`; secrets travel on stdin, never on a command line.
 *
 * Nothing a peer sends may crash the worker: every connection has an 'error' listener for its
 * whole life, and a connection that fails is only ever an error of the activity that used it.
 */
import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ApplicationFailure } from '@temporalio/common';
import { Client, type ClientChannel } from 'ssh2';
import { resolveSecret } from './secrets';
import type { SecretRef } from '../../contracts/input';

export interface SshTarget {
  /** A name for messages, e.g. "primary (lab-a)". */
  label: string;
  host: string;
  port: number;
  user: string;
  /** The host key's SHA256 fingerprint as `ssh-keygen -l -E sha256` prints it: "SHA256:...". */
  hostKey: string;
  privateKey: SecretRef;
}

export interface ExecResult { code: number; stdout: string; stderr: string }

export const fingerprint = (key: Buffer): string => `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;

/** Output kept per stream: a command that prints without end cannot fill the worker's memory. */
const maxOutput = 4 * 1024 * 1024;
const append = (buf: string, d: Buffer) => (buf.length < maxOutput ? buf + d.toString('utf8') : buf);

/**
 * How long a closing connection may take to say goodbye before it is destroyed. A host that
 * vanished never acknowledges: a connection only ended stays in FIN-WAIT for the kernel's
 * retransmissions (about 15 minutes), and keeps the worker's process alive that long.
 */
export const closeGraceMs = 1_000;

export class SshSession {
  private closed = false;

  constructor(readonly target: SshTarget, private readonly client: Client, private readonly socket: Socket) {
    client.on('close', () => { this.closed = true; });
  }

  get usable(): boolean { return !this.closed; }

  /** Runs a command; stdin (e.g. a password) is written to it and closed. */
  exec(command: string, opts: { stdin?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error(`The SSH connection to ${this.target.label} is closed`));
      this.client.exec(command, (err, stream: ClientChannel) => {
        if (err) return reject(new Error(`Cannot run a command on ${this.target.label}: ${err.message}`));
        let stdout = '';
        let stderr = '';
        const timer = opts.timeoutMs ? setTimeout(() => { stream.close(); reject(new Error(`timed out after ${opts.timeoutMs} ms: ${command}`)); }, opts.timeoutMs) : undefined;
        stream.on('error', () => undefined); // the 'close' below ends the command either way
        stream.on('data', (d: Buffer) => { stdout = append(stdout, d); });
        stream.stderr.on('data', (d: Buffer) => { stderr = append(stderr, d); });
        stream.on('close', (code: number | null) => { if (timer) clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
        stream.end(opts.stdin ?? '');
      });
    });
  }

  /** Runs a command and returns its stdout; a non-zero exit throws with what the host said. */
  async run(command: string, opts: { stdin?: string; timeoutMs?: number; what?: string } = {}): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) {
      throw new Error(`${opts.what ?? 'command'} failed on ${this.target.label} (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
    }
    return r.stdout;
  }

  /** A byte stream to a Unix socket on the host (e.g. PostgreSQL's), through the SSH connection. */
  openSocket(socketPath: string): Promise<Duplex> {
    return new Promise((resolve, reject) => this.client.openssh_forwardOutStreamLocal(socketPath, (err, ch) => (err ? reject(err) : resolve(quiet(ch)))));
  }

  /** A byte stream to host:port as seen from the remote host. */
  openTcp(host: string, port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? reject(err) : resolve(quiet(ch)))));
  }

  /**
   * Runs `command` here and `sink` on another host with this command's stdout as its stdin
   * (e.g. tar -c | tar -x between two hosts, through the worker). Resolves with both exit codes.
   */
  pipeTo(command: string, other: SshSession, sink: string, opts: { signal?: AbortSignal } = {}): Promise<{ code: number; sinkCode: number; stderr: string }> {
    const open = (c: Client, line: string) => new Promise<ClientChannel>((resolve, reject) => c.exec(line, (err, ch) => (err ? reject(err) : resolve(quiet(ch)))));
    return Promise.all([open(this.client, command), open(other.client, sink)]).then(([src, dst]) => new Promise((resolve) => {
      let stderr = '';
      const closed = (ch: ClientChannel) => new Promise<number>((r) => ch.once('close', (code: number | null) => r(code ?? -1)));
      const codes = Promise.all([closed(src), closed(dst)]);
      src.stderr.on('data', (d: Buffer) => { stderr = append(stderr, d); });
      dst.stderr.on('data', (d: Buffer) => { stderr = append(stderr, d); });
      // Not stream.pipe: an SSH channel may emit 'close' before 'end', and pipe would then never end the sink.
      src.on('data', (d: Buffer) => { if (!dst.write(d)) { src.pause(); dst.once('drain', () => src.resume()); } });
      src.once('end', () => dst.end());
      dst.resume(); // its stdout must be read to the end, or the channel never closes
      src.end();
      // Cancelled: close both channels, so the remote commands see their input and output go away.
      const stop = () => { src.close(); dst.close(); };
      if (opts.signal?.aborted) stop(); else opts.signal?.addEventListener('abort', stop, { once: true });
      codes.then(([code, sinkCode]) => { opts.signal?.removeEventListener('abort', stop); resolve({ code, sinkCode, stderr }); });
    }));
  }

  /**
   * Ends the connection; destroys it if the host has not closed its side within `graceMs`.
   * Commands still running on it end then (their channels close), whatever the host does.
   */
  close(graceMs = closeGraceMs): Promise<void> {
    this.closed = true;
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), graceMs);
      this.socket.once('close', () => { clearTimeout(timer); resolve(); });
      this.client.end();
    });
  }
}

/** A channel whose errors are reported through its users (pg, a pipe), never as an unhandled event. */
function quiet<T extends Duplex>(ch: T): T {
  ch.on('error', () => undefined);
  return ch;
}

/** Host key algorithms by key type: an RSA key is offered under any of its signature names. */
const keyAlgorithms: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};
/** Which key type matched the pin at host:port, so later connections ask for it first. */
const pinnedKeyType = new Map<string, string>();

/** The key type named at the start of an SSH public key blob ("ssh-ed25519", "ssh-rsa", ...). */
function keyType(key: Buffer): string {
  const len = key.length >= 4 ? key.readUInt32BE(0) : 0;
  return len > 0 && len < 64 && key.length >= 4 + len ? key.subarray(4, 4 + len).toString('latin1') : 'unknown';
}

type Attempt = { session: SshSession; type: string } | { offered: { type: string; fingerprint: string } } | { error: Error & { level?: string } };

/** One connection attempt, asking for the host key types given (or the server's preference). */
function attempt(target: SshTarget, privateKey: string, types: string[] | undefined, signal?: AbortSignal): Promise<Attempt> {
  const client = new Client();
  // The worker's own socket, not one ssh2 makes: only with it can a stop destroy a connection
  // whose host is gone (ssh2's destroy() does nothing once end() was called).
  const socket = new Socket();
  const abort = () => socket.destroy();
  signal?.addEventListener('abort', abort, { once: true });
  let offered: { type: string; fingerprint: string } | undefined;
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    const settle = (a: Attempt) => { if (!settled) { settled = true; resolve(a); } };
    // Registered for the client's whole life: ssh2 may emit 'error' more than once (malformed packets).
    client.on('error', (err: Error & { level?: string }) => {
      if (!settled) settle(offered && offered.fingerprint !== target.hostKey ? { offered } : { error: err });
    });
    client.on('close', () => settle(offered && offered.fingerprint !== target.hostKey ? { offered } : { error: new Error('the connection closed during the handshake') }));
    client.once('ready', () => settle({ session: new SshSession(target, client, socket), type: offered?.type ?? 'unknown' }));
    try {
      if (signal?.aborted) throw new Error('the worker is stopping');
      socket.connect(target.port, target.host);
      client.connect({
        sock: socket, username: target.user, privateKey, readyTimeout: 15_000,
        keepaliveInterval: 10_000, keepaliveCountMax: 3,
        ...(types ? { algorithms: { serverHostKey: types as never } } : {}),
        hostVerifier: (key: Buffer) => {
          offered = { type: keyType(key), fingerprint: fingerprint(key) };
          return offered.fingerprint === target.hostKey;
        },
      });
    } catch (err) {
      settle({ error: err as Error });
    }
  }).then((a) => {
    signal?.removeEventListener('abort', abort);
    if (!('session' in a)) socket.destroy();
    return a;
  });
}

/**
 * Connects with the pinned host key. A server offers its preferred key type first; when that is
 * not the pinned one, the other key types it may hold are asked for one by one, so an operator
 * who pinned the RSA key is not told "another machine answers".
 */
export async function connectSsh(target: SshTarget, signal?: AbortSignal): Promise<SshSession> {
  const privateKey = resolveSecret(target.privateKey.secret, { host: target.host, purpose: 'ssh-key' });
  const where = `${target.host}:${target.port}`;
  const known = pinnedKeyType.get(where);
  const offers: Array<{ type: string; fingerprint: string }> = [];
  // First what worked last time (or the server's preference), then every other key type once.
  const plan: Array<string[] | undefined> = [known ? keyAlgorithms[known] : undefined];
  let expanded = false;
  while (plan.length) {
    const result = await attempt(target, privateKey, plan.shift(), signal);
    if (signal?.aborted) {
      if ('session' in result) void result.session.close();
      throw new Error(`Connecting to ${target.label} over SSH was abandoned: the worker is stopping`);
    }
    if ('session' in result) {
      pinnedKeyType.set(where, result.type);
      return result.session;
    }
    // Asked for a key type the server does not have, it ends the handshake: that type is simply not offered.
    if ('error' in result) {
      if (expanded) continue;
      throw connectionFailure(target, result.error);
    }
    offers.push(result.offered);
    if (!expanded) {
      expanded = true;
      const seen = new Set([known, result.offered.type]);
      for (const [type, algorithms] of Object.entries(keyAlgorithms)) if (!seen.has(type)) plan.push(algorithms);
    }
  }
  throw ApplicationFailure.nonRetryable(
    `Host key of ${target.label}, port ${target.port}, is ${offers.map((o) => `${o.fingerprint} (${o.type})`).join(', ')}, not the pinned ${target.hostKey}: ` +
    'another machine answers at this address, or its key was changed. Check the host, then update "hostKey" in the input. Nothing was changed.',
    'HostKeyMismatch');
}

function connectionFailure(target: SshTarget, err: Error & { level?: string }): Error {
  if (err.level === 'client-authentication') {
    return ApplicationFailure.nonRetryable(
      `SSH login as ${target.user} on ${target.label} was refused: the key in secret "${target.privateKey.secret}" is not authorized there. Nothing was changed.`,
      'SshAuthFailed');
  }
  return new Error(`Cannot reach ${target.label} over SSH at ${target.host}:${target.port}: ${err.message}`);
}

