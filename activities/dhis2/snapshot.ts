/**
 * The initial load of a target: every org unit (parents before children), group and group set,
 * read from the source a page at a time and imported in one metadata call per page.
 */
import { ApplicationFailure } from '@temporalio/common';
import { endpointOf, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, importErrors, refused, snippet, type ImportError } from './api';
import { mapForTarget, type Resource } from './mapping';
import { openTarget } from './target';

export interface PageResult { read: number; sent: number; created: number; updated: number; ignored: number; errors: Array<Pick<ImportError, 'code' | 'message' | 'uid'>> }

/** The target exists in the worker's config, and both servers answer with our credentials. */
export async function checkSnapshotTarget(req: { target: string }): Promise<{ source: string; target: string; counts: Record<ResourceType, number> }> {
  const { config, settings: target, source, server } = openTarget(req.target);
  if (!target.operations.includes('create')) {
    throw ApplicationFailure.nonRetryable(`Target ${target.name} does not take creates (operations: ${target.operations.join(', ')}): a snapshot would copy nothing. Nothing was sent.`, 'SyncConfig');
  }
  for (const each of [source, server]) {
    const me = await call(each, 'GET', 'me');
    if (me.status !== 200) throw refused(each, `answered GET /api/me with HTTP ${me.status}: ${snippet(me.text)}`);
  }
  const counts = {} as Record<ResourceType, number>;
  for (const type of target.resources) {
    const res = await call<{ pager?: { total?: number } }>(source, 'GET', endpointOf[type], { query: { fields: 'id', page: '1', pageSize: '1' } });
    const total = res.status === 200 ? res.body?.pager?.total : undefined;
    if (typeof total !== 'number') throw refused(source, `answered GET /api/${endpointOf[type]} without a pager total (HTTP ${res.status}): ${snippet(res.text)}`);
    counts[type] = total;
  }
  return { source: config.source.baseUrl, target: target.baseUrl, counts };
}

/** One page from the source into the target. Idempotent: CREATE_AND_UPDATE by uid. */
export async function copyPage(req: { target: string; type: ResourceType; page: number; pageSize: number; dryRun: boolean }): Promise<PageResult> {
  const { config, settings: target, source, server } = openTarget(req.target);
  const endpoint = endpointOf[req.type];
  const order = req.type === 'organisationUnit' ? 'level:asc' : 'id:asc';
  const res = await call<Record<string, unknown>>(source, 'GET', endpoint, {
    query: { fields: '*', page: String(req.page), pageSize: String(req.pageSize), order }, timeoutMs: 120_000,
    // A page is bounded by its size: a few KiB per org unit, more with a large geometry.
    maxBytes: Math.min(answerLimits.listMax, req.pageSize * answerLimits.perListed), whenTooLarge: 'run the snapshot again with a smaller pageSize',
  });
  const items = res.status === 200 ? res.body?.[endpoint] : undefined;
  if (!Array.isArray(items)) throw refused(source, `answered GET /api/${endpoint} page ${req.page} with HTTP ${res.status}: ${snippet(res.text)}`);
  const mapped: Resource[] = [];
  for (const item of items as Resource[]) {
    const m = await mapForTarget(config, target, req.type, item);
    if (m) mapped.push(m);
  }
  const result: PageResult = { read: items.length, sent: mapped.length, created: 0, updated: 0, ignored: 0, errors: [] };
  if (!mapped.length) return result;
  const imported = await call<{ status?: string; response?: { stats?: Record<string, number> } }>(server, 'POST', 'metadata', {
    query: { importStrategy: target.operations.includes('update') ? 'CREATE_AND_UPDATE' : 'CREATE', identifier: 'UID', atomicMode: 'NONE', skipSharing: 'true', userOverrideMode: 'CURRENT', importMode: req.dryRun ? 'VALIDATE' : 'COMMIT' },
    json: { [endpoint]: mapped }, timeoutMs: 300_000, maxBytes: answerLimits.pageReport,
  });
  if (imported.status !== 200 && imported.status !== 409) throw refused(server, `answered the import of page ${req.page} with HTTP ${imported.status}: ${snippet(imported.text)}`);
  const stats = imported.body?.response?.stats;
  if (!stats) throw ApplicationFailure.nonRetryable(`${target.name} answered the import of page ${req.page} without an import report: ${snippet(imported.text)}`, 'Dhis2Refused');
  Object.assign(result, { created: stats.created ?? 0, updated: stats.updated ?? 0, ignored: stats.ignored ?? 0 });
  result.errors = importErrors(imported.body).slice(0, 50).map(({ code, message, uid }) => ({ code, message, uid }));
  return result;
}
