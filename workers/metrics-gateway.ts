/**
 * The approval gateway's metrics: pages served (by route and HTTP status), decisions by outcome
 * (approved, rejected, refused and why), sign-ins. Every label comes from a fixed list: a route
 * the gateway knows, a status it sends, a reason below; never a link, a run or a person.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Client } from '@temporalio/client';
import { Counter, type Registry } from 'prom-client';
import { metricsPort, processRegistry, serveMetrics } from './metrics';

const routes = new Set(['/', '/approve', '/oidc/callback', '/healthz']);

/**
 * Why a decision was refused, from the status the gateway answered with (each refusal page has
 * its status: approval-pages.ts, approvals.ts): nothing was sent for any of these.
 */
const refusedBecause: Record<number, string> = {
  400: 'incomplete_form', // no decision chosen, or a rejection without a reason
  401: 'not_signed_in',
  403: 'forbidden', // a forged or altered link, not signed in, or another approver's link
  404: 'no_such_run',
  409: 'conflict', // the gate is not open, another opening of it, already decided, link already used or in use
  410: 'expired_or_ended', // the link expired, or the run it was made for has ended
  413: 'too_large',
};

export class GatewayMetrics {
  private readonly responses: Counter<'route' | 'status'>;
  private readonly decisions: Counter<'outcome' | 'reason'>;
  private readonly signIns: Counter<'result'>;
  private readonly sent = new WeakMap<ServerResponse, 'approve' | 'reject'>();

  constructor(readonly registry: Registry) {
    this.responses = new Counter({
      name: 'runbooks_gateway_responses_total', labelNames: ['route', 'status'], registers: [registry],
      help: 'Pages and answers the approval gateway served, by route (/, /approve, /oidc/callback, /healthz, other) and HTTP status',
    });
    this.decisions = new Counter({
      name: 'runbooks_gateway_decisions_total', labelNames: ['outcome', 'reason'], registers: [registry],
      help: 'Decisions posted through approval links: approved, rejected, not_counted (the run ignored it), unconfirmed (sent, not yet counted), refused (nothing sent; reason says why)',
    });
    this.signIns = new Counter({
      name: 'runbooks_gateway_sign_ins_total', labelNames: ['result'], registers: [registry],
      help: 'Approver sign-ins through the OpenID Connect provider: succeeded or failed',
    });
    for (const result of ['succeeded', 'failed']) this.signIns.inc({ result }, 0);
  }

  /** Call first for every request: counts it when its answer is sent. */
  observe(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://gateway').pathname;
    const route = routes.has(path) ? path : 'other';
    res.once('finish', () => {
      const status = res.statusCode;
      this.responses.inc({ route, status: String(status) });
      if (route === '/oidc/callback') this.signIns.inc({ result: status < 400 ? 'succeeded' : 'failed' });
      if (route !== '/approve' || req.method !== 'POST') return;
      const decision = this.sent.get(res);
      if (decision && status === 200) this.decisions.inc({ outcome: decision === 'approve' ? 'approved' : 'rejected', reason: '' });
      else if (decision && status === 202) this.decisions.inc({ outcome: 'unconfirmed', reason: '' });
      else if (decision) this.decisions.inc({ outcome: 'not_counted', reason: '' });
      else this.decisions.inc({ outcome: 'refused', reason: refusedBecause[status] ?? (status >= 500 ? 'temporal_unreachable' : 'other') });
    });
  }

  /** The gateway signalled this decision to the run (before it waits for the run to count it). */
  decisionSent(res: ServerResponse, decision: 'approve' | 'reject'): void {
    this.sent.set(res, decision);
  }
}

/** With RUNBOOKS_GATEWAY_METRICS_PORT: the gateway's metrics and its /metrics, /healthz, /readyz (ready: Temporal answers). */
export async function startGatewayMetrics(client: Client): Promise<{ metrics: GatewayMetrics; url: string; close(): Promise<void> } | undefined> {
  const port = metricsPort('gateway');
  if (port === undefined) return undefined;
  const metrics = new GatewayMetrics(processRegistry());
  const endpoint = await serveMetrics({
    registry: metrics.registry, port,
    notReady: () => client.connection.withDeadline(Date.now() + 2_000, () => client.workflowService.getSystemInfo({}))
      .then(() => undefined, (err: Error) => `Temporal does not answer: ${err.message}`),
  });
  return { metrics, url: endpoint.url, close: () => endpoint.close() };
}
