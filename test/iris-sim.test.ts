/**
 * The IRIS simulator (test/sims/iris) behaves as the reference notes say IRIS does: `iris session`
 * exit codes, IRIS's error output, namespace rules, the HSSYS mirroring procedure done by hand,
 * the fault knobs, failover on a graceful stop and mirror_status.cxw, and a mirrored Foundation
 * namespace appearing on the backup. Each test runs the real executable on two instances of one
 * mirror, with their own temporary IRIS_SIM_HOME.
 */
import { execFile } from 'node:child_process';
import { chownSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInstance, crash, passwordMatches, setFaults, swapRoles } from './sims/iris/admin';
import { startInstance, transact } from './sims/iris/instance';
import {
  CHECK, DB_FLAGS, HSSYS_DIR, MISSING, NETWORK_HOST, cleanUpSims, type Host, iris, md5, mirrorHssys, mirrorStatus, pair, result, results, session, sh, start, tmp,
} from './sims/iris/testing';

cleanUpSims();

test('iris session exits 0 when code errors, 1 after Terminate; errors print as IRIS prints them', async () => {
  const { a } = pair();
  transact(a.home, startInstance);
  const errors = await session(a, '%SYS', [
    'write y',
    'write ##class(Foo.Bar).Baz()',
    'write ##class(SYS.Mirror).Nope()',
    'set x=$zzz(1)',
    'hang 1',
    'set sc=##class(Security.Users).Get("nobody",.p) do $SYSTEM.Status.DisplayError(sc)',
    'write !,"RB-RESULT {""after"":1}",!',
  ].join('\n'));
  expect(errors.code).toBe(0);
  expect(errors.stdout).toMatch(/^Node: healthconnect-0, Instance: IRIS$/m);
  for (const e of ['<UNDEFINED> *y', '<CLASS DOES NOT EXIST> *Foo.Bar', '<METHOD DOES NOT EXIST> *Nope,SYS.Mirror', 'ERROR #838: User nobody does not exist']) expect(errors.stdout).toContain(e);
  expect(errors.stdout.match(/<SYNTAX>/g)).toHaveLength(2);
  expect(results(errors)).toEqual([{ after: 1 }]);

  const terminated = await session(a, '%SYS', `${CHECK('##class(Security.Users).Get("nobody",.p)')}\nwrite !,"RB-RESULT {""after"":1}",!`);
  expect(terminated.code).toBe(1);
  expect(results(terminated)).toEqual([{ error: 'ERROR #838: User nobody does not exist' }]);

  // Without the leading newline the prompt shares the sentinel's line, as in a real session.
  expect((await session(a, 'USER', 'write "RB-RESULT 1",!')).stdout).toContain('USER>RB-RESULT 1');
  expect((await iris(a, ['session', 'IRIS', '-U', 'NOSUCH'], 'halt\n')).code).toBe(1);
});

test('SYS.* exists only in %SYS, HS.* only in HSLIB; primary-only and backup-only calls are refused', async () => {
  const { a, b } = pair();
  await start(a, b);
  const inUser = await session(a, 'USER', 'write ##class(SYS.Mirror).IsMirrorStarted("HEALTHCONNECT")\nwrite ##class(Security.Users).Get("HS_Services",.p)\nwrite ##class(%SYS.Namespace).Exists("HSLIB"),!');
  expect(inUser.stdout).toContain('<CLASS DOES NOT EXIST> *SYS.Mirror');
  expect(inUser.stdout).toContain('<CLASS DOES NOT EXIST> *Security.Users');
  expect(inUser.stdout).toContain('USER>1\n');
  expect((await session(a, '%SYS', 'do ##class(HS.Util.Mirror.Task).Schedule("HSSYS")')).stdout).toContain('<CLASS DOES NOT EXIST> *HS.Util.Mirror.Task');

  expect(await result(a, '%SYS', 'set sc=##class(SYS.Mirror).GetFailoverMemberStatus(.this,.other) write !,"RB-RESULT {""started"":",##class(SYS.Mirror).IsMirrorStarted("HEALTHCONNECT"),",""role"":""",$lg(this,3),""",""status"":""",$lg(this,4),""",""other"":""",$lg(other,3),"""}",!'))
    .toEqual({ started: 1, role: 'Primary', status: 'Active', other: 'Backup' });
  expect(await result(b, '%SYS', 'write !,"RB-RESULT {""primary"":",$SYSTEM.Mirror.IsPrimary(),",""backup"":",$SYSTEM.Mirror.IsBackup(),",""status"":""",$SYSTEM.Mirror.GetStatus(),"""}",!'))
    .toEqual({ primary: 0, backup: 1, status: 'CONNECTED' });
  expect((await iris(a, ['list'])).stdout).toMatch(/Status = Primary/);
  expect((await iris(b, ['list', 'IRIS'])).stdout).toMatch(/Status = Backup/);

  const onBackup = await session(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}`);
  expect(onBackup.code).toBe(1);
  expect(results(onBackup)[0].error).toMatch(/^ERROR #\d+: Adding a database to the mirror is only allowed on the primary/);
  expect(results(await session(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).ActivateMirroredDatabase(dir)')}`))[0].error)
    .toMatch(/only allowed on the backup/);
  expect(results(await session(a, '%SYS', `${HSSYS_DIR}\n${CHECK('$SYSTEM.Mirror.DBActivate(dir)')}`))[0].error).toMatch(/only allowed on the backup/);
});

test('HSSYS mirrored by hand through iris session scripts: add, dismount, copy, mount, place, activate, catch up, task', async () => {
  const { a, b, staging } = pair();
  await start(a, b);
  // HS_Services enabled with a password (never printed), and the network host name set before the copy.
  await result(a, '%SYS', [
    CHECK('##class(Security.Users).Get("HS_Services",.p)'),
    'kill p set p("Enabled")=1,p("ChangePassword")=0,p("Password")="s3cret-pw"',
    CHECK('##class(Security.Users).Modify("HS_Services",.p)'),
    'kill p do ##class(Security.Users).Get("HS_Services",.p) write !,"RB-RESULT {""enabled"":",p("Enabled"),",""hasPasswordKey"":",$data(p("Password")),"}",!',
  ].join('\n')).then((r) => expect(r).toEqual({ enabled: 1, hasPasswordKey: 0 }));
  expect(passwordMatches(a.home, 'HS_Services', 's3cret-pw')).toBe(true);
  expect(readFileSync(path.join(a.home, 'instance.json'), 'utf8')).not.toContain('s3cret-pw');
  await result(a, '%SYS', `set ${NETWORK_HOST}="loadbalancer" write !,"RB-RESULT {""host"":""",${NETWORK_HOST},"""}",!`);

  expect(await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}\n${DB_FLAGS('dir')}`))
    .toMatchObject({ mounted: 1, mirrored: 1, actReq: 0, catchup: 0, active: 1, readOnly: 0 });
  expect(results(await session(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.MirrorConfiguration).AddDatabaseToMirrorSet(dir,"HEALTHCONNECT")')}`))[0].error)
    .toMatch(/already mirrored/);
  expect(await result(b, '%SYS', MISSING)).toEqual({ missing: ':mirror:HEALTHCONNECT:HSSYS,' });

  // Dismount on the primary (writes there now fail), copy with cp -p, mount again at once.
  expect(await result(a, '%SYS', `${HSSYS_DIR}\nset db=##class(SYS.Database).%OpenId(dir)\n${CHECK('db.Dismount()')}\n${DB_FLAGS('dir')}`)).toMatchObject({ mounted: 0 });
  expect((await session(a, '%SYS', `write ${NETWORK_HOST}`)).stdout).toMatch(/<DIRECTORY> \*.*hssys\//);
  await sh(`cp -p ${a.hssys}IRIS.DAT ${staging}`);
  expect(md5(staging)).toBe(md5(`${a.hssys}IRIS.DAT`));
  expect(await result(a, '%SYS', `${HSSYS_DIR}\nset db=##class(SYS.Database).%OpenId(dir)\n${CHECK('db.Mount()')}\n${DB_FLAGS('dir')}`)).toMatchObject({ mounted: 1, mirrored: 1 });

  // Place on the backup: it sees a mirrored database that needs activation and catch-up.
  await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).DismountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  await sh(`cp -p ${staging} ${b.hssys}IRIS.DAT.part && mv ${b.hssys}IRIS.DAT.part ${b.hssys}IRIS.DAT`);
  expect(await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).MountDatabase(dir)')}\n${DB_FLAGS('dir')}`))
    .toEqual({ mounted: 1, mirrored: 1, actReq: 1, catchup: 1, download: 0, active: 0, readOnly: 1 });
  expect(await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).ActivateMirroredDatabase(dir)')}\n${DB_FLAGS('dir')}`)).toMatchObject({ actReq: 0, catchup: 1, active: 1 });
  expect(await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).CatchupDB($lb(+$zu(49,dir)),,.errsfns)')}\n${DB_FLAGS('dir')}`))
    .toEqual({ mounted: 1, mirrored: 1, actReq: 0, catchup: 0, download: 0, active: 1, readOnly: 1 });

  // The host name came with the file; the backup's copy is read-only; the primary's writes reach it.
  const onB = await session(b, '%SYS', `write !,"RB-RESULT {""host"":""",${NETWORK_HOST},"""}",!\nset ${NETWORK_HOST}="other"`);
  expect(results(onB)).toEqual([{ host: 'loadbalancer' }]);
  expect(onB.stdout).toMatch(/<PROTECT> \*.*NetworkHostName/);
  await session(a, '%SYS', `set ${NETWORK_HOST}="vip"`);
  expect(await result(b, '%SYS', `write !,"RB-RESULT {""host"":""",${NETWORK_HOST},"""}",!`)).toEqual({ host: 'vip' });

  // The mirror monitor task on the backup (HSLIB), then nothing is missing.
  await result(b, 'HSLIB', `${CHECK('##class(HS.Util.Mirror.Task).Schedule("HSSYS")')}\n${CHECK('##class(HS.HC.SystemConfig.API).ScheduleTask("HSSYS","HS.Util.Mirror.Task","HSSYS")')}\nwrite !,"RB-RESULT {}",!`);
  expect(JSON.parse(readFileSync(path.join(b.home, 'instance.json'), 'utf8')).tasks).toEqual([expect.objectContaining({ taskClass: 'HS.Util.Mirror.Task', namespace: 'HSSYS' })]);
  expect(await result(b, '%SYS', MISSING)).toEqual({ missing: '' });
  expect(await result(b, '%SYS', 'set rs=##class(%ResultSet).%New("SYS.Mirror:MirroredDatabaseList") do rs.Execute() set n="" while rs.Next() { set n=n_rs.Get("Name") } write !,"RB-RESULT {""list"":""",n,"""}",!'))
    .toEqual({ list: 'HSSYS' });
});

test('faults: dismount in use, corrupted copy, catch-up failing once, wrong owner', async () => {
  const { a, b, staging } = pair({ owner: { uid: 51773, gid: 51773 } });
  await start(a, b);
  expect(statSync(`${a.hssys}IRIS.DAT`).uid).toBe(51773);
  setFaults(a.home, { dismountInUse: { HSSYS: 1 }, corruptCopy: 1 });
  setFaults(b.home, { catchupFails: 1 });
  const dismount = `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).DismountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`;
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  expect(await result(a, '%SYS', dismount).catch((e: Error) => e.message)).toMatch(/database is in use/);
  await result(a, '%SYS', dismount);

  // The knob damages the next %File.CopyFile of an IRIS.DAT: checksums differ, and a backup refuses to mount it.
  const copy = `${HSSYS_DIR}\nwrite !,"RB-RESULT {""copied"":",##class(%File).CopyFile(dir_"IRIS.DAT","${staging}"),"}",!`;
  expect(await result(a, '%SYS', copy)).toEqual({ copied: 1 });
  expect(md5(staging)).not.toBe(md5(`${a.hssys}IRIS.DAT`));
  await result(b, '%SYS', dismount);
  await sh(`cp -p ${staging} ${b.hssys}IRIS.DAT`);
  const mountB = `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).MountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`;
  expect(await result(b, '%SYS', mountB).catch((e: Error) => e.message)).toMatch(/corrupt \(block checksum mismatch\)/);
  expect(await result(a, '%SYS', copy)).toEqual({ copied: 1 });
  expect(md5(staging)).toBe(md5(`${a.hssys}IRIS.DAT`));

  // A copy that lost its owner (cp without -p as root) cannot be opened by the instance.
  await sh(`cp ${staging} ${b.hssys}IRIS.DAT.new && mv ${b.hssys}IRIS.DAT.new ${b.hssys}IRIS.DAT`);
  expect(await result(b, '%SYS', mountB).catch((e: Error) => e.message)).toMatch(/permission denied \(owner uid 0/);
  chownSync(`${b.hssys}IRIS.DAT`, 51773, 51773);
  await result(b, '%SYS', mountB);
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Database).MountDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);

  // Catch-up fails once (errsfns names the SFN), then succeeds.
  const catchup = `${HSSYS_DIR}\nset sc=##class(SYS.Mirror).CatchupDB($lb(+$zu(49,dir)),,.errsfns)\nwrite !,"RB-RESULT {""ok"":",$SYSTEM.Status.IsOK(sc),",""failed"":""",$lg(errsfns,1),"""}",!`;
  await result(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).ActivateMirroredDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  expect(await result(b, '%SYS', catchup)).toEqual({ ok: 0, failed: '2' });
  expect(await result(b, '%SYS', `${HSSYS_DIR}\n${DB_FLAGS('dir')}`)).toMatchObject({ catchup: 1 });
  expect(await result(b, '%SYS', catchup)).toEqual({ ok: 1, failed: '' });
  expect(await result(b, '%SYS', `${HSSYS_DIR}\n${DB_FLAGS('dir')}`)).toMatchObject({ actReq: 0, catchup: 0, active: 1 });
});

test('a member that is down, and roles swapped', async () => {
  const { a, b } = pair();
  await start(a, b);
  const roles = 'set sc=##class(SYS.Mirror).GetFailoverMemberStatus(.this,.other) write !,"RB-RESULT {""this"":""",$lg(this,3),""",""other"":""",$lg(other,3),""",""otherStatus"":""",$lg(other,4),"""}",!';

  swapRoles(a.home);
  expect(await result(a, '%SYS', roles)).toEqual({ this: 'Backup', other: 'Primary', otherStatus: 'Active' });
  expect((await iris(a, ['list'])).stdout).toMatch(/Status = Backup/);
  expect(await mirrorStatus(a)).toEqual({ status: 503, body: 'FAILED' });
  expect(await mirrorStatus(b)).toEqual({ status: 200, body: 'SUCCESS' });

  crash(a.home);
  expect(await mirrorStatus(a)).toBe('no answer');
  const down = await session(a, '%SYS', 'write 1');
  expect(down.code).toBe(1);
  expect(down.stderr).toMatch(/down/);
  expect((await iris(a, ['list'])).stdout).toMatch(/status: +down/);
  expect(await result(b, '%SYS', roles)).toEqual({ this: 'Primary', other: '', otherStatus: 'Down' });
});

test('failover on a graceful stop: the backup becomes primary; mirror_status.cxw answers 200 / 503 / nothing', async () => {
  const { a, b, staging } = pair();
  await start(a, b);
  await mirrorHssys(a, b, staging);
  expect(await mirrorStatus(a)).toEqual({ status: 200, body: 'SUCCESS' });
  expect(await mirrorStatus(b)).toEqual({ status: 503, body: 'FAILED' });

  expect((await iris(a, ['stop', 'IRIS'])).code).toBe(1); // only the non-interactive form
  expect((await iris(a, ['stop', 'IRIS', 'quietly'])).code).toBe(0);
  expect(await mirrorStatus(a)).toBe('no answer');
  expect(await mirrorStatus(b)).toEqual({ status: 200, body: 'SUCCESS' });
  expect((await iris(b, ['list'])).stdout).toMatch(/Status = Primary/);
  // The new primary writes HSSYS; the old primary comes back as backup and catches up.
  await session(b, '%SYS', `set ${NETWORK_HOST}="after-failover"`);
  await start(a);
  expect((await iris(a, ['list'])).stdout).toMatch(/Status = Backup/);
  expect(await mirrorStatus(a)).toEqual({ status: 503, body: 'FAILED' });
  expect(await result(a, '%SYS', `${HSSYS_DIR}\n${DB_FLAGS('dir', `,o.%Set("host",${NETWORK_HOST})`)}`))
    .toEqual({ mounted: 1, mirrored: 1, actReq: 0, catchup: 0, download: 0, active: 1, readOnly: 1, host: 'after-failover' });
});

test('a Foundation namespace installed with Mirror=1 on the primary appears, mirrored and caught up, on the backup', async () => {
  const { a, b, staging } = pair();
  await start(a, b);
  const install = 'set vars("Mirror")=1\nset sc=##class(HS.Util.Installer.Foundation).Install("FOO",.vars) write !,"RB-RESULT {""status"":""",$SYSTEM.Status.GetErrorText(sc),"""}",!';
  expect((await result(a, 'HSLIB', install)).status).toMatch(/HSSYS must be mirrored/);
  await mirrorHssys(a, b, staging);
  await result(b, 'HSLIB', `${CHECK('##class(HS.Util.Mirror.Task).Schedule("HSSYS")')}\nwrite !,"RB-RESULT {}",!`);
  expect((await result(b, 'HSLIB', install)).status).toMatch(/only allowed on the primary/);
  expect((await result(a, 'HSLIB', install)).status).toMatch(/HS_Services is disabled/);
  await result(a, '%SYS', 'set p("Enabled")=1,p("Password")="pw"\nwrite !,"RB-RESULT {""ok"":",##class(Security.Users).Modify("HS_Services",.p),"}",!');
  expect(await result(a, 'HSLIB', install)).toEqual({ status: '' });
  // Auto-start belongs to the production's own namespace: from HSLIB the class does not exist.
  expect((await result(a, 'HSLIB', 'set sc=##class(Ens.Director).SetAutoStart("FOOPKG.FoundationProduction",1) write !,"RB-RESULT {""status"":""",$SYSTEM.Status.GetErrorText(sc),"""}",!')).status).toMatch(/ERROR #5351/);
  await result(a, 'HSLIB', `set $namespace="FOO"\n${CHECK('##class(Ens.Director).SetAutoStart("FOOPKG.FoundationProduction",1)')}\n${CHECK('##class(HS.Director).StartAll()')}\nwrite !,"RB-RESULT {}",!`);
  expect(JSON.parse(readFileSync(path.join(a.home, 'instance.json'), 'utf8')).productions.FOO).toEqual({ autoStart: 'FOOPKG.FoundationProduction', running: true });

  expect(await result(b, '%SYS', 'write !,"RB-RESULT {""ns"":",##class(%SYS.Namespace).Exists("FOO"),",""cfg"":",##class(Config.Namespaces).Exists("FOO"),"}",!')).toEqual({ ns: 1, cfg: 1 });
  expect(await result(b, '%SYS', `set dir=$piece(##class(Config.Databases).DatabaseByName("FOO"),"^",3)\n${DB_FLAGS('dir')}`))
    .toEqual({ mounted: 1, mirrored: 1, actReq: 0, catchup: 0, download: 0, active: 1, readOnly: 1 });
  expect(await result(b, '%SYS', MISSING)).toEqual({ missing: '' });
  expect(await result(a, 'HSLIB', install)).toEqual({ status: '' }); // already there: nothing changes
});

test('a single instance outside any mirror: no mirror, every mirror call refused', async () => {
  const root = tmp();
  const h: Host = { name: 'a', home: path.join(root, 'solo'), mgr: path.join(root, 'mgr'), hssys: `${path.join(root, 'mgr', 'hssys')}/` };
  createInstance({ home: h.home, mgrDir: h.mgr });
  transact(h.home, startInstance);
  expect(await result(h, '%SYS', `write !,"RB-RESULT {""member"":",$SYSTEM.Mirror.IsMember(),",""name"":""",$SYSTEM.Mirror.MirrorName(),"""}",!`)).toEqual({ member: 0, name: '' });
  expect(results(await session(h, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}`))[0].error).toMatch(/not a member of a mirror/);
});

test('the ObjectScript subset: left-to-right operators, blocks, loops, postconditions, lists, arrays, namespaces', async () => {
  const root = tmp();
  const h: Host = { name: 'a', home: path.join(root, 'solo'), mgr: path.join(root, 'mgr'), hssys: '' };
  createInstance({ home: h.home, mgrDir: h.mgr });
  transact(h.home, startInstance);
  const r = await session(h, 'USER', [
    'set a=1,b=2,o=##class(%DynamicObject).%New()',
    'do o.%Set("ltr",a=1&b=2),o.%Set("paren",(a=1)&(b=2)),o.%Set("arith",1+2*3)',
    'if a=2 { do o.%Set("branch","two") } elseif a=1 { do o.%Set("branch","one") } else { do o.%Set("branch","other") }',
    'set i=0,s="" while 1 { set i=i+1 quit:i>3  set s=s_i } do o.%Set("loop",s)',
    'set l=$lb("x","y",3) do o.%Set("lg",$lg(l,2)_$lg(l,5,"d")_$ll(l))',
    'set p("a")=1 do o.%Set("data",$d(p)_$d(p("a"))_$d(p("b"))_$g(p("b"),"dflt"))',
    'kill p do o.%Set("killed",$d(p)) do:a=1 o.%Set("post",1) do:a=2 o.%Set("post",2)',
    'zn "HSLIB" do o.%Set("ns",$namespace),o.%Set("bool",1,"boolean"),o.%Set("str","1")',
    'write !,"RB-RESULT ",o.%ToJSON(),!',
    'zn "NOPE"',
    'write $namespace,!',
  ].join('\n'));
  expect(results(r)).toEqual([{ ltr: 0, paren: 1, arith: 9, branch: 'one', loop: '123', lg: 'yd3', data: '1010dflt', killed: 0, post: 1, ns: 'HSLIB', bool: true, str: '1' }]);
  expect(r.stdout).toContain('<NAMESPACE> *NOPE\nHSLIB>HSLIB\n');
});

test('a lab sets the pair up with the iris-sim command', async () => {
  const root = tmp();
  const cli = (args: string[]) => new Promise<number>((resolve) => execFile(path.join(__dirname, 'sims/iris/bin/iris-sim'), args, (e) => resolve(e ? Number(e.code) : 0)));
  const [a, b]: Host[] = (['a', 'b'] as const).map((name) => ({ name, home: path.join(root, name), mgr: path.join(root, `${name}-mgr`), hssys: '' }));
  for (const [h, peer, role] of [[a, b, 'Primary'], [b, a, 'Backup']] as const) {
    expect(await cli(['create', '--home', h.home, '--instance', 'IRIS', '--node', `node-${h.name}`, '--mgr-dir', h.mgr])).toBe(0);
    expect(await cli(['join-mirror', '--home', h.home, '--mirror', 'HEALTHCONNECT', '--role', role, '--member', `M_${h.name}`, '--address', h.name,
      '--peer-member', `M_${peer.name}`, '--peer-address', peer.name, '--peer-home', peer.home])).toBe(0);
  }
  expect(await cli(['join-mirror', '--home', a.home, '--role', 'Primary'])).toBe(2);
  await start(a, b);
  expect((await iris(b, ['list'])).stdout).toMatch(/Status = Backup/);
  expect(await cli(['fault', 'set', '--home', a.home, '{"dismountInUse":{"HSSYS":1}}'])).toBe(0);
  expect(await result(a, '%SYS', `${HSSYS_DIR}\nset sc=##class(SYS.Database).DismountDatabase(dir) write !,"RB-RESULT {""e"":""",$SYSTEM.Status.GetErrorText(sc),"""}",!`))
    .toEqual({ e: expect.stringMatching(/database is in use/) });
  expect(await cli(['fault', 'down', '--home', a.home])).toBe(0);
  expect(await mirrorStatus(a)).toBe('no answer');
  expect((await iris(b, ['list'])).stdout).toMatch(/Status = Backup/); // a crash is not a graceful stop: no failover
});
