/**
 * The license check. A real Firely license is a signed JSON file; the simulator's has the same
 * role and only what it checks (see the README):
 *
 *   { "Licensee": "Example Hospital", "Expires": "2099-12-31", "Plugins": ["http://fire.ly/vonk/plugins/...", ...] }
 *
 * What needs which token (from the reference notes and the FSI documentation):
 *   any ingest                 bulk-data-import or bulk-data-import/unlimited
 *   --sourceType MongoDb       migration
 *   --useRecoveryJournal       bulk-data-import/unlimited
 *   more than 1000 per run     bulk-data-import/unlimited (Essentials stops at 1000 with a warning)
 */
import { existsSync, readFileSync } from 'node:fs';
import type { IngestOptions } from './options';

export const TOKENS = {
  bulkImport: 'http://fire.ly/vonk/plugins/bulk-data-import',
  unlimited: 'http://fire.ly/vonk/plugins/bulk-data-import/unlimited',
  migration: 'http://fire.ly/vonk/plugins/migration',
  /** The migration token as the procedure's early draft names it. A GUESS that FSI still accepts it (README). */
  migrationDraft: 'http://fire.ly/vonk/plugins/bulk-data-import/migration',
  sharding: 'http://fire.ly/vonk/plugins/repository/mongo-db/sharding',
} as const;

export const ESSENTIALS_LIMIT = 1000;

export interface SimLicense { Licensee: string; Expires: string; Plugins: string[] }

export class LicenseError extends Error {}

export function readLicense(file: string): SimLicense {
  if (!existsSync(file)) throw new LicenseError(`License file '${file}' was not found.`);
  let lic: SimLicense;
  try {
    lic = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LicenseError(`License file '${file}' is not a valid license: ${(e as Error).message}.`);
  }
  if (typeof lic?.Licensee !== 'string' || typeof lic.Expires !== 'string' || !Array.isArray(lic.Plugins)) {
    throw new LicenseError(`License file '${file}' is not a valid license: it needs Licensee, Expires and Plugins.`);
  }
  return lic;
}

/** Refuses a license that does not allow this run; returns the per-run resource cap (null = none). */
export function checkLicense(lic: SimLicense, opts: IngestOptions, now = new Date()): { perRunLimit: number | null } {
  const expires = new Date(lic.Expires);
  if (Number.isNaN(expires.getTime()) || expires < now) throw new LicenseError(`The license of ${lic.Licensee} expired on ${lic.Expires}.`);
  const has = (t: string) => lic.Plugins.includes(t);
  if (!has(TOKENS.bulkImport) && !has(TOKENS.unlimited)) {
    throw new LicenseError(`The license does not permit Firely Server Ingest: it contains neither ${TOKENS.bulkImport} nor ${TOKENS.unlimited}.`);
  }
  if (opts.sourceType === 'MongoDb' && !has(TOKENS.migration) && !has(TOKENS.migrationDraft)) {
    throw new LicenseError(`The license does not contain the token ${TOKENS.migration}, which a migration from a MongoDB source (--sourceType MongoDb) requires.`);
  }
  if (opts.journalDir !== undefined && !has(TOKENS.unlimited)) {
    throw new LicenseError(`The recovery journal (--useRecoveryJournal) requires the token ${TOKENS.unlimited}, which the license does not contain.`);
  }
  return { perRunLimit: has(TOKENS.unlimited) ? null : ESSENTIALS_LIMIT };
}
