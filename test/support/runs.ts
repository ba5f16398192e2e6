/** Helpers to drive runbooks from tests as an operator would: start, read progress, wait for a gate. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { approveSignal, progressQuery, type Progress } from '../../contracts/messages';
import type { GatedInput } from '../workflows/schemas';
import { eventually } from './processes';

export const tempDir = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), prefix));

let seq = 0;
export async function startGated(client: Client, queue: string, input: Partial<Omit<GatedInput, 'gate'>> & { gate?: Partial<GatedInput['gate']> }, id?: string) {
  const journal = input.journal ?? path.join(tempDir('gated-'), 'journal.log');
  const workflowId = id ?? `gated-${queue}-${++seq}`;
  const handle = await client.workflow.start('gatedRunbook', { taskQueue: queue, workflowId, args: [{ ...input, journal }] });
  return { handle, journal, workflowId };
}

export const progressOf = (handle: WorkflowHandle) => handle.query(progressQuery);

export async function waitForProgress(handle: WorkflowHandle, what: string, ok: (p: Progress) => boolean, timeoutMs = 30_000): Promise<Progress> {
  let last: Progress | undefined;
  try {
    return await eventually(async () => {
      last = await progressOf(handle);
      return ok(last) ? last : undefined;
    }, what, timeoutMs);
  } catch (err) {
    // Say where the run is, so a failure here explains itself.
    const where = last ? `${last.status} at ${last.currentStep}: ${last.error ?? last.steps.find((s) => s.error)?.error ?? ''}` : 'no progress';
    // With the last heartbeat's details: a step that follows something says how far it got.
    const details = (payloads?: { data?: Uint8Array | null }[] | null) => (payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString('utf8').slice(0, 500)).join(' ');
    const pending = (await handle.describe().catch(() => undefined))?.raw.pendingActivities
      ?.map((a) => `${a.activityType?.name} attempt ${a.attempt}: ${a.lastFailure?.message ?? ''} ${details(a.heartbeatDetails?.payloads)}`.trim());
    throw new Error(`${(err as Error).message}; the run is ${where}; pending activities: ${JSON.stringify(pending ?? [])}`);
  }
}

export const waitForGate = (handle: WorkflowHandle, gate: string) =>
  waitForProgress(handle, `gate ${gate} to open`, (p) => p.approvals.some((g) => g.gate === gate && g.state === 'open'));

/**
 * How many decisions the run's history holds (signals, and decideGate updates the run accepted; a
 * refused update leaves no event): proof that a refused link wrote nothing.
 */
export async function decisionCount(handle: WorkflowHandle): Promise<number> {
  const history = await handle.fetchHistory();
  return (history.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes
    || e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'decideGate').length;
}

/** The run's current details as the Temporal UI shows them. */
export async function currentDetails(handle: WorkflowHandle): Promise<string> {
  const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
  return metadata.currentDetails;
}

/** Approves every gate as it opens (as the on-call engineer would), until the run ends; resolves with its result. */
export async function approveUntilDone(handle: WorkflowHandle, by = 'on-call'): Promise<unknown> {
  let done = false;
  const approver = (async () => {
    while (!done) {
      const p = await handle.query(progressQuery).catch(() => undefined);
      for (const g of p?.approvals.filter((a) => a.state === 'open') ?? []) await handle.signal(approveSignal, { gate: g.gate, by }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  try {
    return await handle.result();
  } finally {
    done = true;
    await approver;
  }
}

/** The run's whole history with every payload decoded, as anyone with read access can see it. */
export async function readableHistory(handle: WorkflowHandle): Promise<string> {
  const history = await handle.fetchHistory();
  // Payloads come as base64 (or bytes): decode every one, as the Web UI and `temporal workflow show` do.
  return JSON.stringify(history, (_k, v) => {
    if (v && typeof v === 'object' && 'metadata' in v && 'data' in v) {
      const bytes = typeof v.data === 'string' ? Buffer.from(v.data, 'base64') : Buffer.from(v.data as Uint8Array);
      return { metadata: v.metadata, data: bytes.toString('utf8') };
    }
    return v;
  });
}
