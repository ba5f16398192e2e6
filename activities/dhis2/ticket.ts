/**
 * The TICKET that asks for a gated change's approval, in the target's messaging
 * (/api/messageConversations/feedback): the field diff, the review link and who is asked. Never a
 * link: the ticket's readers (the feedback recipients, maybe the change's author) are not the
 * approvers. Each approver's signed link goes to that approver alone, in a DHIS2 private message
 * (POST /api/messageConversations with `users: [{id}]`, visible only to its participants). The
 * links are signed here and never return to the workflow.
 */
import { ApplicationFailure } from '@temporalio/common';
import { diffLines } from '../../contracts/dhis2/render';
import { uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { signLinksForThisRun } from '../approvals/links';
import { answerLimits, call, refused, snippet } from './api';
import type { FieldChange } from './mapping';
import { draftKey, openTarget, type Dhis2Target, type GatedOperation, type TicketStatus } from './target';

export interface TicketRequest {
  target: string;
  type: ResourceType;
  uid: string;
  name?: string;
  operation: GatedOperation;
  changes: FieldChange[];
  gatedFields: string[];
  author?: string;
  quorum: number;
  fourEyes: boolean;
  /** The gate the links decide, and its opening. */
  gate: string;
  nonce: string;
  deadline: string;
  expiresAt: number;
  links: Array<{ approver: string; linkId: string }>;
  /** Reply in this ticket (a new opening of the same change) instead of opening one. */
  ticket?: string;
  /** A first line for a reply with new links (e.g. why the draft was refused). */
  preface?: string;
}

/** Where the request went: the ticket, and each approver whose private message could not be sent (and why). */
export interface TicketReceipt {
  ref: string;
  failed?: Array<{ approver: string; error: string }>;
}

const label = (type: ResourceType, uid: string, name?: string) => `${type} ${name ? `'${name}' (${uid})` : uid}`;

/** The subject names the gate opening, so the ticket can be found again (the feedback API does not return its id). */
export const ticketSubject = (req: Pick<TicketRequest, 'type' | 'uid' | 'name' | 'target' | 'nonce'>) =>
  `[Runbooks org-unit sync] Approval needed: ${label(req.type, req.uid, req.name)} on ${req.target} [ref ${req.nonce.slice(0, 8)}]`.slice(0, 255);

/** An approver's private message: one per gate opening and approver, found again by its tag when the activity is retried. */
const linkTag = (nonce: string, approver: string) => `[link ${nonce.slice(0, 8)} ${approver}]`;

/**
 * The approval request: first each approver's private message with their own link, then the ticket
 * (or a reply in it) that says what changes and who was asked. Returns the ticket's id and the
 * approvers who could not be reached. Retried safely: what was already sent is found and not sent again.
 */
export async function openApprovalTicket(req: TicketRequest): Promise<TicketReceipt> {
  const target = openTarget(req.target);
  const { workflowId, urls } = signLinksForThisRun(req, 'openApprovalTicket');
  const failed: NonNullable<TicketReceipt['failed']> = [];
  for (const { approver, url } of urls) {
    const error = await sendPrivateLink(target, req, approver, url, workflowId);
    if (error) failed.push({ approver, error });
  }
  const asked = askedLines(req, failed);
  if (req.ticket) {
    await target.reply(req.ticket, [req.preface ?? 'The change is asked again.', '', ...asked].join('\n'));
    return { ref: req.ticket, failed };
  }
  const ref = req.nonce.slice(0, 8);
  let opened = await target.findTicket(ref);
  if (!opened) {
    await target.openTicket(ticketSubject(req), ticketText(target, req, asked, workflowId));
    opened = await target.findTicket(ref);
    if (!opened) throw ApplicationFailure.retryable(`DHIS2 ${target.name} took the approval ticket but does not list it yet`, 'Dhis2Unavailable');
  }
  // Assigning again is harmless, so a retry after the ticket was opened still assigns it.
  const { assignee } = target.settings.approval ?? {};
  if (assignee) await target.assignTicket(opened, assignee);
  return { ref: opened, failed };
}

/** Who is asked, and how their links went: said in the ticket, with no link in it. */
function askedLines(req: TicketRequest, failed: NonNullable<TicketReceipt['failed']>): string[] {
  const reached = req.links.map((l) => l.approver).filter((a) => !failed.some((f) => f.approver === a));
  const until = new Date(req.expiresAt * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  return [
    `Asked to decide: ${req.links.map((l) => l.approver).join(', ')}. ` +
      `${reached.length ? `${reached.join(', ')} got a private message with their own link (it works once, until ${until}).` : 'Nobody could be sent a link.'}`,
    ...failed.map((f) => `No link could be sent to ${f.approver}: ${f.error}. An operator can make one: npm run runbook -- link <run> --gate ${req.gate} --for ${f.approver}`),
    'This ticket carries no approval link: reading it does not let anyone decide.',
  ];
}

/** DHIS2 user names: what the filter and the message may carry. */
const userName = /^[A-Za-z0-9._@+-]{1,255}$/;

/**
 * One approver's link, in a private message to that DHIS2 user alone. Returns why it could not be
 * sent when no retry will help (no such user); throws for what a retry may fix (DHIS2 down).
 */
async function sendPrivateLink(target: Dhis2Target, req: TicketRequest, approver: string, url: string, workflowId: string): Promise<string | undefined> {
  if (!userName.test(approver)) return `"${approver}" is not a DHIS2 user name (letters, digits, . _ @ + -)`;
  const tag = linkTag(req.nonce, approver);
  const found = await call<{ messageConversations?: Array<{ subject?: unknown }> }>(target.server, 'GET', 'messageConversations', {
    query: { filter: `subject:like:${tag}`, fields: 'id,subject', paging: 'false' }, maxBytes: answerLimits.report,
  });
  if (found.status !== 200) throw refused(target.server, `answered GET /api/messageConversations with HTTP ${found.status}: ${snippet(found.text)}`);
  if ((found.body?.messageConversations ?? []).some((c) => typeof c.subject === 'string' && c.subject.includes(tag))) return undefined;

  const users = await call<{ users?: Array<{ id?: unknown; username?: unknown }> }>(target.server, 'GET', 'users', {
    query: { filter: `username:eq:${approver}`, fields: 'id,username', paging: 'false' },
  });
  if (users.status !== 200) throw refused(target.server, `answered GET /api/users with HTTP ${users.status}: ${snippet(users.text)}`);
  const user = (users.body?.users ?? []).find((u) => u.username === approver && typeof u.id === 'string' && uidPattern.test(u.id));
  if (!user) return `${target.name} has no user "${approver}"`;

  const verb = { create: 'create', update: 'update', delete: 'delete' }[req.operation];
  const text = [
    `You are asked to approve a change on ${target.name}: ${verb} ${label(req.type, req.uid, req.name)}` +
      `${req.author ? ` (made on the source by ${req.author})` : ''}. The ticket "${ticketSubject(req)}" shows what changes.`,
    '',
    `Your own link (for ${approver} only):`,
    url,
    '',
    'It shows the change first; only the Approve or Reject button on that page decides. It works once, for this decision only, ' +
      `until ${new Date(req.expiresAt * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}. ` +
      'Do not forward it: whoever holds it decides in your name.',
    '',
    `Run: ${workflowId}.`,
  ].join('\n');
  const sent = await call(target.server, 'POST', 'messageConversations', {
    json: { subject: `[Runbooks org-unit sync] Your approval link: ${label(req.type, req.uid, req.name)} on ${target.name} ${tag}`.slice(-255), text, users: [{ id: user.id }] },
  });
  if (sent.status !== 201 && sent.status !== 200) throw refused(target.server, `did not take the private message to ${approver} (HTTP ${sent.status}): ${snippet(sent.text)}`);
  return undefined;
}

/** The first message of a ticket: what changes, where to review and edit it, who decides by when. */
function ticketText(target: Dhis2Target, req: TicketRequest, asked: string[], workflowId: string): string {
  const verb = { create: 'Create', update: 'Update', delete: 'Delete' }[req.operation];
  return [
    `${verb} ${label(req.type, req.uid, req.name)} on ${target.name}: this change waits for approval` +
      `${req.author ? ` (made on the source by ${req.author})` : ''}.`,
    '',
    req.operation === 'update' ? `What changes (* = needs approval: ${req.gatedFields.join(', ')}):` : `Every field (a ${req.operation} needs approval):`,
    ...diffLines(req.changes, req.gatedFields),
    '',
    `The draft import, which you may EDIT before approving (the edited draft is what gets applied; keep "operation" and the id):`,
    target.reviewLink(draftKey(req.type, req.uid)),
    '',
    `${req.quorum} approval(s) needed${!req.fourEyes ? '' : req.author ? `; four-eyes: ${req.author} may not approve`
      : '; four-eyes is on, but the source did not say who made this change, so it cannot be enforced'}. The change waits until ${req.deadline}.`,
    '',
    ...asked,
    '',
    `Run: ${workflowId}. Only this resource waits; other changes keep flowing.`,
  ].join('\n');
}

/** A reply in the ticket, and its new status when the decision is final. */
export async function tellTicket(target: Dhis2Target, ticket: string, text: string, status?: TicketStatus): Promise<void> {
  await target.reply(ticket, text);
  if (status) await target.setTicketStatus(ticket, status);
}

/** The activity: a reply in the ticket (and its status). */
export async function updateTicket(req: { target: string; ticket: string; text: string; status?: TicketStatus }): Promise<void> {
  await tellTicket(openTarget(req.target), req.ticket, req.text, req.status);
}
