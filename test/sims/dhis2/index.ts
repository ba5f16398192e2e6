/**
 * A DHIS2 Web API simulator backed by real PostgreSQL tables shaped like DHIS2's, so change capture
 * (logical replication) sees the same rows change as it would on a real DHIS2. One instance per
 * database; it stands in for the source registry or for a target server.
 */
import { Pool } from 'pg';
import { allConversations } from './messages';
import { createSchema, registerUsers } from './schema';
import { ApiServer, type RequestRecord, type ServerState } from './server';
import { loadObjects } from './store';
import type { Dhis2Write } from './types';

export type { Dhis2Write, ObjectType } from './types';

export interface Dhis2SimOptions {
  /** e.g. 'source', 't1' (for logs and errors). */
  name: string;
  /** An existing database, empty or initialised by an earlier run. */
  db: { host: string; port: number; user: string; password: string; database: string };
  /** Listen port on 127.0.0.1; 0/undefined = any free port. The same port is reused after down()/up(). */
  port?: number;
  /** Basic auth users; the first one is also who personal access tokens act as. Superusers unless `superuser: false`. */
  users?: Array<{ username: string; password: string; id?: string; superuser?: boolean }>;
  /** Accepted personal access tokens (full 'd2pat_...' strings). */
  tokens?: string[];
  /**
   * Usernames in the feedback recipients group: feedback tickets go to them (and are visible only to them
   * and the sender), and only they can be a ticket's assignee. Default: the first user. (A DHIS2 without the
   * setting has nobody; the lab wants someone to read tickets.)
   */
  feedbackRecipients?: string[];
}

const DEFAULT_USERS = [{ username: 'admin', password: 'district', id: 'M5zQapPyTZI' }];

export class Dhis2Sim {
  readonly name: string;
  /** Every request seen (the last 5000). */
  readonly requests: RequestRecord[];
  private readonly state: ServerState;
  private readonly server: ApiServer;
  private readonly listeners = new Set<(w: Dhis2Write) => void>();
  private listenPort = 0;
  private stopped = false;
  private errorWith200 = 0;

  private constructor(state: ServerState) {
    this.name = state.name;
    this.state = state;
    this.requests = state.requests;
    this.server = new ApiServer(state);
  }

  /** Creates the schema idempotently, registers the users, then listens. */
  static async start(opts: Dhis2SimOptions): Promise<Dhis2Sim> {
    const users = opts.users ?? DEFAULT_USERS;
    if (users.length === 0) throw new Error(`DHIS2 simulator ${opts.name}: configure at least one user (tokens act as the first one)`);
    const pool = new Pool({ ...opts.db, max: 10 });
    // An idle client losing its connection (the test stopping PostgreSQL) must not crash the test process.
    pool.on('error', () => undefined);
    try {
      await createSchema(pool);
      const registered = await registerUsers(pool, users);
      const recipients = opts.feedbackRecipients ?? [users[0].username];
      const unknown = recipients.filter((name) => !registered.some((u) => u.username === name));
      if (unknown.length) throw new Error(`feedbackRecipients names users that are not configured: ${unknown.join(', ')}`);
      let sim: Dhis2Sim | undefined;
      const state: ServerState = {
        name: opts.name, pool, users: registered, tokens: [...(opts.tokens ?? [])], blocked: new Set(),
        feedbackRecipients: registered.filter((u) => recipients.includes(u.username)).map((u) => u.id),
        slowMs: 0, failRules: [], requests: [],
        emit: (writes) => sim?.emit(writes),
        takeErrorWith200: () => sim?.takeErrorWith200() ?? false,
      };
      sim = new Dhis2Sim(state);
      await sim.up(opts.port ?? 0);
      return sim;
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw new Error(`DHIS2 simulator ${opts.name} could not start on database ${opts.db.database}: ${(e as Error).message}`);
    }
  }

  get port(): number {
    return this.listenPort;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.listenPort}`;
  }

  /** Delays every API response by this many ms (after the work is done, like a slow network). */
  get slowMs(): number {
    return this.state.slowMs;
  }

  set slowMs(ms: number) {
    this.state.slowMs = ms;
  }

  /** Stops listening and destroys open sockets: connection refused from then on. */
  async down(): Promise<void> {
    await this.server.close();
  }

  /** Listens again, on the same port as before. */
  async up(port = this.listenPort): Promise<void> {
    if (this.stopped) throw new Error(`DHIS2 simulator ${this.name} is stopped`);
    if (this.server.listening) return;
    this.listenPort = await this.server.listen(port);
  }

  /** The next `count` requests (whose path matches, if given) answer `status` with a DHIS2-shaped body. */
  failNext(count: number, status: 409 | 500 | 503, path?: RegExp): void {
    this.state.failRules.push({ remaining: count, status, path });
  }

  /** The next `count` POST /api/metadata answer HTTP 200 with status ERROR and write nothing (a real DHIS2 quirk). */
  answerErrorWith200Next(count: number): void {
    this.errorWith200 += count;
  }

  /** Deleting this org unit, group or group set answers 409 E4030 (as if data values referenced it) until unblock(). */
  block(uid: string): void {
    this.state.blocked.add(uid);
  }

  unblock(uid: string): void {
    this.state.blocked.delete(uid);
  }

  /** Called after each committed change to an org unit, group or group set; returns an unsubscribe function. */
  onWrite(listener: (w: Dhis2Write) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Read from the database (not HTTP), as GET ?fields=* returns it, or undefined. */
  async get(type: Dhis2Write['type'], uid: string): Promise<any | undefined> {
    return (await loadObjects(this.state.pool, type, [uid]))[0];
  }

  /** All objects of a type, as ?fields=*, sorted by uid. */
  list(type: Dhis2Write['type']): Promise<any[]> {
    return loadObjects(this.state.pool, type, null);
  }

  /** All message conversations, oldest first, with their messages and recipients. */
  messages(): Promise<any[]> {
    return allConversations(this.state.pool);
  }

  /** Registers one more user (not a superuser unless said): sharing then decides what they may read and write. Returns the user's uid. */
  async addUser(user: { username: string; password: string; superuser?: boolean }): Promise<string> {
    const [added] = await registerUsers(this.state.pool, [{ superuser: false, ...user }]);
    this.state.users.push(added);
    return added.id;
  }

  /** Closes the server and the pool; the database stays. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.server.close();
    await this.state.pool.end();
  }

  private emit(writes: Dhis2Write[]): void {
    for (const write of writes) {
      for (const listener of this.listeners) {
        try {
          listener(write);
        } catch {
          // A test's listener failing must not turn a committed write into an HTTP error.
        }
      }
    }
  }

  private takeErrorWith200(): boolean {
    if (this.errorWith200 <= 0) return false;
    this.errorWith200 -= 1;
    return true;
  }
}
