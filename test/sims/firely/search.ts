/**
 * Type-level search: GET [base]/[type]?params. Only current, not-deleted versions match. The
 * parameters below are implemented; any other is a 400 (a real server would ignore an unknown one
 * under lenient handling, which would let a typo in a runbook pass unseen).
 *
 *   _id=a,b             _tag=[system|]code[,...]      _lastUpdated=gt|ge|lt|le<instant or date> (repeatable)
 *   _count=0..1000 (10) _sort=_lastUpdated|-_lastUpdated (default: newest first)
 *   _summary=count      _total=accurate|estimate|none
 *   _skip=N             the simulator's paging: only follow the `next` link, never build it
 *   _format=json        (anything else is 406)
 *
 * Totals: a 6.x server has DefaultTotal=none, so a Bundle carries `total` only with _total=accurate
 * (or estimate); a 5.x server includes it unless _total=none.
 */
import type { Collection, Document, Filter } from 'mongodb';
import type { Entry, Resource } from './entries';
import { FhirError, invalid, notImplemented } from './fhir';

const SINGLE = ['_id', '_tag', '_count', '_sort', '_summary', '_total', '_skip', '_format'];
const PREFIXES: Record<string, string> = { gt: '$gt', ge: '$gte', lt: '$lt', le: '$lte' };

export interface SearchContext {
  col: Collection<Document>;
  base: string;
  type: string;
  query: URLSearchParams;
  defaultTotal: 'accurate' | 'none';
  differ(res: Resource): Resource;
}

function toFilter(type: string, query: URLSearchParams): Filter<Document> {
  const filter: Filter<Document> = { type, cur: true, deleted: false };
  const id = query.get('_id');
  if (id !== null) filter.res_id = { $in: id.split(',') };
  const tag = query.get('_tag');
  if (tag !== null) {
    if (!tag || tag.endsWith('|')) throw notImplemented(`_tag=${tag} (a tag search without a code)`);
    filter.tags = { $in: tag.split(',') };
  }
  const ranges = query.getAll('_lastUpdated');
  if (ranges.length) {
    const lu: Record<string, Date> = {};
    for (const raw of ranges) {
      const m = /^(gt|ge|lt|le)(\d{4}-\d{2}-\d{2}(T.+)?)$/.exec(raw);
      if (!m) throw notImplemented(`_lastUpdated=${raw} (only the prefixes gt, ge, lt and le are)`);
      const at = new Date(m[2]);
      if (Number.isNaN(at.getTime())) throw invalid(`_lastUpdated: '${m[2]}' is not a valid date or instant`);
      lu[PREFIXES[m[1]]] = at;
    }
    filter.lu = lu;
  }
  return filter;
}

function intParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^\d{1,7}$/.test(raw) || Number(raw) > max) throw invalid(`${name}: '${raw}' is not a number from 0 to ${max}`);
  return Number(raw);
}

function checkParams(query: URLSearchParams): void {
  for (const name of new Set(query.keys())) {
    if (name !== '_lastUpdated' && !SINGLE.includes(name)) throw notImplemented(`The search parameter '${name}'`);
    if (name !== '_lastUpdated' && query.getAll(name).length > 1) throw invalid(`The search parameter '${name}' is given more than once`);
  }
  const summary = query.get('_summary');
  if (summary !== null && summary !== 'count') throw notImplemented(`_summary=${summary}`);
  const total = query.get('_total');
  if (total !== null && !['accurate', 'estimate', 'none'].includes(total)) throw invalid(`_total: '${total}' is not one of accurate, estimate, none`);
  const sort = query.get('_sort');
  if (sort !== null && sort !== '_lastUpdated' && sort !== '-_lastUpdated') throw notImplemented(`_sort=${sort}`);
}

export async function search(ctx: SearchContext) {
  const { query } = ctx;
  checkParams(query);
  const filter = toFilter(ctx.type, query);
  const countOnly = query.get('_summary') === 'count';
  const count = countOnly ? 0 : intParam(query, '_count', 10, 1000);
  const skip = intParam(query, '_skip', 0, 10_000_000);
  const totalMode = query.get('_total') ?? ctx.defaultTotal;
  const withTotal = totalMode !== 'none';

  const total = withTotal ? await ctx.col.countDocuments(filter) : undefined;
  const docs = count > 0
    ? await ctx.col.find(filter).sort({ lu: query.get('_sort') === '_lastUpdated' ? 1 : -1, seq: 1 }).skip(skip).limit(count + 1).toArray()
    : [];
  const page = (docs as unknown as Entry[]).slice(0, count);
  const self = `${ctx.base}/${ctx.type}?${query.toString()}`;
  const link = [{ relation: 'self', url: self }];
  if (docs.length > count) {
    const next = new URLSearchParams(query);
    next.set('_skip', String(skip + count));
    link.push({ relation: 'next', url: `${ctx.base}/${ctx.type}?${next.toString()}` });
  }
  if (countOnly && !withTotal) {
    // What a 6.x server answers to _summary=count without _total: a Bundle with no count at all.
    return { resourceType: 'Bundle', type: 'searchset', link, entry: [] };
  }
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    ...(total !== undefined ? { total } : {}),
    link,
    entry: page.map((e) => ({ fullUrl: `${ctx.base}/${e.type}/${e.res_id}`, resource: ctx.differ(e.res!), search: { mode: 'match' } })),
  };
}

export function checkFormat(query: URLSearchParams, accept: string | undefined): void {
  const format = query.get('_format');
  if (format !== null && !['json', 'application/json', 'application/fhir+json'].includes(format)) {
    throw new FhirError(406, 'not-supported', `_format=${format}: the Firely Server simulator speaks JSON only`);
  }
  if (accept && !/(^|,)\s*(\*\/\*|application\/(fhir\+)?json|application\/\*)/i.test(accept)) {
    throw new FhirError(406, 'not-supported', `Accept: ${accept}: the Firely Server simulator speaks JSON only`);
  }
}
