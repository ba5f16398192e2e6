/**
 * A test file's labs (PostgreSQL by default, or any lab `start` makes): one worker serves every lab
 * the file starts (the labs share one secrets directory), and everything is stopped after the file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { startWorker, testClient, uniqueQueue, type Proc } from '../support/processes';
import { startLab, type Lab } from './hosts';

export function useLabs<L extends { stop(): Promise<void> } = Lab>(prefix: string, start: (secretsDir: string) => Promise<L> = (secretsDir) => startLab({ secretsDir }) as unknown as Promise<L>) {
  const queue = uniqueQueue(prefix);
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-secrets-`));
  const workerEnv = { RUNBOOKS_SECRETS_DIR: secretsDir };
  const labs: L[] = [];
  let client: Client | undefined;
  let worker: Proc | undefined;

  beforeAll(async () => {
    client = await testClient();
    worker = await startWorker(queue, workerEnv);
  }, 60_000);
  afterAll(async () => {
    await worker?.kill('SIGKILL');
    await client?.connection.close();
    for (const lab of labs) await lab.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  });

  return {
    queue,
    secretsDir,
    get client(): Client { return client!; },
    async newLab(): Promise<L> {
      const lab = await start(secretsDir);
      labs.push(lab);
      return lab;
    },
    /** SIGKILL of the worker, as a crash would do it; `startWorker` brings a new one. */
    killWorker: async () => { await worker?.kill('SIGKILL'); },
    startWorker: async (extra: Record<string, string> = {}) => { worker = await startWorker(queue, { ...workerEnv, ...extra }); },
    /** The worker process now serving the file's runs (to show it survived). */
    get worker(): Proc { return worker!; },
  };
}
