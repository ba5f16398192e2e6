/** /api/messageConversations: private messages, feedback tickets, replies and ticket status. */
import { badRequest, checkParams, enumParam, HttpError, notFound, nowTimestamp, positiveIntParam, webMessage, type ApiCall, type Reply, type Route } from './http';
import { parseFields } from './objects';
import { inTransaction, type Db } from './store';
import { generateUid, isValidUid } from './uid';

const KLASS = 'org.hisp.dhis.message.MessageConversation';
const FIELDS = ['id', 'subject', 'messageType', 'status', 'assignee', 'created', 'lastUpdated', 'messages'];
const STATUSES = ['OPEN', 'PENDING', 'INVALID', 'SOLVED'] as const;
const ts = (col: string) => `to_char(${col}, 'YYYY-MM-DD"T"HH24:MI:SS.MS')`;

/**
 * A conversation is seen only by its participants: DHIS2 lists a user's conversations through that
 * user's UserMessage rows (github.com/dhis2/dhis2-core, HibernateMessageConversationStore
 * .getMessageConversations: `inner join mc.userMessages` under the "userMessageUser" filter set to
 * the viewer). A feedback TICKET's are the sender and the feedback recipients group
 * (DefaultMessageService.sendTicketMessage); a PRIVATE message's are its recipients and its sender.
 * $2 is the viewer's uid and $3 their username, or null for the test view of everything.
 */
const visible = `($2::text IS NULL OR messagetype NOT IN ('TICKET', 'PRIVATE') OR users @> jsonb_build_array(jsonb_build_object('id', $2::text))
  OR (messagetype = 'PRIVATE' AND EXISTS (SELECT 1 FROM message p WHERE p.messageconversationid = messageconversation.messageconversationid AND p.sender = $3::text)))`;

/** Conversations (all, or one uid) with their messages: newest activity first as DHIS2 lists them, or oldest created first. */
export async function loadConversations(db: Db, uid: string | null, forTests = false, viewer: string | null = null, viewerName: string | null = null): Promise<any[]> {
  const order = forTests ? 'messageconversationid' : 'lastupdated DESC, messageconversationid DESC';
  const { rows } = await db.query(
    `SELECT messageconversationid AS id, uid, subject, messagetype, status, assignee, ${ts('created')} AS created, ${ts('lastupdated')} AS lastupdated,
            users, usergroups, organisationunits
       FROM messageconversation WHERE ($1::text IS NULL OR uid = $1) AND ${visible} ORDER BY ${order}`, [uid, viewer, viewerName]);
  const { rows: messages } = await db.query(
    `SELECT m.messageconversationid AS conversation, m.messagetext, m.sender, ${ts('m.created')} AS created
       FROM message m JOIN messageconversation c USING (messageconversationid)
      WHERE ($1::text IS NULL OR c.uid = $1) ORDER BY m.messageid`, [uid]);
  return rows.map((r) => ({
    id: r.uid, subject: r.subject, messageType: r.messagetype, status: r.status, ...(r.assignee ? { assignee: { id: r.assignee } } : {}),
    created: r.created, lastUpdated: r.lastupdated,
    messages: messages.filter((m) => m.conversation === r.id).map((m) => ({ text: m.messagetext, sender: { username: m.sender }, created: m.created })),
    ...(forTests ? { users: r.users, userGroups: r.usergroups, organisationUnits: r.organisationunits } : {}),
  }));
}

async function createConversation(call: ApiCall, c: { subject: string; text: string; type: string; status: string; users?: unknown[]; userGroups?: unknown[]; organisationUnits?: unknown[] }): Promise<Reply> {
  const uid = generateUid();
  const now = nowTimestamp();
  await inTransaction(call.state.pool, async (db) => {
    const { rows } = await db.query(
      `INSERT INTO messageconversation (uid, subject, messagetype, status, created, lastupdated, users, usergroups, organisationunits)
       VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8) RETURNING messageconversationid AS id`,
      [uid, c.subject, c.type, c.status, now, JSON.stringify(c.users ?? []), JSON.stringify(c.userGroups ?? []), JSON.stringify(c.organisationUnits ?? [])]);
    await db.query('INSERT INTO message (messageconversationid, messagetext, sender, created) VALUES ($1, $2, $3, $4)', [rows[0].id, c.text, call.user.username, now]);
  });
  const location = `/api/messageConversations/${uid}`;
  return {
    status: 201,
    headers: { Location: location },
    body: webMessage(201, 'Message conversation created', { response: { responseType: 'ObjectReport', uid, klass: KLASS, errorReports: [] } }),
  };
}

/** Only {id} references to ids of the right shape count; DHIS2 drops users it does not know. */
function recipients(value: unknown, prop: string, known?: Set<string>): Array<{ id: string }> {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw badRequest(`JSON parse error: \`${prop}\` must be a list of {"id": ...}`);
  return value.filter((v) => isValidUid(v?.id) && (!known || known.has(v.id))).map((v) => ({ id: v.id as string }));
}

async function postConversation(call: ApiCall): Promise<Reply> {
  checkParams(call, []);
  const body = (await call.json()) as Record<string, unknown>;
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('The message conversation must be a JSON object');
  const users = recipients(body.users, 'users', new Set(call.state.users.map((u) => u.id)));
  // The simulator keeps no user groups or org unit users, so groups are taken on trust and org units reach nobody.
  const userGroups = recipients(body.userGroups, 'userGroups');
  const organisationUnits = recipients(body.organisationUnits, 'organisationUnits');
  if (users.length + userGroups.length === 0) throw new HttpError(409, 'No recipients selected.');
  if (typeof body.subject !== 'string' || body.subject === '') throw new HttpError(409, 'Subject is required.');
  if (typeof body.text !== 'string') throw new HttpError(409, 'Text is required.');
  return createConversation(call, { subject: body.subject, text: body.text, type: 'PRIVATE', status: 'NONE', users, userGroups, organisationUnits });
}

/** A ticket to the feedback recipients group, its sender a participant too; DHIS2 answers created("Feedback created"), no id. */
async function postFeedback(call: ApiCall): Promise<Reply> {
  checkParams(call, ['subject']);
  const subject = call.query.get('subject');
  if (!subject) throw badRequest('Query parameter `subject` is required');
  const users = [...new Set([...call.state.feedbackRecipients, call.user.id])].map((id) => ({ id }));
  await createConversation(call, { subject, text: await call.text(), type: 'TICKET', status: 'OPEN', users });
  return { status: 201, body: webMessage(201, 'Feedback created') };
}

/**
 * POST /{uid}/assign?userId=: MessageConversationController.setUserAssigned. 404 for an unknown conversation
 * or user; 409 when a TICKET's assignee is not in the feedback recipients group.
 */
async function postAssign(call: ApiCall, [, uid]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, ['userId']);
  const { rows } = await call.state.pool.query('SELECT messagetype FROM messageconversation WHERE uid = $1', [uid]);
  if (!rows[0]) return { status: 404, body: { message: 'No MessageConversation found for the given ID.' } };
  const user = call.state.users.find((u) => u.id === call.query.get('userId'));
  if (!user) return { status: 404, body: { message: 'Could not find user to assign' } };
  if (rows[0].messagetype === 'TICKET' && !call.state.feedbackRecipients.includes(user.id)) {
    return { status: 409, body: { message: "User provided is not a member of the system's feedback recipient group" } };
  }
  await call.state.pool.query('UPDATE messageconversation SET assignee = $2, lastupdated = $3 WHERE uid = $1', [uid, user.id, nowTimestamp()]);
  return { status: 200, body: { message: `User ${user.username} was assigned successfully` } };
}

async function conversationId(call: ApiCall, uid: string): Promise<string> {
  const { rows } = await call.state.pool.query('SELECT messageconversationid AS id FROM messageconversation WHERE uid = $1', [uid]);
  if (!rows[0]) throw notFound(`Message conversation does not exist: ${uid}`);
  return rows[0].id;
}

async function postReply(call: ApiCall, [, uid]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, []);
  const id = await conversationId(call, uid);
  const text = await call.text();
  const now = nowTimestamp();
  await inTransaction(call.state.pool, async (db) => {
    await db.query('INSERT INTO message (messageconversationid, messagetext, sender, created) VALUES ($1, $2, $3, $4)', [id, text, call.user.username, now]);
    await db.query('UPDATE messageconversation SET lastupdated = $2 WHERE messageconversationid = $1', [id, now]);
  });
  return { status: 201, headers: { Location: `/api/messageConversations/${uid}` }, body: webMessage(201, 'Message conversation created') };
}

async function postStatus(call: ApiCall, [, uid]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, ['messageConversationStatus']);
  if (!call.query.has('messageConversationStatus')) throw badRequest('Query parameter `messageConversationStatus` is required');
  const status = enumParam(call, 'messageConversationStatus', STATUSES, 'OPEN');
  const id = await conversationId(call, uid);
  await call.state.pool.query('UPDATE messageconversation SET status = $2, lastupdated = $3 WHERE messageconversationid = $1', [id, status, nowTimestamp()]);
  return { status: 200, body: webMessage(200, `Message conversation ${uid} status set to ${status}`) };
}

const pick = (c: Record<string, unknown>, fields: string[] | null) => (fields ? Object.fromEntries(fields.map((f) => [f, c[f]])) : c);

/** filter=subject:like:<text> (case-insensitive like ilike, as DHIS2's query engine does for like), :ilike:, :eq:; several filters AND. */
function subjectFilters(call: ApiCall): Array<(subject: string) => boolean> {
  return call.query.getAll('filter').map((f) => {
    const m = /^(\w+):(\w+):(.*)$/s.exec(f);
    if (!m) throw badRequest(`Invalid filter: ${f}`);
    const [, property, op, value] = m;
    if (property !== 'subject') throw badRequest(`Unknown path property: \`${property}\` (the simulator filters on subject only)`);
    if (op === 'eq') return (s: string) => s === value;
    if (op === 'like' || op === 'ilike') return (s: string) => s.toLowerCase().includes(value.toLowerCase());
    throw new HttpError(400, `Query failed because of a syntax error (Operator \`${op}\`)`);
  });
}

async function listConversations(call: ApiCall): Promise<Reply> {
  checkParams(call, ['fields', 'paging', 'page', 'pageSize', 'filter']);
  // DHIS2 would answer id,displayName (Preset.ID_NAME); a conversation's displayName is not modelled.
  if (!call.query.has('fields')) throw badRequest('GET /api/messageConversations without `fields` is not modelled by the simulator (DHIS2 answers id,displayName): name the fields');
  const fields = parseFields(call, FIELDS, 'messageConversations');
  const filters = subjectFilters(call);
  const all = (await loadConversations(call.state.pool, null, false, call.user.id, call.user.username)).filter((c) => filters.every((f) => f(c.subject))).map((c) => pick(c, fields));
  if (enumParam(call, 'paging', ['true', 'false'] as const, 'true') === 'false') return { status: 200, body: { messageConversations: all } };
  const page = positiveIntParam(call, 'page', 1);
  const pageSize = positiveIntParam(call, 'pageSize', 50);
  const pager = { page, pageCount: Math.max(1, Math.ceil(all.length / pageSize)), total: all.length, pageSize };
  return { status: 200, body: { pager, messageConversations: all.slice((page - 1) * pageSize, page * pageSize) } };
}

async function getConversation(call: ApiCall, [, uid]: RegExpMatchArray): Promise<Reply> {
  checkParams(call, ['fields']);
  const fields = parseFields(call, FIELDS, 'messageConversations');
  const [found] = await loadConversations(call.state.pool, uid, false, call.user.id, call.user.username);
  if (!found) {
    // MessageConversationController.getObject: 404 when there is none, 403 when the viewer is no participant.
    const { rowCount } = await call.state.pool.query('SELECT 1 FROM messageconversation WHERE uid = $1', [uid]);
    if (rowCount) throw new HttpError(403, 'Not authorized to access this conversation.');
    throw notFound(`Message conversation does not exist: ${uid}`);
  }
  return { status: 200, body: pick(found, fields) };
}

/** Every conversation, oldest first, with its recipients: for a test's assertions. */
export const allConversations = (db: Db) => loadConversations(db, null, true);

const one = /^\/api\/messageConversations\/([A-Za-z][A-Za-z0-9]{10})$/;

export const messageRoutes: Route[] = [
  { method: 'GET', pattern: /^\/api\/messageConversations$/, handle: listConversations },
  { method: 'POST', pattern: /^\/api\/messageConversations$/, handle: postConversation },
  { method: 'POST', pattern: /^\/api\/messageConversations\/feedback$/, handle: postFeedback },
  { method: 'GET', pattern: one, handle: getConversation },
  { method: 'POST', pattern: one, handle: postReply },
  { method: 'POST', pattern: /^\/api\/messageConversations\/([^/]+)\/status$/, handle: postStatus },
  { method: 'POST', pattern: /^\/api\/messageConversations\/([^/]+)\/assign$/, handle: postAssign },
];
