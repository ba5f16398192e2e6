/** What an approval request says, whatever channel carries it. */

/** What a gate asks for: everything here is already in the run's history; the links are not. */
export interface ApprovalRequest {
  runbook: string;
  title: string;
  gate: string;
  /** Drawn by the gate when it opened; the links are bound to it. */
  nonce: string;
  summary: string;
  requestedBy?: string;
  /** When the gate stops waiting (ISO time). */
  deadline: string;
  /** When the links expire, seconds since the epoch (never after the deadline, at most 7 days). */
  expiresAt: number;
  /** e-mail: an address; webhook: the name of a webhook in the worker's configuration. */
  channel: 'email' | 'webhook';
  to: string;
  /** One link per approver; the link ids are drawn by the workflow, so a retried delivery sends the same links. */
  links: Array<{ approver: string; linkId: string }>;
}

export interface ApprovalMessage {
  subject: string;
  text: string;
  links: Array<{ approver: string; url: string }>;
}

export function composeMessage(req: ApprovalRequest, workflowId: string, urls: Array<{ approver: string; url: string }>): ApprovalMessage {
  const until = new Date(req.expiresAt * 1000).toISOString();
  const lines = [
    `${req.title}: approval needed for "${req.gate}".`,
    '',
    req.summary,
    '',
    `Run: ${workflowId}${req.requestedBy ? `, requested by ${req.requestedBy}` : ''}. The gate waits until ${req.deadline}.`,
    '',
    ...urls.flatMap((l) => [`To decide as ${l.approver}, open:`, l.url, '']),
    `The link shows the run's progress first; only the Approve or Reject button on that page decides.`,
    `It works once, for this gate of this run only, until ${until}. Do not forward it: whoever holds it decides in your name.`,
  ];
  return { subject: `Approval needed: ${req.title} — ${req.gate}`, text: lines.join('\n'), links: urls };
}
