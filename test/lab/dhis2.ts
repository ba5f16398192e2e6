/**
 * A DHIS2 org-unit sync lab: one real PostgreSQL (wal_level=logical) holding a database per
 * simulated DHIS2 (the source and each target), the simulators, the secrets, the sync config,
 * and the change listener as a real process (so tests can SIGKILL it).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Dhis2Sim } from '../sims/dhis2';
import { eventually as waitUntil, startProcess, type Proc } from '../support/processes';
import { startLocalPostgres, type LocalPostgres } from './local-postgres';

export type ResourceKind = 'organisationUnit' | 'organisationUnitGroup' | 'organisationUnitGroupSet';
const endpoints: Record<ResourceKind, string> = { organisationUnit: 'organisationUnits', organisationUnitGroup: 'organisationUnitGroups', organisationUnitGroupSet: 'organisationUnitGroupSets' };

export interface Dhis2Lab {
  pg: LocalPostgres;
  source: Dhis2Sim;
  targets: Record<string, Dhis2Sim>;
  secretsDir: string;
  configFile: string;
  /** The config as written; `writeConfig` rewrites it (targets merged by name). */
  config: Record<string, any>;
  writeConfig(change: (c: Record<string, any>) => void): void;
  workerEnv: Record<string, string>;
  /** Input of orgUnitSyncSetup for this lab. */
  setupInput(extra?: Record<string, unknown>): Record<string, unknown>;
  /** The change listener, handing over to the sync workflows on `queue`. */
  startListener(queue: string): Promise<Proc>;
  listener?: Proc;
  addTarget(name: string, opts?: { auth?: 'token' | 'basic'; config?: Record<string, unknown> }): Promise<Dhis2Sim>;
  stop(): Promise<void>;
}

export const TARGET_USER = 'xE7jOejl9FI';
/** The people of a target (approvers, and carol who only reads): each gets approval links in private messages. */
export const targetPeople = [
  { username: 'alice', password: 'district', id: 'aliceUserId' }, { username: 'bob', password: 'district', id: 'bobUserId01' },
  { username: 'carol', password: 'district', id: 'carolUserId' },
];

export async function startDhis2Lab(targetNames: string[]): Promise<Dhis2Lab> {
  const pg = await startLocalPostgres({ walLevel: 'logical' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rbdhis2-'));
  const secretsDir = path.join(dir, 'secrets');
  mkdirSync(secretsDir, { mode: 0o700 });
  const secret = (name: string, value: string) => writeFileSync(path.join(secretsDir, name), value, { mode: 0o600 });
  secret('dhis2-db-admin', pg.password);
  secret('dhis2-cdc', `cdc-${Math.random().toString(36).slice(2)}`);

  await pg.createDatabase('dhis2_source');
  const sourceToken = `d2pat_${Math.random().toString(36).slice(2).padEnd(12, 'x')}source`;
  secret('source-token', sourceToken);
  const db = (database: string) => ({ host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database });
  // The source's people: admin (whom the token acts as) and the approvers, who may also edit on the source.
  const source = await Dhis2Sim.start({ name: 'source', db: db('dhis2_source'), tokens: [sourceToken], users: [{ username: 'admin', password: 'district', id: 'M5zQapPyTZI' }, ...targetPeople] });

  const targets: Record<string, Dhis2Sim> = {};
  const config: Record<string, any> = {
    source: {
      baseUrl: source.baseUrl, auth: { token: { secret: 'source-token' } },
      database: { host: pg.host, port: pg.port, database: 'dhis2_source', user: 'runbooks_cdc', password: { secret: 'dhis2-cdc' } },
    },
    targets: [],
    listener: { statusPort: 0, lagLogEvery: '2s' },
    idleAfter: '10m',
  };
  const configFile = path.join(dir, 'orgunit-sync.json');
  const lab: Dhis2Lab = {
    pg, source, targets, secretsDir, configFile, config,
    workerEnv: { RUNBOOKS_SECRETS_DIR: secretsDir, ORGUNIT_SYNC_CONFIG: configFile },
    writeConfig(change) {
      change(config);
      writeFileSync(configFile, JSON.stringify(config, null, 2));
    },
    setupInput(extra = {}) {
      return {
        database: { host: pg.host, port: pg.port, database: 'dhis2_source', user: 'postgres', password: { secret: 'dhis2-db-admin' } },
        capture: { user: 'runbooks_cdc', password: { secret: 'dhis2-cdc' } },
        ...extra,
      };
    },
    async startListener(queue) {
      const proc = startProcess('workers/orgunit-listener.ts', [], { ...lab.workerEnv, RUNBOOKS_TASK_QUEUE: queue });
      await proc.waitFor(/Org-unit listener ready/);
      lab.listener = proc;
      return proc;
    },
    async addTarget(name, opts = {}) {
      await pg.createDatabase(`dhis2_${name.replace(/-/g, '_')}`);
      const token = `d2pat_${Math.random().toString(36).slice(2).padEnd(12, 'x')}${name}`;
      const password = `pw-${Math.random().toString(36).slice(2)}`;
      const sim = await Dhis2Sim.start({
        name, db: db(`dhis2_${name.replace(/-/g, '_')}`), tokens: [token],
        users: [{ username: 'admin', password: 'district', id: 'M5zQapPyTZI' }, { username: 'sync', password, id: TARGET_USER }, ...targetPeople],
        // carol reads the approval tickets without being asked to decide.
        feedbackRecipients: ['admin', 'carol'],
      });
      secret(`${name}-token`, token);
      secret(`${name}-password`, password);
      targets[name] = sim;
      const auth = opts.auth === 'basic' ? { basic: { username: 'sync', password: { secret: `${name}-password` } } } : { token: { secret: `${name}-token` } };
      lab.writeConfig((c) => {
        c.targets = c.targets.filter((t: { name: string }) => t.name !== name);
        c.targets.push({ name, baseUrl: sim.baseUrl, auth, notify: { users: [TARGET_USER] }, retry: { giveUpAfter: '1h', maximumInterval: '2s' }, ...opts.config });
      });
      return sim;
    },
    async stop() {
      await lab.listener?.kill('SIGKILL');
      for (const sim of [source, ...Object.values(targets)]) await sim.stop().catch(() => undefined);
      pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const [i, name] of targetNames.entries()) await lab.addTarget(name, { auth: i % 2 ? 'token' : 'basic' });
  return lab;
}

/** Writes to the source as its users do, through its API. */
export async function sourceApi(lab: Dhis2Lab, method: 'POST' | 'PUT' | 'DELETE', apiPath: string, body?: unknown, as = 'admin'): Promise<{ status: number; body: any }> {
  const res = await fetch(`${lab.source.baseUrl}/api/${apiPath}`, {
    method, headers: { authorization: `Basic ${Buffer.from(`${as}:district`).toString('base64')}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* plain text */ }
  return { status: res.status, body: parsed };
}

/** Creates or updates resources on the source in one import (fails the test on an import error). */
export async function sourceImport(lab: Dhis2Lab, kind: ResourceKind, objects: object[], as = 'admin'): Promise<void> {
  const res = await sourceApi(lab, 'POST', 'metadata?importStrategy=CREATE_AND_UPDATE&identifier=UID&atomicMode=ALL', { [endpoints[kind]]: objects }, as);
  if (res.status !== 200 || res.body?.status !== 'OK') throw new Error(`source import failed: ${res.status} ${JSON.stringify(res.body)}`);
}

export async function sourceDelete(lab: Dhis2Lab, kind: ResourceKind, uid: string): Promise<void> {
  const res = await sourceApi(lab, 'DELETE', `${endpoints[kind]}/${uid}`);
  if (res.status !== 200) throw new Error(`source delete failed: ${res.status} ${JSON.stringify(res.body)}`);
}

/** What must be equal between the source and a target, per resource (the test's own definition, not the product's). */
export function essence(kind: ResourceKind, r: any): Record<string, unknown> {
  const refs = (list: any[] | undefined) => (list ?? []).map((x) => x.id).sort();
  if (kind === 'organisationUnit') {
    return { id: r.id, code: r.code, name: r.name, shortName: r.shortName, openingDate: r.openingDate, closedDate: r.closedDate, description: r.description, parent: r.parent?.id, level: r.level, path: r.path };
  }
  if (kind === 'organisationUnitGroup') return { id: r.id, code: r.code, name: r.name, shortName: r.shortName, members: refs(r.organisationUnits) };
  return { id: r.id, code: r.code, name: r.name, shortName: r.shortName, compulsory: r.compulsory, groups: refs(r.organisationUnitGroups) };
}

export async function snapshotOf(sim: Dhis2Sim): Promise<Record<ResourceKind, Array<Record<string, unknown>>>> {
  const out = {} as Record<ResourceKind, Array<Record<string, unknown>>>;
  for (const kind of Object.keys(endpoints) as ResourceKind[]) out[kind] = (await sim.list(kind)).map((r) => essence(kind, r));
  return out;
}

/**
 * Waits until `check` holds, polling; fails with the last observed difference. The deadline only
 * bounds a broken run: the test waits for the state, not for a time.
 */
export async function eventually<T>(what: string, observe: () => Promise<T>, holds: (v: T) => boolean, deadlineMs = 90_000): Promise<T> {
  let last: T | undefined;
  try {
    // Wrapped: the awaited state may itself be falsy (a unit gone from a target).
    const held = await waitUntil(async () => { last = await observe(); return holds(last) && { value: last }; }, what, deadlineMs);
    return held.value;
  } catch (err) {
    throw new Error(`${(err as Error).message}. Last observed:\n${JSON.stringify(last, null, 2)?.slice(0, 4000)}`);
  }
}

/** Waits until the target holds exactly what the source holds (every resource type). */
export async function converged(lab: Dhis2Lab, target: string, deadlineMs?: number): Promise<void> {
  const sim = lab.targets[target];
  await eventually(`${target} equal to the source`, async () => {
    const [s, t] = await Promise.all([snapshotOf(lab.source), snapshotOf(sim)]);
    return { source: s, target: t };
  }, ({ source, target: t }) => JSON.stringify(source) === JSON.stringify(t), deadlineMs);
}

let uidCounter = 0;
/** A fresh DHIS2 uid (letter + 10 alphanumerics), unique within the run. */
export function newUid(prefix = 'T'): string {
  const n = (Date.now() % 1e6).toString(36) + (uidCounter++).toString(36);
  return `${prefix}${n.padStart(10, '0')}`.slice(0, 11).padEnd(11, '0');
}
