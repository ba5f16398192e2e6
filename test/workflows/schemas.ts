/** Input schemas of the test runbooks (imported by the test catalog and the workflows). */
import { z } from 'zod';
import { approvalPolicyFields, approversCoverNotify, runbookInputFields } from '../../contracts/input';

export const echoInput = z.strictObject({ message: z.string().min(1) });

export const journaledInput = z.strictObject({
  journal: z.string().min(1),
  /** How long the middle activity works (heartbeating), so a test can kill the worker during it. */
  slowMs: z.number().int().min(0).default(0),
});

export const gatedInput = z.strictObject({
  ...runbookInputFields,
  journal: z.string().min(1).describe('The fake target: a file where every change is recorded'),
  gate: approversCoverNotify(z.strictObject({
    ...approvalPolicyFields,
    timeout: approvalPolicyFields.timeout.removeDefault().default('1h'),
    onTimeout: z.enum(['fail', 'return']).default('fail'),
  })).default({ quorum: 1, fourEyes: false, timeout: '1h', onTimeout: 'fail', notify: [] }),
  /** Make the step after the gate fail, to exercise compensation. */
  failAfterGate: z.boolean().default(false),
  /** Make the take-down step wait (heartbeating) this long, so a test can cancel the run during it. */
  slowTakeDownMs: z.number().int().min(0).default(0),
});
export type GatedInput = z.infer<typeof gatedInput>;
