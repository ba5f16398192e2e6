/**
 * A fake target system for the kit's tests: every change is a line appended to a journal file,
 * so a test can read exactly what was done, and how many times.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { Context, sleep } from '@temporalio/activity';

export interface JournalLine { action: string; activityId: string; attempt: number; pid: number }

export function readJournal(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function workFor(ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    Context.current().heartbeat();
    await sleep(Math.min(250, end - Date.now()));
  }
}

export function createFakeTargetActivities() {
  return {
    async change(req: { journal: string; action: string; dryRun?: boolean; workMs?: number }): Promise<{ changed: boolean; actions: string[] }> {
      if (req.dryRun) return { changed: false, actions: [`would ${req.action}`] };
      if (req.workMs) await workFor(req.workMs);
      const { activityId, attempt } = Context.current().info;
      appendFileSync(req.journal, `${JSON.stringify({ action: req.action, activityId, attempt, pid: process.pid })}\n`);
      return { changed: true, actions: [req.action] };
    },
    async check(req: { journal: string }): Promise<{ ok: true }> {
      // A read-only preflight: it runs for real in dry-run too, and writes nothing.
      void req;
      return { ok: true };
    },
    async breakDown(req: { what: string }): Promise<never> {
      throw ApplicationFailure.nonRetryable(`${req.what} failed (test failure)`, 'TestFailure');
    },
    async echo(message: string): Promise<string> {
      return `echo: ${message}`;
    },
  };
}
export type FakeTargetActivities = ReturnType<typeof createFakeTargetActivities>;
