/**
 * The initial load of a target: every org unit (parents before children), group and group set,
 * read from the source a page at a time and imported in one metadata call per page.
 */
import { ApplicationFailure } from '@temporalio/common';
import { endpointOf, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, importErrors, refused, snippet, type Dhis2Server, type ImportError } from './api';
import { mapForTarget, type Resource } from './mapping';
import { openTarget } from './target';
import { toTarget } from './codes';

/**
 * The most resources of one type a snapshot copies, and the most pages it reads: a source that
 * claims more (or keeps paging) is refused rather than followed. The largest DHIS2 hierarchies hold
 * a few hundred thousand org units; a million at the smallest page size is the page cap.
 */
export const MAX_SNAPSHOT_RESOURCES = 1_000_000;
export const MAX_SNAPSHOT_PAGES = 1_000_000;

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
    if (!Number.isSafeInteger(total) || total < 0 || total > MAX_SNAPSHOT_RESOURCES) {
      throw refused(source, `counts ${total} ${endpointOf[type]}: a snapshot copies at most ${MAX_SNAPSHOT_RESOURCES} of a type (the cap on what it pages through). Nothing was sent.`);
    }
    counts[type] = total;
  }
  return { source: config.source.baseUrl, target: target.baseUrl, counts };
}

/** One page from the source into the target. Idempotent: CREATE_AND_UPDATE by uid. */
export async function copyPage(req: { target: string; type: ResourceType; page: number; pageSize: number; dryRun: boolean }): Promise<PageResult> {
  const { config, settings: target, source, server } = openTarget(req.target);
  const endpoint = endpointOf[req.type];
  if (req.page > MAX_SNAPSHOT_PAGES) throw refused(source, `would be asked for page ${req.page} of ${endpoint}: a snapshot reads at most ${MAX_SNAPSHOT_PAGES} pages (the cap on pages). Nothing was sent.`);
  const order = req.type === 'organisationUnit' ? 'level:asc' : 'id:asc';
  const res = await call<Record<string, unknown>>(source, 'GET', endpoint, {
    query: { fields: '*', page: String(req.page), pageSize: String(req.pageSize), order }, timeoutMs: 120_000,
    // A page is bounded by its size: a few KiB per org unit, more with a large geometry.
    maxBytes: Math.min(answerLimits.listMax, req.pageSize * answerLimits.perListed), whenTooLarge: 'run the snapshot again with a smaller pageSize',
  });
  const items = res.status === 200 ? res.body?.[endpoint] : undefined;
  if (!Array.isArray(items)) throw refused(source, `answered GET /api/${endpoint} page ${req.page} with HTTP ${res.status}: ${snippet(res.text)}`);
  checkPage(source, endpoint, req, items.length, res.body?.pager);
  const mapped: Resource[] = [];
  for (const item of items as Resource[]) {
    const m = await mapForTarget(config, target, req.type, item);
    if (m) mapped.push(m);
  }
  const result: PageResult = { read: items.length, sent: mapped.length, created: 0, updated: 0, ignored: 0, errors: [] };
  if (target.idScheme === 'CODE') {
    // A CODE target: each resource and its references by the target's uids of the same codes (./codes.ts); what cannot go is reported, not sent.
    const translated = await toTarget(source, server, target.name, req.type, mapped);
    const sendable: Resource[] = [];
    translated.forEach((t, i) => {
      if (t.resource) sendable.push(t.resource);
      else if (result.errors.length < 50) result.errors.push(...(t.problem ? [{ code: 'NotSyncable', message: t.problem, uid: mapped[i].id }] : t.missing!.map(({ code, message, uid }) => ({ code, message, uid }))));
    });
    mapped.splice(0, mapped.length, ...sendable);
    result.sent = mapped.length;
    result.ignored = translated.length - sendable.length;
  }
  if (!mapped.length) return result;
  const imported = await call<{ status?: string; response?: { stats?: Record<string, number> } }>(server, 'POST', 'metadata', {
    query: { importStrategy: target.operations.includes('update') ? 'CREATE_AND_UPDATE' : 'CREATE', identifier: 'UID', atomicMode: 'NONE', skipSharing: 'true', userOverrideMode: 'CURRENT', importMode: req.dryRun ? 'VALIDATE' : 'COMMIT' },
    json: { [endpoint]: mapped }, timeoutMs: 300_000, maxBytes: answerLimits.pageReport,
  });
  if (imported.status !== 200 && imported.status !== 409) throw refused(server, `answered the import of page ${req.page} with HTTP ${imported.status}: ${snippet(imported.text)}`);
  const stats = imported.body?.response?.stats;
  if (!stats) throw ApplicationFailure.nonRetryable(`${target.name} answered the import of page ${req.page} without an import report: ${snippet(imported.text)}`, 'Dhis2Refused');
  Object.assign(result, { created: stats.created ?? 0, updated: stats.updated ?? 0, ignored: result.ignored + (stats.ignored ?? 0) });
  result.errors = [...result.errors, ...importErrors(imported.body).map(({ code, message, uid }) => ({ code, message, uid }))].slice(0, 50);
  return result;
}

/**
 * The page is the one asked for and adds something: a source that ignores `page` (the same page
 * again), sends more than a page, or says the page is inside the list yet sends nothing would be
 * followed to the end of the snapshot for nothing. An empty page past the pager's last one is the
 * source having shrunk meanwhile, and is read as empty.
 */
function checkPage(source: Dhis2Server, endpoint: string, req: { page: number; pageSize: number }, items: number, pager: unknown): void {
  const p = pager as { page?: unknown; pageCount?: unknown; total?: unknown } | undefined;
  const where = `GET /api/${endpoint} page ${req.page}`;
  if (typeof p?.page !== 'number' || typeof p.pageCount !== 'number') throw refused(source, `answered ${where} without a pager (page, pageCount): it does not page as DHIS2 does. Nothing of the page was sent.`);
  if (p.page !== req.page) throw refused(source, `answered ${where} with page ${p.page}: it ignores paging, and every page would be the same. Nothing of the page was sent.`);
  if (items > req.pageSize) throw refused(source, `answered ${where} with ${items} items, more than the page size ${req.pageSize}. Nothing of the page was sent.`);
  if (items === 0 && Number(p.total) > 0 && req.page <= p.pageCount) throw refused(source, `answered ${where} with no items though its pager says there are ${p.pageCount} pages: a page that adds nothing. Nothing of the page was sent.`);
}
