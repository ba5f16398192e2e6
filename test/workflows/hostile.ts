/**
 * The health probes of the IRIS switchover and the Firely migration's first questions, asked of
 * URLs the test chooses (hostile peers): each activity once, every outcome returned.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { FirelyActivities } from '../../activities/firely';
import type { IrisActivities } from '../../activities/iris';
import type { IrisNode } from '../../contracts/iris/schema';

const once = proxyActivities<IrisActivities & FirelyActivities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 1 } });

export interface ProbeTargets {
  /** mirror_status.cxw of the "new primary", then of the "others" */
  statusUrls: string[];
  applicationUrl: string;
  fhirUrls: string[];
}

/** What each probe ended with: its result, or its failure's message. */
export async function probeHostilePeers(t: ProbeTargets): Promise<Record<string, string>> {
  const node = (url: string, i: number) => ({ name: `node${i}`, address: '127.0.0.1', mirrorStatusUrl: url }) as unknown as IrisNode;
  const [primary, ...others] = t.statusUrls.map(node);
  const calls: Record<string, Promise<unknown>> = {
    iris: once.verifyFromOutside({ primary, others, applicationUrl: t.applicationUrl, withinSeconds: 1, dryRun: false }),
  };
  t.fhirUrls.forEach((url, i) => {
    calls[`fhirCheck${i}`] = once.checkOldServer({ baseUrl: url });
    calls[`fhirCount${i}`] = once.countBoth({ oldUrl: url, newUrl: url, types: ['Patient'] });
  });
  const out: Record<string, string> = {};
  await Promise.all(Object.entries(calls).map(async ([name, p]) => {
    out[name] = await p.then((r) => `ok: ${JSON.stringify(r)}`, (err: { cause?: { message?: string }; message: string }) => err.cause?.message ?? err.message);
  }));
  return out;
}
