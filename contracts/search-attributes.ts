import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Which runbook a run is (its workflow type, kept as a Keyword for filtering in the UI). */
export const RunbookName = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);
/** The stable name of the step the run is in now. */
export const RunbookStep = defineSearchAttributeKey('RunbookStep', SearchAttributeType.KEYWORD);
/** running, waiting_for_approval, compensating, completed, failed, cancelled, planned (dry-run). */
export const RunbookStatus = defineSearchAttributeKey('RunbookStatus', SearchAttributeType.KEYWORD);

/** What a run works on, in its own words: a DHIS2 target's name, a database host. */
export const RunbookTarget = defineSearchAttributeKey('RunbookTarget', SearchAttributeType.KEYWORD);
/** The one resource a long-lived run keeps in step, e.g. "organisationUnit:ImspTQPwCqd". */
export const RunbookResource = defineSearchAttributeKey('RunbookResource', SearchAttributeType.KEYWORD);

/** Every search attribute the runbooks write; the dev server and the worker register them. */
export const runbookSearchAttributes = [RunbookName, RunbookStep, RunbookStatus, RunbookTarget, RunbookResource];
