/**
 * Fault knobs, each in a small JSON file that a test (or a lab, over SSH) writes and the simulator
 * reads at every request or item, so a knob takes effect without a restart.
 *
 * The server's, in <state-dir>/faults.json:
 *   readinessLocked: { untilMs } | { requests }   $readiness answers 423 until then / for that many calls
 *   differ: [{ type, id, patch }]                  reads of that resource return it with `patch` merged in
 *   licenseInvalid: true                           every request answers 402, as with an expired license
 *   adminLoading: { requests }                      /administration answers 423 Locked that many times (conformance resources loading)
 *   adminForbidden: true                            /administration answers 403 (the caller is not in Administration.AllowedNetworks)
 *   adminNotServed: ["Library", ...]                /administration/<type> answers 404 for those types (as without the plugin that serves them)
 *
 * The ingest tool's, in the file $FSI_SIM_FAULTS names (no file, no faults):
 *   crashAfterItems: N    after writing its Nth item of this run, the tool SIGKILLs itself, mid-batch,
 *                         before the recovery journal moves; the knob is consumed first, so a restart runs clean
 *   minimumLevel: "ERR"  the tool writes only lines of that level and above (Firely Server's documented
 *                         default minimum level is Error; FSI's console output is not documented): no
 *                         "No new items" and no batch lines, which a runbook must not need
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Resource } from './entries';

export interface ServerFaults {
  readinessLocked?: { untilMs?: number; requests?: number };
  differ?: Array<{ type: string; id: string; patch: Record<string, unknown> }>;
  licenseInvalid?: boolean;
  adminLoading?: { requests: number };
  adminForbidden?: boolean;
  adminNotServed?: string[];
}

export interface IngestFaults { crashAfterItems?: number; minimumLevel?: 'VRB' | 'DBG' | 'INF' | 'WRN' | 'ERR' | 'FTL' }

function readJson<T>(file: string): T {
  if (!existsSync(file)) return {} as T;
  const text = readFileSync(file, 'utf8');
  return (text.trim() ? JSON.parse(text) : {}) as T;
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

export const serverFaultsFile = (stateDir: string) => path.join(stateDir, 'faults.json');

/** Replaces the server's knobs. `lockReadinessFor` is a convenience: seconds from now. */
export function setServerFaults(stateDir: string, faults: ServerFaults & { lockReadinessForSeconds?: number }): void {
  const { lockReadinessForSeconds, ...rest } = faults;
  if (lockReadinessForSeconds !== undefined) rest.readinessLocked = { untilMs: Date.now() + lockReadinessForSeconds * 1000 };
  writeJsonAtomic(serverFaultsFile(stateDir), rest);
}

/** The server's view of its knobs at one request. */
export class ServerKnobs {
  constructor(private readonly stateDir: string | undefined) {}

  private load(): ServerFaults {
    return this.stateDir ? readJson<ServerFaults>(serverFaultsFile(this.stateDir)) : {};
  }

  licenseInvalid(): boolean {
    return this.load().licenseInvalid === true;
  }

  /** True while readiness is locked; a counted lock is used up one call at a time. */
  takeReadinessLocked(): boolean {
    const f = this.load();
    const lock = f.readinessLocked;
    if (!lock) return false;
    if (lock.untilMs !== undefined && Date.now() < lock.untilMs) return true;
    if (lock.requests !== undefined && lock.requests > 0) {
      f.readinessLocked = { ...lock, requests: lock.requests - 1 };
      writeJsonAtomic(serverFaultsFile(this.stateDir!), f);
      return true;
    }
    return false;
  }

  adminNotServed(type: string): boolean {
    return this.load().adminNotServed?.includes(type) === true;
  }

  adminForbidden(): boolean {
    return this.load().adminForbidden === true;
  }

  /** True while the administration endpoint is loading; used up one request at a time. */
  takeAdminLoading(): boolean {
    const f = this.load();
    if (!f.adminLoading || f.adminLoading.requests <= 0) return false;
    f.adminLoading = { requests: f.adminLoading.requests - 1 };
    writeJsonAtomic(serverFaultsFile(this.stateDir!), f);
    return true;
  }

  /** Applies a `differ` knob to a resource read from this server. */
  differ(res: Resource): Resource {
    const rule = this.load().differ?.find((d) => d.type === res.resourceType && d.id === res.id);
    return rule ? { ...res, ...rule.patch } : res;
  }
}

export function loadIngestFaults(file: string | undefined): IngestFaults {
  return file ? readJson<IngestFaults>(file) : {};
}

/** Removes a knob that has fired, so a restarted tool does not fire it again. */
export function consumeIngestFault(file: string, knob: keyof IngestFaults): void {
  const f = readJson<IngestFaults>(file);
  delete f[knob];
  writeJsonAtomic(file, f);
}
