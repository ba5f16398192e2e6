/**
 * orgUnitSnapshot: the initial load of one target from the source, org units level by level
 * (parents before children), then groups, then group sets. Resumes at the page it reached;
 * pages are imported by uid, so a page sent twice changes nothing.
 */
import { workflowInfo } from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import type { Dhis2Activities } from '../../activities/dhis2';
import type { PageResult } from '../../activities/dhis2/snapshot';
import { runbookActivities } from '../kit/activities';
import { defineRunbook, type StepContext } from '../kit/runbook';
import { resourceTypes, syncActivityQueue, type ResourceType } from '../../contracts/dhis2/resources';
import { snapshotInput } from '../../contracts/dhis2/schema';

const check = runbookActivities<Dhis2Activities>('check', { retry: { maximumAttempts: 5 } });

const stepOf: Record<ResourceType, 'orgUnits' | 'groups' | 'groupSets'> = {
  organisationUnit: 'orgUnits', organisationUnitGroup: 'groups', organisationUnitGroupSet: 'groupSets',
};
const plural: Record<ResourceType, string> = { organisationUnit: 'org units', organisationUnitGroup: 'groups', organisationUnitGroupSet: 'group sets' };

export const orgUnitSnapshot = defineRunbook({
  name: 'orgUnitSnapshot',
  title: 'Copy every org unit, group and group set from the source DHIS2 to a target',
  schema: snapshotInput,
  steps: {
    preflight: 'Check the target and count the source',
    orgUnits: 'Org units, parents before children',
    groups: 'Org unit groups',
    groupSets: 'Org unit group sets',
  },
  lockKeys: (input) => [`dhis2:${input.target}`],
}, async (rb, input) => {
  const { target, pageSize, dryRun } = input;
  const { counts } = await rb.step('preflight', () => check.checkSnapshotTarget({ target }));
  // The target's own queue: its slots, its concurrency; never more than 5 minutes without a worker for it.
  const onTarget = runbookActivities<Dhis2Activities>('act', {
    taskQueue: syncActivityQueue(workflowInfo().taskQueue, target), heartbeatTimeout: '20 seconds', scheduleToStartTimeout: '5 minutes',
    retry: { maximumAttempts: 10, maximumInterval: '2 minutes' },
  });

  const failures: PageResult['errors'] = [];
  const totals: Record<string, Omit<PageResult, 'errors'> & { errors: number }> = {};
  for (const type of resourceTypes) {
    if (counts[type] === undefined) { rb.skip(stepOf[type], `target ${target} does not take ${plural[type]}`); continue; }
    totals[type] = await rb.step(stepOf[type], async (step: StepContext) => {
      const sum = { read: 0, sent: 0, created: 0, updated: 0, ignored: 0, errors: 0 };
      const pages = Math.ceil(counts[type] / pageSize);
      for (let page = 1; page <= pages; page++) {
        const r = await onTarget.copyPage({ target, type, page, pageSize, dryRun });
        sum.read += r.read; sum.sent += r.sent; sum.created += r.created; sum.updated += r.updated; sum.ignored += r.ignored; sum.errors += r.errors.length;
        failures.push(...r.errors.slice(0, Math.max(0, 50 - failures.length)));
        step.progress(`${sum.read}/${counts[type]} ${plural[type]}${dryRun ? ' validated' : ''}: ${sum.created} created, ${sum.updated} updated, ${sum.ignored} ignored`);
      }
      return sum;
    });
  }
  if (failures.length) {
    throw ApplicationFailure.nonRetryable(`${target} refused ${Object.values(totals).reduce((n, t) => n + t.errors, 0)} resource(s); everything else was copied. ` +
      `First: ${failures.slice(0, 5).map((f) => `${f.uid ?? '?'} ${f.code} ${f.message}`).join('; ')}`, 'SnapshotIncomplete');
  }
  return { target, ...totals };
});
