/**
 * Each migrateFirelyServer run has its own ingest job on the migration host, forgotten when the
 * run ends: a later run with the same workflow id (the operator corrected the input) starts its own
 * ingest tool with its own command line, never the previous run's.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { rejectSignal, type Progress } from '../contracts/messages';
import { ingestJobId } from '../contracts/firely/schema';
import { useLabs } from './lab/suite';
import { FIRELY_USER, startFirelyLab, type FirelyLab } from './lab/firely';
import { progressOf, waitForProgress } from './support/runs';

const suite = useLabs<FirelyLab>('firely-job', (secretsDir) => startFirelyLab({ secretsDir }));
const actions = (p: Progress) => p.steps.flatMap((s) => s.actions);
const ended = async (handle: WorkflowHandle) => {
  const error = await handle.result().then(() => undefined, (err: Error) => err);
  return { error, progress: await progressOf(handle) };
};
/** The fsi processes of this lab writing into `targetUri` ([n] keeps the shell asking out). */
const fsiWriting = (lab: FirelyLab, targetUri: string) => lab.migration.sh(`pgrep -u ${FIRELY_USER.name} -f -- '[n]ode .*ingest/fsi[.]ts .*--mongoConnectionstring ${targetUri} ' || true`)
  .stdout.trim().split('\n').filter(Boolean).length;
const jobs = (lab: FirelyLab) => lab.migration.sh('ls -A ~/.runbooks-jobs 2>/dev/null || true').stdout.trim();

test('a run rolled back, then a run with the same workflow id and a corrected target: the second starts its own ingest tool with its own command line', async () => {
  const lab = await suite.newLab();
  await lab.seed(50, 20);
  // The workflow id an operator reuses (a space and a slash in it: it used to share a job with "..._prod_a").
  const workflowId = `migrate ${suite.queue} prod/a`;
  const base = lab.migrationInput() as { newServer: Record<string, unknown>; ingest: Record<string, unknown> };
  const wrongTarget = lab.newDb.uri('vonkdata_typo');
  const rightTarget = lab.newDb.uri('vonkdata');

  // Run 1 copies into a database the new server does not read: it never catches up, fails, and rolls back.
  const run1 = await suite.client.workflow.start('migrateFirelyServer', { taskQueue: suite.queue, workflowId, args: [{
    ...base, newServer: { ...base.newServer, database: { connectionString: wrongTarget, collection: 'vonkentries' } }, ingest: { ...base.ingest, catchUpWithin: '15s' },
  }] });
  const first = await ended(run1);
  expect(first.error).toBeDefined();
  expect(first.progress.status).toBe('failed');
  expect(actions(first.progress).join('\n')).toMatch(/started the ingest tool on migration \(job [^)]+\): fsi .*--mongoConnectionstring \S*vonkdata_typo/);
  expect(first.progress.compensations).toEqual([expect.objectContaining({ title: 'Stop the ingest tool', state: 'done' })]);
  expect(fsiWriting(lab, wrongTarget)).toBe(0);
  // Its job is forgotten with the run.
  expect(jobs(lab)).toBe('');

  // Run 2, the same workflow id, the target corrected (and a fresh journal: run 1's journal is run 1's).
  const run2 = await suite.client.workflow.start('migrateFirelyServer', { taskQueue: suite.queue, workflowId, args: [{
    ...base, ingest: { ...base.ingest, journalDir: '/var/lib/firely-migration/journal2' },
  }] });
  const atGate = await waitForProgress(run2, 'the cutover gate of run 2', (p) => p.approvals.some((g) => g.gate === 'cutover' && g.state === 'open') || p.status !== 'running', 240_000);
  const started = actions(atGate).find((a) => a.startsWith('started the ingest tool'));
  expect(started).toMatch(new RegExp(`\\(job fsi-\\S+-${run2.firstExecutionRunId}\\): fsi .*--useRecoveryJournal /var/lib/firely-migration/journal2 .*--mongoConnectionstring ${rightTarget.replace(/[.?*+^$()[\]{}|\\]/g, '\\$&')} `));
  expect(atGate.approvals.find((g) => g.gate === 'cutover')?.state).toBe('open');
  expect(fsiWriting(lab, rightTarget)).toBe(1);
  expect(fsiWriting(lab, wrongTarget)).toBe(0);
  expect(jobs(lab)).toBe(ingestJobId(workflowId, run2.firstExecutionRunId));

  await run2.signal(rejectSignal, { gate: 'cutover', by: 'bob', reason: 'test over' });
  const second = await ended(run2);
  expect(second.error).toBeUndefined();
  expect(second.progress.status).toBe('rolled_back');
  expect(fsiWriting(lab, rightTarget)).toBe(0);
  expect(jobs(lab)).toBe('');
}, 600_000);

test('workflow ids that used to share a job get their own: the same id made safe, and ids alike in their first 150 characters', () => {
  const run = '0198c2a4-7e51-7b1c-9a3e-5f2d1c0b9a87';
  const other = '0198c2a4-7e51-7b1c-9a3e-5f2d1c0b9a88';
  expect(ingestJobId('firely prod/a', run)).not.toBe(ingestJobId('firely_prod_a', other));
  const long = 'x'.repeat(150);
  expect(ingestJobId(`${long}-a`, run)).not.toBe(ingestJobId(`${long}-b`, other));
  // The same run (a retry, a new worker) finds its own job again.
  expect(ingestJobId('firely prod/a', run)).toBe(ingestJobId('firely prod/a', run));
  expect(ingestJobId('firely prod/a', run)).toMatch(/^fsi-[A-Za-z0-9_.-]{1,110}$/);
});
