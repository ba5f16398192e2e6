/** POST /api/metadata: DHIS2's metadata importer, for org units, groups and group sets, identifier=UID. */
import { badRequest, checkParams, enumParam, type ApiCall, type Reply, type Route } from './http';
import { importObject, type ImportSettings } from './import-objects';
import { addOutcome, emptyStats, importReply, simulatedImportFailure, type TypeReport } from './import-report';
import { RESOURCES, RESOURCE_BY_PLURAL } from './schema';
import { writeTransaction } from './store';

const PARAMS = ['importStrategy', 'identifier', 'atomicMode', 'importMode', 'skipSharing', 'userOverrideMode', 'importReportMode', 'async'];

/** DHIS2 imports types in dependency order (units, then groups, then sets), and deletes in reverse. */
const IMPORT_ORDER = [RESOURCES.organisationUnit, RESOURCES.organisationUnitGroup, RESOURCES.organisationUnitGroupSet];

function readParams(call: ApiCall) {
  if (call.query.has('idScheme')) {
    throw badRequest('Query parameter `idScheme` is not a /api/metadata parameter (DHIS2 silently ignores it); use `identifier=UID|CODE|AUTO`');
  }
  checkParams(call, PARAMS);
  const identifier = enumParam(call, 'identifier', ['UID', 'CODE', 'AUTO'] as const, 'UID');
  if (identifier !== 'UID') throw badRequest(`identifier=${identifier} is not supported by the simulator (only UID: the sync matches a CODE target by translating uids itself)`);
  enumParam(call, 'async', ['false'] as const, 'false');
  return {
    strategy: enumParam(call, 'importStrategy', ['CREATE_AND_UPDATE', 'CREATE', 'UPDATE', 'DELETE'] as const, 'CREATE_AND_UPDATE'),
    atomicMode: enumParam(call, 'atomicMode', ['ALL', 'NONE'] as const, 'ALL'),
    importMode: enumParam(call, 'importMode', ['COMMIT', 'VALIDATE'] as const, 'COMMIT'),
    skipSharing: enumParam(call, 'skipSharing', ['true', 'false'] as const, 'false') === 'true',
    userOverride: enumParam(call, 'userOverrideMode', ['NONE', 'CURRENT'] as const, 'NONE'),
    onlyErrors: enumParam(call, 'importReportMode', ['FULL', 'ERRORS'] as const, 'FULL') === 'ERRORS',
  };
}

function readBundle(body: unknown): Record<string, unknown[]> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('The metadata bundle must be a JSON object');
  for (const [key, value] of Object.entries(body)) {
    if (!RESOURCE_BY_PLURAL[key]) {
      throw badRequest(`Bundle key \`${key}\` is not supported by the simulator (supported: ${Object.keys(RESOURCE_BY_PLURAL).join(', ')})`);
    }
    if (!Array.isArray(value)) throw badRequest(`Bundle key \`${key}\` must be a list`);
  }
  return body as Record<string, unknown[]>;
}

async function postMetadata(call: ApiCall): Promise<Reply> {
  const params = readParams(call);
  const bundle = readBundle(await call.json());
  if (call.state.takeErrorWith200()) return importReply(simulatedImportFailure(bundle), { onlyErrors: params.onlyErrors, errorWith200: true });
  const settings: ImportSettings = {
    strategy: params.strategy, skipSharing: params.skipSharing, userOverride: params.userOverride,
    user: call.user, users: call.state.users, blocked: call.state.blocked,
  };
  const order = params.strategy === 'DELETE' ? [...IMPORT_ORDER].reverse() : IMPORT_ORDER;
  const { result, writes } = await writeTransaction(call.state.pool, async (tx) => {
    const reports: TypeReport[] = [];
    for (const res of order) {
      const objects = bundle[res.plural] ?? [];
      if (objects.length === 0) continue;
      const typeReport: TypeReport = { klass: res.klass, stats: emptyStats(), objectReports: [] };
      for (const [index, raw] of objects.entries()) {
        const { report, outcome } = await importObject(tx, res, raw, index, settings);
        typeReport.objectReports.push(report);
        addOutcome(typeReport.stats, outcome);
      }
      reports.push(typeReport);
    }
    const failed = reports.some((t) => t.objectReports.some((o) => o.errorReports.length));
    if (failed && params.atomicMode === 'ALL') {
      // Nothing is written, so DHIS2 reports every object as ignored.
      for (const t of reports) t.stats = { ...emptyStats(), ignored: t.stats.total, total: t.stats.total };
      tx.rollbackOnly = true;
    }
    // VALIDATE reports what a commit would do, then writes nothing.
    if (params.importMode === 'VALIDATE') tx.rollbackOnly = true;
    return reports;
  });
  call.state.emit(writes);
  return importReply(result, { onlyErrors: params.onlyErrors });
}

export const metadataRoutes: Route[] = [{ method: 'POST', pattern: /^\/api\/metadata$/, handle: postMetadata }];
