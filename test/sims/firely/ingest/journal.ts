/**
 * The recovery journal: where the tool has got to in the source, saved after each batch is fully
 * written, never before. A crash mid-batch therefore resumes at the start of that batch, and the
 * items of it already written are recognised on the target and skipped, not written twice.
 *
 * The directory must be empty for a fresh migration; a journal in it makes the tool resume. A
 * journal of another source or target, or a directory holding anything else, is refused: wiping
 * the target means deleting the journal too.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../faults';

export const JOURNAL_FILE = 'fsi-journal.json';

export interface Journal {
  format: 'fsi-sim-journal/1';
  /** host/database/collection of each side, without credentials. */
  source: string;
  target: string;
  /** The sequence number of the last source entry fully processed. */
  lastSeq: number;
  processed: number;
  batches: number;
  startedAt: string;
  updatedAt: string;
}

export class JournalError extends Error {}

/** host:port/database/collection of a connection string, for identifying a journal's source and target. */
export function identify(url: string, collection: string): string {
  const m = /^mongodb(?:\+srv)?:\/\/(?:[^@/]*@)?([^/?]+)\/([^?]*)/.exec(url);
  return m ? `${m[1]}/${m[2]}/${collection}` : `${url.replace(/\/\/[^@/]*@/, '//')}/${collection}`;
}

/** Opens the journal directory: the journal to resume from, or a fresh one (written at the first batch). */
export function openJournal(dir: string, source: string, target: string): { journal: Journal; resumed: boolean } {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, JOURNAL_FILE);
  const others = readdirSync(dir).filter((f) => f !== JOURNAL_FILE);
  if (others.length) {
    throw new JournalError(`The recovery journal directory '${dir}' holds files that are not a journal of this tool (${others.slice(0, 3).join(', ')}); give an empty directory.`);
  }
  if (!existsSync(file)) {
    const now = new Date().toISOString();
    return { journal: { format: 'fsi-sim-journal/1', source, target, lastSeq: 0, processed: 0, batches: 0, startedAt: now, updatedAt: now }, resumed: false };
  }
  const journal = JSON.parse(readFileSync(file, 'utf8')) as Journal;
  if (journal.format !== 'fsi-sim-journal/1') throw new JournalError(`'${file}' is not a recovery journal of this tool.`);
  if (journal.source !== source || journal.target !== target) {
    throw new JournalError(`The recovery journal in '${dir}' belongs to the migration from ${journal.source} to ${journal.target}, not from ${source} to ${target}; remove it to start a fresh migration.`);
  }
  return { journal, resumed: true };
}

export function saveJournal(dir: string, journal: Journal): void {
  journal.updatedAt = new Date().toISOString();
  writeJsonAtomic(path.join(dir, JOURNAL_FILE), journal);
}
