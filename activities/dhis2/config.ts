/**
 * The org-unit sync configuration (ORGUNIT_SYNC_CONFIG, a JSON file): the source DHIS2 and its
 * database, and the targets. Read by the worker and by the change listener; checked at their
 * start so a bad file stops them naming every bad field. Credentials are secret references only.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { httpBaseUrl } from '../../contracts/endpoints';
import { describeIssues, duration, linkTtl, secretRef } from '../../contracts/input';
import { parseFieldName, resourceTypes, uidPattern } from '../../contracts/dhis2/resources';
import { idScheme } from '../../contracts/dhis2/schema';

export const syncConfigEnv = 'ORGUNIT_SYNC_CONFIG';

/** Slot and publication names go into replication commands that cannot take parameters: plain identifiers only. */
const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case identifier: letters, digits, _ (at most 63)');

const apiUrl = httpBaseUrl
  .transform((u) => u.replace(/\/+$/, '').replace(/\/api$/, ''))
  .describe('The DHIS2 server\'s base URL (without /api)');

const apiAuth = z.union([
  z.strictObject({ token: secretRef.describe('A personal access token (d2pat_...), sent as "Authorization: ApiToken"') }),
  z.strictObject({ basic: z.strictObject({ username: z.string().min(1).max(200), password: secretRef }) }),
], { error: 'give {"token": {"secret": ...}} or {"basic": {"username": ..., "password": {"secret": ...}}}' });
export type ApiAuth = z.infer<typeof apiAuth>;

const approvalField = z.string().refine((f) => parseFieldName(f) !== undefined, {
  error: 'a field as "organisationunit.shortname" (table.column) or "organisationUnit.shortName" (type.field) of a synced resource',
});

/** Who decides a change to a field that needs approval, and how long they have. */
const approvalSettings = z.strictObject({
  approvers: z.array(z.string().trim().min(1).max(200)).min(1).max(20)
    .describe('The target DHIS2\'s usernames of the approvers: each gets a signed link in the ticket'),
  quorum: z.number().int().min(1).max(20).default(1).describe('Distinct approvals needed'),
  fourEyes: z.boolean().default(false).describe('The source user who made the change may not approve it'),
  timeout: duration.default('72h').describe('How long a change waits for a decision'),
  onTimeout: z.enum(['reject', 'apply', 'park']).default('reject')
    .describe('reject: apply nothing; apply: apply the draft as it is then; park: wait for retry or drop'),
  linkTtl: linkTtl.optional().describe('How long the links live (default: until the timeout, at most 7d)'),
  assignee: z.string().regex(uidPattern, 'a DHIS2 user uid').optional()
    .describe('The target DHIS2 user each approval ticket is assigned to (the reference app\'s messageConversationUserId); must be in the target\'s feedback recipients group'),
}).refine((a) => a.quorum <= a.approvers.length, { message: 'quorum is more than there are approvers', path: ['quorum'] });
export type ApprovalSettings = z.infer<typeof approvalSettings>;

const target = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'lower-case letters, digits and -, at most 31 (it is part of workflow ids)'),
  baseUrl: apiUrl,
  auth: apiAuth,
  operations: z.array(z.enum(['create', 'update', 'delete'])).min(1).default(['create', 'update', 'delete'])
    .describe('Which changes this target takes'),
  resources: z.array(z.enum(resourceTypes)).min(1).default([...resourceTypes]).describe('Which resource types this target takes'),
  idScheme: idScheme.default('UID')
    .describe('How this target\'s objects are matched with the source\'s: UID (same uids) or CODE (same codes, the target\'s own uids)'),
  fieldsRequireApproval: z.array(approvalField).default([])
    .describe('Changes to these fields wait for a human approval; a create or delete counts as changing every field'),
  approval: approvalSettings.optional().describe('Who approves changes to fieldsRequireApproval (required when it lists fields)'),
  transform: z.string().min(1).optional()
    .describe('A TypeScript or JavaScript module (path relative to this file) whose default export maps a source resource for this target'),
  notify: z.strictObject({
    users: z.array(z.string().regex(uidPattern, 'a DHIS2 user uid')).default([]),
    userGroups: z.array(z.string().regex(uidPattern, 'a DHIS2 user group uid')).default([]),
    on: z.array(z.enum(['success', 'failure'])).default(['success', 'failure']),
  }).default({ users: [], userGroups: [], on: ['success', 'failure'] })
    .describe('Who hears about each sync through the target\'s messaging (/api/messageConversations)'),
  retry: z.strictObject({
    giveUpAfter: duration.default('24h').describe('How long a change keeps retrying while the target is down or failing'),
    maximumInterval: duration.default('5m'),
  }).default({ giveUpAfter: '24h', maximumInterval: '5m' }),
  concurrency: z.number().int().min(1).max(64).default(8).describe('Requests in flight to this target at most'),
});
export type SyncTarget = z.infer<typeof target>;

export const syncConfigSchema = z.strictObject({
  source: z.strictObject({
    baseUrl: apiUrl,
    auth: apiAuth,
    database: z.strictObject({
      host: z.string().min(1).max(253),
      port: z.number().int().min(1).max(65535).default(5432),
      database: z.string().min(1).max(63),
      user: z.string().min(1).max(63).describe('A role with REPLICATION (orgUnitSyncSetup creates it)'),
      password: secretRef,
      ssl: z.enum(['disable', 'require', 'verify-full']).default('disable'),
      slot: identifier.default('runbooks_orgunit_sync'),
      publication: identifier.default('runbooks_orgunit_sync'),
    }),
  }),
  targets: z.array(target).min(1),
  listener: z.strictObject({
    statusPort: z.number().int().min(0).max(65535).default(7240).describe('Loopback port of the listener\'s status (lag) endpoint; 0 for any'),
    lagLogEvery: duration.default('30s'),
  }).default({ statusPort: 7240, lagLogEvery: '30s' }),
  idleAfter: duration.default('10m').describe('A resource\'s sync workflow ends after this long without changes'),
  batches: z.boolean().default(false).describe('Apply captured changes in batches, one workflow per target (orgUnitBatch): one bulk read and one metadata import for many changes; only a resource that needs more (approval, a refusal, a missing reference, a delete) gets a sync workflow of its own'),
});
export type SyncConfig = z.infer<typeof syncConfigSchema> & { file: string };

/** What one field alone cannot tell; run on the raw file too, so every problem is named in one go. */
function crossChecks(raw: unknown, dir: string): string[] {
  const problems: string[] = [];
  const c = raw as { source?: { baseUrl?: unknown }; targets?: unknown };
  if (!Array.isArray(c?.targets)) return problems;
  const seen = new Set<unknown>();
  c.targets.forEach((t: { name?: unknown; baseUrl?: unknown; transform?: unknown }, i) => {
    if (t?.name !== undefined && seen.has(t.name)) problems.push(`targets.${i}.name: "${String(t.name)}" is used by two targets`);
    seen.add(t?.name);
    if (typeof t?.baseUrl === 'string' && t.baseUrl === c.source?.baseUrl) problems.push(`targets.${i}.baseUrl: is the source itself`);
    if (typeof t?.transform === 'string' && !existsSync(path.resolve(dir, t.transform))) problems.push(`targets.${i}.transform: ${t.transform} does not exist (relative to ${dir})`);
    const gated = (t as { fieldsRequireApproval?: unknown }).fieldsRequireApproval;
    if (Array.isArray(gated) && gated.length && !(t as { approval?: unknown }).approval) {
      problems.push(`targets.${i}.approval: required when fieldsRequireApproval lists fields (who approves, quorum, timeout)`);
    }
  });
  return problems;
}

let cached: { file: string; mtimeMs: number; config: SyncConfig } | undefined;

/** The configuration, checked; throws (non-retryable) naming every bad field. */
export function loadSyncConfig(file = process.env[syncConfigEnv]): SyncConfig {
  if (!file) throw ApplicationFailure.nonRetryable(`${syncConfigEnv} is not set: the worker has no org-unit sync configuration`, 'SyncConfig');
  const abs = path.resolve(file);
  let text: string;
  try { text = readFileSync(abs, 'utf8'); } catch (err) {
    throw ApplicationFailure.nonRetryable(`${syncConfigEnv}=${file} cannot be read: ${(err as Error).message}`, 'SyncConfig');
  }
  let raw: unknown;
  // Whole-line // comments are allowed, so the example can explain itself.
  try { raw = JSON.parse(text.replace(/^\s*\/\/.*$/gm, '')); } catch (err) {
    throw ApplicationFailure.nonRetryable(`${syncConfigEnv}=${file} is not JSON: ${(err as Error).message}`, 'SyncConfig');
  }
  const parsed = syncConfigSchema.safeParse(raw);
  const problems = [...(parsed.success ? [] : describeIssues(parsed.error)), ...crossChecks(raw, path.dirname(abs))];
  if (problems.length) {
    throw ApplicationFailure.nonRetryable(`${syncConfigEnv}=${file} is not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`, 'SyncConfig');
  }
  return { ...parsed.data!, file: abs };
}

/** The configuration, re-read when the file changes (activities call this on every use). */
export function currentSyncConfig(): SyncConfig {
  const file = process.env[syncConfigEnv];
  if (!file) return loadSyncConfig(file);
  const abs = path.resolve(file);
  let mtimeMs = -1;
  try { mtimeMs = statSync(abs).mtimeMs; } catch { /* loadSyncConfig names the problem */ }
  if (cached && cached.file === abs && cached.mtimeMs === mtimeMs) return cached.config;
  const config = loadSyncConfig(file);
  cached = { file: abs, mtimeMs, config };
  return config;
}

export function targetNamed(config: SyncConfig, name: string): SyncTarget {
  const t = config.targets.find((x) => x.name === name);
  if (!t) {
    throw ApplicationFailure.nonRetryable(
      `Target "${name}" is not in ${config.file} (targets: ${config.targets.map((x) => x.name).join(', ')}): was it removed? Nothing was sent.`, 'SyncConfig');
  }
  return t;
}
