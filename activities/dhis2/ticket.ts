/**
 * The TICKET that asks for a gated change's approval, in the target's messaging
 * (/api/messageConversations/feedback): the field diff, the review link and one signed link per
 * approver. The links are signed here and go only to the target's ticket: they never return to
 * the workflow.
 */
import { ApplicationFailure } from '@temporalio/common';
import { diffLines } from '../../contracts/dhis2/render';
import type { ResourceType } from '../../contracts/dhis2/resources';
import { signLinksForThisRun } from '../approvals/links';
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

const label = (type: ResourceType, uid: string, name?: string) => `${type} ${name ? `'${name}' (${uid})` : uid}`;

/** The subject names the gate opening, so the ticket can be found again (the feedback API does not return its id). */
export const ticketSubject = (req: Pick<TicketRequest, 'type' | 'uid' | 'name' | 'target' | 'nonce'>) =>
  `[Runbooks org-unit sync] Approval needed: ${label(req.type, req.uid, req.name)} on ${req.target} [ref ${req.nonce.slice(0, 8)}]`.slice(0, 255);

/**
 * The approval request as a ticket in the target (a channel of the gate): the diff, the review
 * link, and one signed link per approver, each bound to this opening of this gate of this run.
 * Returns the ticket's id. Retried safely: a ticket already opened for this gate opening is reused.
 */
export async function openApprovalTicket(req: TicketRequest): Promise<{ ref: string }> {
  const target = openTarget(req.target);
  const { workflowId, urls: links } = signLinksForThisRun(req, 'openApprovalTicket');
  const until = new Date(req.expiresAt * 1000).toISOString();
  const linkLines = [
    ...links.flatMap((l) => [`To decide as ${l.approver}, open:`, l.url, '']),
    `Each link shows the change first; only the Approve or Reject button on that page decides. A link works once, for this decision only, until ${until}.`,
    'Do not forward a link: whoever holds it decides in that approver\'s name.',
  ];
  if (req.ticket) {
    await target.reply(req.ticket, [req.preface ?? 'New approval links:', '', ...linkLines].join('\n'));
    return { ref: req.ticket };
  }
  const ref = req.nonce.slice(0, 8);
  let opened = await target.findTicket(ref);
  if (!opened) {
    await target.openTicket(ticketSubject(req), ticketText(target, req, linkLines, workflowId));
    opened = await target.findTicket(ref);
    if (!opened) throw ApplicationFailure.retryable(`DHIS2 ${target.name} took the approval ticket but does not list it yet`, 'Dhis2Unavailable');
  }
  // Assigning again is harmless, so a retry after the ticket was opened still assigns it.
  const { assignee } = target.settings.approval ?? {};
  if (assignee) await target.assignTicket(opened, assignee);
  return { ref: opened };
}

/** The first message of a ticket: what changes, where to review and edit it, who decides by when, and the links. */
function ticketText(target: Dhis2Target, req: TicketRequest, linkLines: string[], workflowId: string): string {
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
    ...linkLines,
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
