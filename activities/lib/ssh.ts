/**
 * SSH to the hosts a runbook acts on, with pinned host keys (never "accept any key").
 * Commands are strings built with `cmd`/`shq`; secrets travel on stdin, never on a command line.
 */
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ApplicationFailure } from '@temporalio/common';
import { Client, type ClientChannel } from 'ssh2';
import { resolveSecret } from './secrets';
import type { SecretRef } from '../../workflows/kit/input';

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

export class SshSession {
  constructor(readonly target: SshTarget, private readonly client: Client) {}

  /** Runs a command; stdin (e.g. a password) is written to it and closed. */
  exec(command: string, opts: { stdin?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream: ClientChannel) => {
        if (err) return reject(err);
        let stdout = '';
        let stderr = '';
        const timer = opts.timeoutMs ? setTimeout(() => { stream.close(); reject(new Error(`timed out after ${opts.timeoutMs} ms: ${command}`)); }, opts.timeoutMs) : undefined;
        stream.on('data', (d: Buffer) => { stdout += d; });
        stream.stderr.on('data', (d: Buffer) => { stderr += d; });
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
    return new Promise((resolve, reject) => this.client.openssh_forwardOutStreamLocal(socketPath, (err, ch) => (err ? reject(err) : resolve(ch))));
  }

  /** A byte stream to host:port as seen from the remote host. */
  openTcp(host: string, port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? reject(err) : resolve(ch))));
  }

  /**
   * Runs `command` here and `sink` on another host with this command's stdout as its stdin
   * (e.g. tar -c | tar -x between two hosts, through the worker). Resolves with both exit codes.
   */
  pipeTo(command: string, other: SshSession, sink: string): Promise<{ code: number; sinkCode: number; stderr: string }> {
    const open = (c: Client, line: string) => new Promise<ClientChannel>((resolve, reject) => c.exec(line, (err, ch) => (err ? reject(err) : resolve(ch))));
    return Promise.all([open(this.client, command), open(other.client, sink)]).then(([src, dst]) => new Promise((resolve) => {
      let stderr = '';
      const closed = (ch: ClientChannel) => new Promise<number>((r) => ch.once('close', (code: number | null) => r(code ?? -1)));
      const codes = Promise.all([closed(src), closed(dst)]);
      src.stderr.on('data', (d: Buffer) => { stderr += d; });
      dst.stderr.on('data', (d: Buffer) => { stderr += d; });
      // Not stream.pipe: an SSH channel may emit 'close' before 'end', and pipe would then never end the sink.
      src.on('data', (d: Buffer) => { if (!dst.write(d)) { src.pause(); dst.once('drain', () => src.resume()); } });
      src.once('end', () => dst.end());
      dst.resume(); // its stdout must be read to the end, or the channel never closes
      src.end();
      codes.then(([code, sinkCode]) => resolve({ code, sinkCode, stderr }));
    }));
  }

  close(): void {
    this.client.end();
  }
}

export async function connectSsh(target: SshTarget): Promise<SshSession> {
  const privateKey = resolveSecret(target.privateKey.secret);
  const client = new Client();
  let offered: string | undefined;
  return new Promise((resolve, reject) => {
    client.once('ready', () => resolve(new SshSession(target, client)));
    client.once('error', (err: Error & { level?: string; code?: string }) => {
      if (offered && offered !== target.hostKey) {
        return reject(ApplicationFailure.nonRetryable(
          `Host key of ${target.label} (${target.host}:${target.port}) is ${offered}, not the pinned ${target.hostKey}: ` +
          'another machine answers at this address, or its key was changed. Check the host, then update "hostKey" in the input. Nothing was changed.',
          'HostKeyMismatch'));
      }
      if (err.level === 'client-authentication') {
        return reject(ApplicationFailure.nonRetryable(
          `SSH login as ${target.user} on ${target.label} was refused: the key in secret "${target.privateKey.secret}" is not authorized there. Nothing was changed.`,
          'SshAuthFailed'));
      }
      reject(new Error(`Cannot reach ${target.label} over SSH at ${target.host}:${target.port}: ${err.message}`));
    });
    client.connect({
      host: target.host, port: target.port, username: target.user, privateKey, readyTimeout: 15_000,
      keepaliveInterval: 10_000, keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => { offered = fingerprint(key); return offered === target.hostKey; },
    });
  });
}

export async function withSsh<T>(target: SshTarget, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const session = await connectSsh(target);
  try {
    return await fn(session);
  } finally {
    session.close();
  }
}
