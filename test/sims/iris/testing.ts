/**
 * Helpers the IRIS simulator's tests share: two instances of one mirror in temporary homes, the
 * real `iris` executable run on them, the checked-script idiom, and mirror_status.cxw asked.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createMirrorPair } from './admin';
import { stopStatusServer } from './server-control';

export const IRIS = path.join(__dirname, 'bin/iris');

export interface Host { name: 'a' | 'b'; home: string; mgr: string; hssys: string }
export interface Run { code: number; stdout: string; stderr: string }

const dirs: string[] = [];
const started: string[] = [];

export function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'iris-sim-test-'));
  dirs.push(d);
  return d;
}

export function iris(h: Host, args: string[], stdin = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(IRIS, args, { env: { ...process.env, IRIS_SIM_HOME: h.home } }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    child.stdin!.end(stdin);
  });
}

/** `iris session IRIS -U ns` with a script; the lines after the sentinel parsed as JSON. */
export const session = (h: Host, ns: string, script: string) => iris(h, ['session', 'IRIS', '-U', ns], `${script}\nhalt\n`);
export const results = (r: Run) => [...r.stdout.matchAll(/RB-RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
export async function result(h: Host, ns: string, script: string): Promise<any> {
  const r = await session(h, ns, script);
  const out = results(r);
  if (r.code !== 0 || out.length !== 1) throw new Error(`session on ${h.name} exited ${r.code} with:\n${r.stdout}${r.stderr}`);
  return out[0];
}

export function pair(opts: { owner?: { uid: number; gid: number } } = {}): { a: Host; b: Host; staging: string } {
  const root = tmp();
  const host = (name: 'a' | 'b'): Host => ({ name, home: path.join(root, name), mgr: path.join(root, `${name}-mgr`), hssys: `${path.join(root, `${name}-mgr`, 'hssys')}/` });
  const [a, b] = [host('a'), host('b')];
  createMirrorPair({ home: a.home, mgrDir: a.mgr, node: 'healthconnect-0', owner: opts.owner }, { home: b.home, mgrDir: b.mgr, node: 'healthconnect-1', owner: opts.owner });
  return { a, b, staging: path.join(root, 'staging') };
}

export async function start(...hosts: Host[]): Promise<void> {
  for (const h of hosts) {
    started.push(h.home);
    const r = await iris(h, ['start', 'IRIS']);
    expect(r.code).toBe(0);
  }
}

/** What mirror_status.cxw answers: the status and body, or 'no answer' (connection refused). */
export function mirrorStatus(h: Host): Promise<{ status: number; body: string } | 'no answer'> {
  let port: number;
  try { port = Number(readFileSync(path.join(h.home, 'run', 'status.port'), 'utf8')); } catch { return Promise.resolve('no answer'); }
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/csp/mirror_status.cxw' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', () => resolve('no answer'));
    req.end();
  });
}

export const md5 = (file: string) => createHash('md5').update(readFileSync(file)).digest('hex');
export const sh = (cmd: string) => new Promise<void>((resolve, reject) => execFile('sh', ['-c', cmd], (e) => (e ? reject(e) : resolve())));

// The checked-script idiom a runbook uses: act, test the %Status, print one JSON line behind a sentinel.
export const CHECK = (call: string) => `set sc=${call} if 'sc { write !,"RB-RESULT {""error"":""",$SYSTEM.Status.GetErrorText(sc),"""}",! do $SYSTEM.Process.Terminate(,1) }`;
export const DB_FLAGS = (dirExpr: string, extra = '') => [
  `set db=##class(SYS.Database).%OpenId(${dirExpr})`,
  'set o=##class(%DynamicObject).%New()',
  `do o.%Set("mounted",db.Mounted),o.%Set("mirrored",db.Mirrored),o.%Set("actReq",db.MirrorActivationRequired),o.%Set("catchup",db.MirrorDBCatchup),o.%Set("download",db.MirrorDBDownload),o.%Set("active",db.InActiveMirror),o.%Set("readOnly",db.ReadOnlyMounted)${extra}`,
  'write !,"RB-RESULT ",o.%ToJSON(),!',
].join('\n');
export const HSSYS_DIR = 'set dir=$piece(##class(Config.Databases).DatabaseByName("HSSYS"),"^",3)';
export const MISSING = 'set rs=##class(%ResultSet).%New("SYS.Mirror:MissingMirroredDatabases") do rs.Execute("HEALTHCONNECT") set n="" while rs.Next() { set n=n_rs.Get("Name")_"," } write !,"RB-RESULT {""missing"":""",n,"""}",!';
export const NETWORK_HOST = '^|"HSSYS"|%SYS("HealthShare","NetworkHostName")';

/** Steps 1-8 of the procedure in few sessions (the step-by-step version is its own test). */
export async function mirrorHssys(a: Host, b: Host, staging: string): Promise<void> {
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}\n${CHECK('##class(SYS.Database).DismountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  await sh(`cp -p ${a.hssys}IRIS.DAT ${staging}`);
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).MountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).DismountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  await sh(`cp -p ${staging} ${b.hssys}IRIS.DAT.tmp && mv ${b.hssys}IRIS.DAT.tmp ${b.hssys}IRIS.DAT`);
  await result(b, '%SYS', [HSSYS_DIR, CHECK('##class(SYS.Database).MountDatabase(dir)'), CHECK('##class(SYS.Mirror).ActivateMirroredDatabase(dir)'),
    CHECK('##class(SYS.Mirror).CatchupDB($lb(+$zu(49,dir)),,.errsfns)'), 'write !,"RB-RESULT {}",!'].join('\n'));
}

/** Registers the hooks that stop the status servers after each test and remove the homes after the file. */
export function cleanUpSims(): void {
  afterEach(() => {
    for (const h of started.splice(0)) stopStatusServer(h);
  });
  afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
}
