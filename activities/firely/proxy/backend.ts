/**
 * What every reverse proxy backend offers the Firely migration (one switch), and the check they
 * share: asking through the proxy which server answers.
 */
import { Context } from '@temporalio/activity';
import { request } from 'undici';
import type { ChangeReport } from '../../../contracts/messages';

export type SwitchReport = ChangeReport & { from?: string };

/** One proxy as the input names it: sends clients to `to` (host:port, already checked), or in a dry-run says it would. */
export interface ProxyBackend {
  switchTo(to: string, dryRun: boolean): Promise<SwitchReport>;
}

/** Where to ask through the proxy, and which response header names the server that answered. */
export interface Verify { verifyUrl: string; upstreamHeader: string }

/** One answer through the proxy: its status and the server that gave it. */
async function askThrough(p: Verify): Promise<{ status: number; upstream: string }> {
  const res = await request(p.verifyUrl, { headersTimeout: 5_000, bodyTimeout: 5_000 });
  await res.body.dump();
  return { status: res.statusCode, upstream: String(res.headers[p.upstreamHeader.toLowerCase()] ?? '') };
}

/** Whether the proxy answers from `server` now. */
export async function servedBy(p: Verify, server: string): Promise<boolean> {
  return askThrough(p).then((a) => a.upstream === server, () => false);
}

/**
 * Asks through the proxy until `consecutive` answers in a row come from `server` (any of its
 * spellings: the proxy may name it by address where the input names it by host name); requests in
 * flight elsewhere finish meanwhile (old nginx workers after a reload, a draining HAProxy server).
 */
export async function untilServedBy(p: Verify, server: string[], hint: string, consecutive = 20, withinMs = 60_000): Promise<void> {
  const started = Date.now();
  let streak = 0;
  let last = '';
  while (streak < consecutive) {
    try {
      const { status, upstream } = await askThrough(p);
      last = `${status} from ${upstream || `no ${p.upstreamHeader} header`}`;
      streak = server.includes(upstream) && status < 500 ? streak + 1 : 0;
    } catch (err) {
      last = (err as Error).message;
      streak = 0;
    }
    if (Date.now() - started > withinMs) {
      throw new Error(`${p.verifyUrl} is not served by ${server[0]} after the switch (last answer: ${last}). ${hint}`);
    }
    Context.current().heartbeat();
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
