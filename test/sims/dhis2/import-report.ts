/** DHIS2's error reports and import reports, with the codes and message wording DHIS2 uses. */
import { webMessage } from './http';
import type { ResourceSpec } from './schema';
import { RESOURCES } from './schema';

/** DHIS2's ErrorReport as its JSON shows it (null members are left out, as DHIS2's object mapper does). */
export interface ErrorReport {
  message: string;
  mainKlass: string;
  /** The uid of the object in error (set by PreheatErrorReport: E5002 and the other reference checks). */
  mainId?: string;
  /** The class a collection reference points at (Property.getItemKlass; absent for a single reference such as `parent`). */
  errorKlass?: string;
  errorCode: string;
  errorProperty?: string;
  errorProperties: string[];
  /** The same arguments, as ErrorMessage keeps them. */
  args: string[];
}

export interface ObjectReport { klass: string; uid: string; index: number; errorReports: ErrorReport[] }
export interface Stats { created: number; updated: number; deleted: number; ignored: number; total: number }
export interface TypeReport { klass: string; stats: Stats; objectReports: ObjectReport[] }
export type Outcome = 'created' | 'updated' | 'deleted' | 'ignored';

const report = (res: ResourceSpec, errorCode: string, message: string, errorProperty: string | undefined, errorProperties: string[], extra: Partial<ErrorReport> = {}): ErrorReport =>
  ({ message, mainKlass: res.klass, ...extra, errorCode, ...(errorProperty ? { errorProperty } : {}), errorProperties, args: errorProperties });

/**
 * How DHIS2 names an object in its messages and error properties: PreheatIdentifier.getIdentifiersWithName,
 * "<display name> [<identifier>] (<SimpleClassName>)", or without the name when it has none. The identifier is
 * the uid, or the code when the import runs with identifier=CODE ("[null]" when the object has none).
 */
export const describe = (res: ResourceSpec | string, id: string | null, name?: string | null) =>
  `${name ? `${name} ` : ''}[${id}] (${typeof res === 'string' ? res : res.simpleName})`;

/** The message templates of dhis2-core's ErrorCode.java (2.39-2.42 and master), filled as MessageFormat does. */
export const errors = {
  missing: (res: ResourceSpec, prop: string) => report(res, 'E4000', `Missing required property \`${prop}\``, prop, [prop]),
  // The missing space after the property is DHIS2's own wording.
  tooLong: (res: ResourceSpec, prop: string, max: number, length: number) =>
    report(res, 'E4001', `Maximum length of property \`${prop}\`is ${max}, but given length was ${length}`, prop, [prop, String(max), String(length)]),
  invalidUid: (res: ResourceSpec, value: string) => report(res, 'E4014', `Invalid UID \`${value}\` for property \`id\``, 'id', [value, 'id']),
  /**
   * E5002 as ReferencesCheck builds it: errorProperties are [the reference, the object, the association], the
   * first two decorated by getIdentifiersWithName, never bare uids. `ref` and `object` come from describe().
   */
  invalidReference: (res: ResourceSpec, objectUid: string, ref: string, object: string, association: string, itemKlass?: string) =>
    report(res, 'E5002', `Invalid reference ${ref} on object ${object} for association \`${association}\``,
      association, [ref, object, association], { mainId: objectUid, ...(itemKlass ? { errorKlass: itemKlass } : {}) }),
  duplicate: (res: ResourceSpec, prop: string, value: string, object: string, other: string) =>
    report(res, 'E5003', `Property \`${prop}\` with value \`${value}\` on object ${object} already exists on object ${other}`, prop, [prop, value, object, other]),
  existsButCreate: (res: ResourceSpec, identifier: string, object: string) =>
    report(res, 'E5000', `Found matching object for reference, but import mode is CREATE. Identifier was ${identifier}, and object was ${object}.`, 'id', [identifier, object]),
  noMatch: (res: ResourceSpec, identifier: string, object: string) =>
    report(res, 'E5001', `No matching object for reference. Identifier was ${identifier}, and object was ${object}.`, 'id', [identifier, object]),
  deleteBlocked: (res: ResourceSpec, uid: string, associated: string) =>
    report(res, 'E4030', `Object could not be deleted because it is associated with another object: ${associated}`, undefined, [associated], { mainId: uid }),
  /** What the fault knobs put in an import report: not a DHIS2 code, so no client can mistake it for a real conflict. */
  simulated: (res: ResourceSpec) => report(res, 'E7000', 'Simulated failure', undefined, []),
};

export const emptyStats = (): Stats => ({ created: 0, updated: 0, deleted: 0, ignored: 0, total: 0 });

export function addOutcome(stats: Stats, outcome: Outcome): void {
  stats[outcome] += 1;
  stats.total += 1;
}

function sumStats(reports: TypeReport[]): Stats {
  const total = emptyStats();
  for (const r of reports) for (const k of Object.keys(total) as Array<keyof Stats>) total[k] += r.stats[k];
  return total;
}

/**
 * The HTTP answer for an import: 200 OK without errors, else 409 with status ERROR (nothing written)
 * or WARNING (some objects written). `errorWith200` reproduces DHIS2's quirk of a 200 carrying ERROR.
 */
export function importReply(typeReports: TypeReport[], opts: { onlyErrors: boolean; errorWith200?: boolean }): { status: number; body: unknown } {
  const stats = sumStats(typeReports);
  const hasErrors = typeReports.some((t) => t.objectReports.some((o) => o.errorReports.length > 0));
  const written = stats.created + stats.updated + stats.deleted;
  const status = !hasErrors ? 'OK' : written > 0 ? 'WARNING' : 'ERROR';
  const shown = typeReports.map((t) => ({ ...t, objectReports: opts.onlyErrors ? t.objectReports.filter((o) => o.errorReports.length) : t.objectReports }));
  const response = { responseType: 'ImportReport', status, stats, typeReports: shown };
  if (!hasErrors) return { status: 200, body: webMessage(200, undefined, { response }) };
  const code = opts.errorWith200 ? 200 : 409;
  return {
    status: code,
    body: { ...webMessage(code, 'One or more errors occurred, please see full details in import report.', { response }), status },
  };
}

/** A failed import report for the fault knobs: every object ignored, the first one carrying the error. */
export function simulatedImportFailure(bundle: unknown): TypeReport[] {
  const reports: TypeReport[] = [];
  const given = typeof bundle === 'object' && bundle !== null ? (bundle as Record<string, unknown>) : {};
  for (const res of Object.values(RESOURCES)) {
    const objects = Array.isArray(given[res.plural]) ? (given[res.plural] as Array<{ id?: unknown }>) : [];
    if (objects.length === 0) continue;
    const objectReports = objects.map((o, index) => ({
      klass: res.klass, uid: typeof o?.id === 'string' ? o.id : '', index,
      errorReports: reports.length === 0 && index === 0 ? [errors.simulated(res)] : [],
    }));
    reports.push({ klass: res.klass, stats: { ...emptyStats(), ignored: objects.length, total: objects.length }, objectReports });
  }
  if (reports.length === 0) {
    const res = RESOURCES.organisationUnit;
    reports.push({ klass: res.klass, stats: { ...emptyStats(), ignored: 1, total: 1 }, objectReports: [{ klass: res.klass, uid: '', index: 0, errorReports: [errors.simulated(res)] }] });
  }
  return reports;
}
