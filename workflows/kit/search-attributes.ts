import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Which runbook a run is (its workflow type, kept as a Keyword for filtering in the UI). */
export const RunbookName = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);
/** The stable name of the step the run is in now. */
export const RunbookStep = defineSearchAttributeKey('RunbookStep', SearchAttributeType.KEYWORD);
/** running, waiting_for_approval, compensating, completed, failed, cancelled, planned (dry-run). */
export const RunbookStatus = defineSearchAttributeKey('RunbookStatus', SearchAttributeType.KEYWORD);

/** Every search attribute the runbooks write; the dev server and the worker register them. */
export const runbookSearchAttributes = [RunbookName, RunbookStep, RunbookStatus];
