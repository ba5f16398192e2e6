/**
 * Small pieces that guard against hostile values, checked directly: a SCRAM verifier with an
 * absurd iteration count, libpq connection strings with quotes and spaces, IPv6 spellings in
 * pg_hba.conf, the approval-link expiry bound, what a reviewer may do to an org-unit draft,
 * which changes need approval, and when the Firely ingest tool's log says it keeps up.
 */
import { linkExpiry, maxLinkTtlSeconds, signApproval, verifyApproval } from '../activities/lib/approval-token';
import { scramMatches, scramVerifier } from '../activities/lib/scram';
import { conninfo } from '../activities/postgres/hosts';
import { canonicalAddress, hbaLine } from '../activities/postgres/primary';
import { checkDraft, draftHash, needsApproval } from '../activities/dhis2/approval';
import { loadSyncConfig } from '../activities/dhis2/config';
import { IngestLogReader } from '../activities/firely/ingest';

test('a SCRAM verifier from the server with a huge iteration count is not computed (it would take hours): it simply does not match', () => {
  const good = scramVerifier('s3cret');
  expect(scramMatches(good, 's3cret')).toBe(true);
  expect(scramMatches(good, 'other')).toBe(false);
  const hostile = good.replace(/^SCRAM-SHA-256\$4096:/, 'SCRAM-SHA-256$2000000000:');
  expect(scramMatches(hostile, 's3cret')).toBe(false);
  expect(scramMatches('SCRAM-SHA-256$0:AAAA$AAAA:AAAA', 's3cret')).toBe(false);
});

test('connection strings quote every value: a path with a space or a quote cannot add a parameter', () => {
  expect(conninfo({ host: '10.0.0.5', passfile: "/var/lib/it's here/pgpass", application_name: 'lab-b' }))
    .toBe("host='10.0.0.5' passfile='/var/lib/it\\'s here/pgpass' application_name='lab-b'");
  expect(conninfo({ passfile: "/x' sslmode='disable" })).toBe("passfile='/x\\' sslmode=\\'disable'");
  expect(conninfo({ passfile: 'C:\\odd\\path' })).toBe("passfile='C:\\\\odd\\\\path'");
});

test('pg_hba lines name canonical addresses with the right mask', () => {
  expect(canonicalAddress('2001:0DB8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
  expect(hbaLine('replication', 'replicator', canonicalAddress('2001:DB8::1'))).toBe('host replication replicator 2001:db8::1/128 scram-sha-256');
  expect(hbaLine('replication', 'replicator', '10.0.0.7')).toBe('host replication replicator 10.0.0.7/32 scram-sha-256');
});

test('approval links live 7 days at most and never past the gate deadline; the expiry is checked', () => {
  const now = 1_800_000_000;
  expect(linkExpiry(30 * 86_400, undefined, now)).toBe(now + maxLinkTtlSeconds);
  expect(linkExpiry(3600, now + 600, now)).toBe(now + 600);
  const secret = 'unit-test-secret-unit-test-secret-0000';
  const token = signApproval({ workflowId: 'w', runId: 'r', gate: 'g', nonce: 'n', approver: 'bob', exp: now + 60 }, secret);
  expect(verifyApproval(token, secret, now)).toMatchObject({ ok: true, claim: { runId: 'r', nonce: 'n' } });
  // An expired link is still recognised as ours, so its page can say what it was for.
  expect(verifyApproval(token, secret, now + 61)).toMatchObject({ ok: false, reason: 'the link has expired', expired: { approver: 'bob', gate: 'g', exp: now + 60 } });
});

test('an edited draft must stay the same operation on the same resource; key order does not make an edit', () => {
  const draft = { operation: 'update', organisationUnits: [{ id: 'Abcdefghij1', name: 'Edited', code: 'X' }] };
  expect(checkDraft(draft, 'organisationUnit', 'Abcdefghij1', 'update')).toMatchObject({ ok: true, resource: { name: 'Edited' } });
  expect(checkDraft({ ...draft, organisationUnits: [{ id: 'Zzzzzzzzzz1' }] }, 'organisationUnit', 'Abcdefghij1', 'update'))
    .toEqual({ ok: false, reason: expect.stringContaining('changes the resource id') });
  expect(checkDraft({ ...draft, operation: 'delete' }, 'organisationUnit', 'Abcdefghij1', 'update')).toEqual({ ok: false, reason: expect.stringContaining('"operation" must stay "update"') });
  expect(checkDraft({ ...draft, organisationUnits: [draft.organisationUnits[0], draft.organisationUnits[0]] }, 'organisationUnit', 'Abcdefghij1', 'update').ok).toBe(false);
  expect(checkDraft('not an object', 'organisationUnit', 'Abcdefghij1', 'update').ok).toBe(false);
  expect(checkDraft([draft], 'organisationUnit', 'Abcdefghij1', 'update').ok).toBe(false);
  // The dataStore keeps JSONB: the same draft read back with its keys reordered is not an edit.
  expect(draftHash({ organisationUnits: [{ name: 'Edited', code: 'X', id: 'Abcdefghij1' }], operation: 'update' })).toBe(draftHash(draft));
});

test('the example sync configuration loads; a create or delete of a gated type needs approval, an update only when it touches a gated field', () => {
  const config = loadSyncConfig('examples/orgunit-sync.config.json');
  const hmis = config.targets.find((t) => t.name === 'district-hmis')!;
  expect(hmis.approval).toMatchObject({ approvers: ['amina.k', 'joseph.b'], quorum: 1, fourEyes: true, onTimeout: 'reject' });
  expect(needsApproval(hmis, 'organisationUnit', 'update', [{ field: 'name', old: 'a', new: 'b' }])).toBeUndefined();
  expect(needsApproval(hmis, 'organisationUnit', 'update', [{ field: 'name' }, { field: 'shortName' }])).toEqual(['shortName']);
  expect(needsApproval(hmis, 'organisationUnit', 'create', [])).toEqual(['code', 'shortName']);
  expect(needsApproval(hmis, 'organisationUnit', 'delete', [])).toEqual(['code', 'shortName']);
  expect(needsApproval(hmis, 'organisationUnitGroup', 'create', [{ field: 'code' }])).toBeUndefined();
});

test('the ingest keeps up when its polls reach the end ("No new items found", or a batch smaller than the batch size) so many times in a row; a full batch starts the count again', () => {
  const idle = '[10:00:01 INF] No new items found in the database. Waiting for 00:00:05 before retrying...';
  let total = 1000;
  const batch = (n: number, k: number) => `[10:00:00 INF] Batch ${k}: ${n} items read, ${n} saved as current, 0 saved as historical, 0 skipped, 0 already present, 0 errors. ${(total += n)} items processed in total.`;
  const reader = new IngestLogReader(500);
  // What the log said before following began gives progress only.
  reader.history([batch(3, 1), idle, batch(500, 2)]);
  expect(reader.status).toMatchObject({ batches: 2, processed: 1503, atEndInARow: 0 });
  expect(reader.idleSinceStart).toBe(0);
  // A backlog: full batches are not at the end.
  expect(reader.feed([batch(500, 3), batch(500, 4)])).toBe(false);
  expect(reader.status.atEndInARow).toBe(0);
  // The last of the backlog, then a steady load: each poll finds the last moment's writes, never an idle line.
  expect(reader.feed([batch(120, 5)])).toBe(true);
  reader.feed([batch(3, 6), batch(4, 7)]);
  expect(reader.status).toMatchObject({ atEndInARow: 3, batches: 7, processed: 2630 });
  // Idle lines are at the end too.
  reader.feed([idle, batch(1, 8), idle]);
  expect(reader.status.atEndInARow).toBe(6);
  expect(reader.idleSinceStart).toBe(2);
  // A burst that fills a batch starts the count again.
  reader.feed([batch(500, 9), batch(2, 10)]);
  expect(reader.status.atEndInARow).toBe(1);
  // A batch line without "items read" counts by the growth of the total.
  reader.feed([`[10:00:03 INF] Batch 11: done. ${(total += 600)} items processed in total.`]);
  expect(reader.status.atEndInARow).toBe(0);
  reader.feed([`[10:00:04 INF] Batch 12: done. ${(total += 7)} items processed in total.`, '[10:00:05 ERR] Resource Patient/x could not be saved']);
  expect(reader.status).toMatchObject({ atEndInARow: 1, errors: 1 });
  // Started again with its journal: the run of polls starts afresh.
  reader.restart();
  expect(reader.status.atEndInARow).toBe(0);
  expect(reader.feed(['[10:00:06 INF] Recovery journal found: resuming'])).toBe(false);
  reader.feed([idle]);
  expect(reader.status.atEndInARow).toBe(1);
});
