/**
 * The IRIS simulator against what the sources say IRIS does (test/sims/iris/README.md, "Sources"):
 * each test names the source whose shapes it checks. The runbook tests are elsewhere
 * (iris-mirror, iris-namespace-switch); these check the simulator alone.
 */
import { crash, setArbiter, setFaults } from './sims/iris/admin';
import { CHECK, HSSYS_DIR, MISSING, cleanUpSims, mirrorHssys, pair, result, results, session, start } from './sims/iris/testing';

cleanUpSims();

const LIST = 'set rs=##class(%ResultSet).%New("SYS.Mirror:MirroredDatabaseList") do rs.Execute() set n="" while rs.Next() { set n=n_rs.Get("Name")_"|"_rs.Get("Directory")_"," } write !,"RB-RESULT {""list"":""",n,"""}",!';

// Live pair (IRIS 2026.1), the write-up in the sources: MissingMirroredDatabases on the backup
// answers `:mirror:<MIRROR>:<DB>`, and nothing once the backup has its copy; MirroredDatabaseList
// gives the bare name and the directory.
test('SYS.Mirror queries: MissingMirroredDatabases names :mirror:<MIRROR>:<DB>, MirroredDatabaseList the bare name and directory', async () => {
  const { a, b } = pair();
  await start(a, b);
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  expect(await result(b, '%SYS', MISSING)).toEqual({ missing: ':mirror:HEALTHCONNECT:HSSYS,' });
  expect(await result(a, '%SYS', LIST)).toEqual({ list: `HSSYS|${a.hssys},` });
  // On the primary nothing is missing: the query speaks for a backup.
  expect(await result(a, '%SYS', MISSING)).toEqual({ missing: '' });


  const done = pair();
  await start(done.a, done.b);
  await mirrorHssys(done.a, done.b, done.staging);
  expect(await result(done.b, '%SYS', MISSING)).toEqual({ missing: '' });
  expect(await result(done.b, '%SYS', LIST)).toEqual({ list: `HSSYS|${done.b.hssys},` });
});

// The shared reference notes report the list's first column as `:mirror:<MIRROR>:<DB>` too; the
// sources disagree, so the simulator can answer that way and the runbooks must read both.
test('the reported other form: MirroredDatabaseList naming :mirror:<MIRROR>:<DB> when the knob asks for it', async () => {
  const { a, b } = pair();
  await start(a, b);
  await result(a, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}\nwrite !,"RB-RESULT {}",!`);
  setFaults(a.home, { prefixedMirroredDatabaseList: true });
  expect(await result(a, '%SYS', LIST)).toEqual({ list: `:mirror:HEALTHCONNECT:HSSYS|${a.hssys},` });
});

// Class reference, SYS.Mirror: "This class can only be used by programs running in %SYS";
// AddDatabase "Can only be run on the primary mirror member".
test('SYS.Mirror only in %SYS; AddDatabase refused on the backup', async () => {
  const { a, b } = pair();
  await start(a, b);
  expect((await session(a, 'USER', 'set rs=##class(%ResultSet).%New("SYS.Mirror:MirroredDatabaseList")')).stdout).toMatch(/<CLASS DOES NOT EXIST>/);
  expect(results(await session(b, '%SYS', `${HSSYS_DIR}\n${CHECK('##class(SYS.Mirror).AddDatabase(dir)')}`))[0].error).toMatch(/ERROR #\d+: .*primary/i);
});

const ARBITER = 'set sc=##class(Config.Mirrors).Get("HEALTHCONNECT",.p) write !,"RB-RESULT {""sc"":",+sc,",""arbiter"":""",$get(p("ArbiterNode")),"""}",!';
const READY = 'set r=##class(SYS.Mirror).IsFailoverReady() write !,"RB-RESULT {""ready"":",$listget(r,1),",""reason"":""",$listget(r,2),"""}",!';

// Class reference Config.Mirrors (IRIS 2024.1): Get(Name,.Properties) fills the [Mirrors] section;
// ArbiterNode is "An address for the arbiter node used by this mirror", 'address|port', default ""
// (SYS.Mirror.CreateNewMirrorSet, MirrorInfo("ArbiterNode")).
test('Config.Mirrors.Get names the arbiter as address|port, or "" when none is configured; another mirror is an error', async () => {
  const { a, b } = pair();
  await start(a, b);
  expect(await result(a, '%SYS', ARBITER)).toEqual({ sc: 1, arbiter: '' });
  setArbiter(a.home, 'arbiter.example|2188');
  expect(await result(b, '%SYS', ARBITER)).toEqual({ sc: 1, arbiter: 'arbiter.example|2188' });
  const other = await session(a, '%SYS', 'set sc=##class(Config.Mirrors).Get("OTHER",.p) write !,"SC=",+sc,!');
  expect(other.stdout).toContain('SC=0');
  expect((await session(a, 'USER', ARBITER)).stdout).toMatch(/<CLASS DOES NOT EXIST>/);
});

// Class reference SYS.Mirror.IsFailoverReady (IRIS 2024.1): $LB(1) when "the backup should take over
// if the primary fails": the mirrored databases active on the backup and, "if the arbiter is
// configured the mirror must be in arbiter controlled mode" (HA Guide: both failover members connected
// to the arbiter, the backup active); else $LB(0,<reason text>). Runs on either failover member.
test('SYS.Mirror.IsFailoverReady: $lb(1) on a healthy pair with or without an arbiter, $lb(0,reason) when a member lost the arbiter or the peer is down', async () => {
  const { a, b, staging } = pair();
  await start(a, b);
  await mirrorHssys(a, b, staging);
  expect(await result(a, '%SYS', READY)).toEqual({ ready: 1, reason: '' });
  setArbiter(a.home, 'arbiter.example|2188');
  for (const h of [a, b]) expect(await result(h, '%SYS', READY)).toEqual({ ready: 1, reason: '' });
  // The backup lost its arbiter connection: no longer arbiter controlled, on either member's view.
  setArbiter(a.home, 'arbiter.example|2188', true, false);
  for (const h of [a, b]) expect(await result(h, '%SYS', READY)).toEqual({ ready: 0, reason: expect.stringMatching(/arbiter controlled mode: HEALTHCONNECT_B not connected/) });
  setArbiter(a.home, 'arbiter.example|2188');
  crash(b.home);
  expect(await result(a, '%SYS', READY)).toEqual({ ready: 0, reason: expect.stringMatching(/HEALTHCONNECT_B is not running/) });
});
