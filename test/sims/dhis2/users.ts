/**
 * GET /api/users with one username filter: how a client finds users' ids (the sync finds the
 * approvers it shares a draft with, and the recipient of a private message). DHIS2's metadata
 * object filter syntax `property:operator:value`, operators `eq` and `in:[a,b]` (docs.dhis2.org,
 * Developer guide > Metadata > Metadata object filter; dhis2-core's query operators). Any other
 * filter is refused, not guessed.
 */
import { badRequest, checkParams, enumParam, type ApiCall, type Reply, type Route } from './http';

async function listUsers(call: ApiCall): Promise<Reply> {
  checkParams(call, ['filter', 'fields', 'paging']);
  const filters = call.query.getAll('filter');
  const eq = filters.length === 1 ? /^username:eq:(.*)$/s.exec(filters[0]) : null;
  const among = filters.length === 1 ? /^username:in:\[(.*)\]$/s.exec(filters[0]) : null;
  if (!eq && !among) throw badRequest('The simulator lists users only with one filter: username:eq:<name> or username:in:[a,b]');
  const wanted = eq ? [eq[1]] : among![1].split(',').map((n) => n.trim()).filter(Boolean);
  const users = call.state.users.filter((u) => wanted.includes(u.username)).map((u) => ({ id: u.id, username: u.username }));
  return { status: 200, body: enumParam(call, 'paging', ['true', 'false'] as const, 'true') === 'false' ? { users } : { pager: { page: 1, pageCount: 1, total: users.length, pageSize: 50 }, users } };
}

export const userRoutes: Route[] = [{ method: 'GET', pattern: /^\/api\/users$/, handle: listUsers }];
