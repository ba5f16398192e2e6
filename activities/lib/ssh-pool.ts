/**
 * One SSH connection per host per worker, shared by every activity that acts on that host.
 * A new connection checks the pinned host key (connectSsh); one that dies is replaced on next
 * use; one unused for a while is closed; all are closed when the worker stops, within a deadline
 * (closeAll), whatever their hosts do.
 */
import type { SshHost } from '../../contracts/ssh';
import { whileHeartbeating } from './heartbeat';
import { checkSecretUse } from './secrets';
import { closeGraceMs, connectSsh, type SshSession, type SshTarget } from './ssh';

interface Entry {
  session?: SshSession;
  connecting?: Promise<SshSession>;
  users: number;
  lastUsed: number;
}

export class SshPool {
  private readonly entries = new Map<string, Entry>();
  private sweeper?: NodeJS.Timeout;
  /** Aborted by closeAll: connections still being made are given up, not left to their 15 s handshake timeout. */
  private stopping = new AbortController();

  constructor(private readonly idleMs = 60_000) {}

  /** Runs `fn` with the host's shared connection (made, or made again, as needed). */
  async use<T>(target: SshTarget, fn: (s: SshSession) => Promise<T>): Promise<T> {
    checkSecretUse(target.privateKey.secret, { host: target.host, purpose: 'ssh-key' });
    const key = [target.host, target.port, target.user, target.hostKey, target.privateKey.secret].join('\0');
    const entry = this.entries.get(key) ?? { users: 0, lastUsed: Date.now() };
    this.entries.set(key, entry);
    entry.users += 1;
    try {
      const session = await this.sessionOf(key, entry, target);
      return await fn(session);
    } finally {
      entry.users -= 1;
      entry.lastUsed = Date.now();
      this.scheduleSweep();
    }
  }

  private async sessionOf(key: string, entry: Entry, target: SshTarget): Promise<SshSession> {
    if (entry.session?.usable) return entry.session;
    entry.session = undefined;
    entry.connecting ??= connectSsh(target, this.stopping.signal).then(
      (session) => { entry.session = session; entry.connecting = undefined; return session; },
      (err) => { entry.connecting = undefined; if (!entry.users) this.entries.delete(key); throw err; },
    );
    return entry.connecting;
  }

  private scheduleSweep(): void {
    if (this.sweeper) return;
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      const now = Date.now();
      for (const [key, entry] of this.entries) {
        if (entry.users === 0 && !entry.connecting && now - entry.lastUsed >= this.idleMs) {
          void entry.session?.close();
          this.entries.delete(key);
        }
      }
      if (this.entries.size) this.scheduleSweep();
    }, Math.min(this.idleMs, 10_000));
    this.sweeper.unref();
  }

  /** How many connections are open now (for tests and the benchmark). */
  get size(): number {
    return [...this.entries.values()].filter((e) => e.session?.usable).length;
  }

  /**
   * Closes every connection, in use or not, and gives up those being made. Resolves within
   * `graceMs` (and a moment): a connection whose host does not answer by then is destroyed, and
   * the commands still running on it fail, so the activities using them end.
   */
  async closeAll(graceMs = closeGraceMs): Promise<void> {
    const sessions = [...this.entries.values()].flatMap((e) => (e.session ? [e.session] : []));
    this.entries.clear();
    this.stopping.abort();
    this.stopping = new AbortController();
    if (this.sweeper) clearTimeout(this.sweeper);
    this.sweeper = undefined;
    await Promise.all(sessions.map((s) => s.close(graceMs)));
  }
}

export const sshPool = new SshPool(Number(process.env.RUNBOOKS_SSH_IDLE_MS || 60_000));

export function withSsh<T>(target: SshTarget, fn: (s: SshSession) => Promise<T>): Promise<T> {
  return sshPool.use(target, fn);
}

/** A host as the runbooks' inputs name it (contracts/ssh.ts): its name, its address and how to reach it over SSH. */
export const sshTargetOf = (h: SshHost): SshTarget =>
  ({ label: `${h.name} (${h.address})`, host: h.address, port: h.ssh.port, user: h.ssh.user, hostKey: h.ssh.hostKey, privateKey: h.ssh.privateKey });

/** Runs `fn` with the host's pooled connection, heartbeating meanwhile (a dead worker is noticed within the heartbeat timeout). */
export const onSshHost = <T>(h: SshHost, fn: (s: SshSession) => Promise<T>): Promise<T> => whileHeartbeating(() => withSsh(sshTargetOf(h), fn));
