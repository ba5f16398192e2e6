/**
 * From a source resource to what a target should hold: strip what the server computes or what
 * belongs to one instance, then the target's own transform module (if the config names one).
 * And the comparison that decides whether anything needs sending.
 */
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { ResourceType } from '../../contracts/dhis2/resources';
import type { SyncConfig, SyncTarget } from './config';

export type Resource = Record<string, unknown> & { id: string };

/**
 * Never imported or compared: computed by the server (path, level, children, ancestors, leaf,
 * displayName, timestamps and their users), or instance-specific (sharing, users, dataSets,
 * programs). The non-owning side of a membership is dropped too: a group owns its members and
 * a group set its groups, so those are synced with the group and the group set.
 */
const stripped = ['path', 'level', 'children', 'ancestors', 'leaf', 'displayName', 'displayShortName', 'created', 'lastUpdated', 'createdBy',
  'lastUpdatedBy', 'sharing', 'users', 'dataSets', 'programs', 'href', 'access', 'favorite', 'favorites', 'user'];
const notOwned: Record<ResourceType, string[]> = {
  organisationUnit: ['organisationUnitGroups'],
  organisationUnitGroup: ['groupSets'],
  organisationUnitGroupSet: [],
};

export function stripComputed(type: ResourceType, resource: Resource): Resource {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(resource)) {
    if (!stripped.includes(k) && !notOwned[type].includes(k)) out[k] = v;
  }
  return out as Resource;
}

export interface TransformContext { type: ResourceType; target: string }
/** A target's transform module: its default export. Returning null means "this target does not take this resource". */
export type Transform = (resource: Resource, ctx: TransformContext) => Resource | null | Promise<Resource | null>;

const transforms = new Map<string, Transform>();

async function loadTransform(config: SyncConfig, target: SyncTarget): Promise<Transform | undefined> {
  if (!target.transform) return undefined;
  const file = path.resolve(path.dirname(config.file), target.transform);
  let fn = transforms.get(file);
  if (!fn) {
    let mod: { default?: unknown };
    try { mod = await import(file); } catch (err) {
      throw ApplicationFailure.nonRetryable(`Transform ${file} of target ${target.name} cannot be loaded: ${(err as Error).message}`, 'MappingFailed');
    }
    const exported = (mod.default as { default?: unknown } | undefined)?.default ?? mod.default;
    if (typeof exported !== 'function') throw ApplicationFailure.nonRetryable(`Transform ${file} of target ${target.name} has no default export function`, 'MappingFailed');
    fn = exported as Transform;
    transforms.set(file, fn);
  }
  return fn;
}

/** The source resource as this target should hold it; null when the target's transform leaves it out. */
export async function mapForTarget(config: SyncConfig, target: SyncTarget, type: ResourceType, source: Resource): Promise<Resource | null> {
  const base = stripComputed(type, source);
  const transform = await loadTransform(config, target);
  if (!transform) return base;
  let mapped: Resource | null;
  try { mapped = await transform(structuredClone(base), { type, target: target.name }); } catch (err) {
    throw ApplicationFailure.nonRetryable(`The transform of target ${target.name} failed on ${type} ${source.id}: ${(err as Error).message}`, 'MappingFailed');
  }
  if (mapped === null) return null;
  if (typeof mapped !== 'object' || mapped.id !== source.id) {
    throw ApplicationFailure.nonRetryable(`The transform of target ${target.name} must return the ${type} with the same id (${source.id}) or null`, 'MappingFailed');
  }
  return mapped;
}

/** JSON with sorted keys, references sorted by id and absent-vs-null-vs-empty made one: equal meaning, equal text. */
export function canonical(value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = value.map(canonical);
    const byId = items.every((i) => typeof i === 'object' && i !== null && typeof (i as { id?: unknown }).id === 'string');
    return byId ? [...items].sort((a, b) => String((a as { id: string }).id).localeCompare(String((b as { id: string }).id))) : items;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = canonical((value as Record<string, unknown>)[k]);
      if (!isEmpty(v)) out[k] = v;
    }
    return out;
  }
  return value;
}
const isEmpty = (v: unknown) => v === null || v === undefined || v === '' || (Array.isArray(v) && v.length === 0)
  || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

export interface FieldChange { field: string; old?: unknown; new?: unknown }

/** The top-level fields whose values differ between what the target holds and what it should hold. */
export function diffFields(current: Resource | undefined, wanted: Resource | undefined): FieldChange[] {
  const a = (canonical(current ?? {}) as Record<string, unknown>);
  const b = (canonical(wanted ?? {}) as Record<string, unknown>);
  const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return fields.filter((f) => JSON.stringify(a[f]) !== JSON.stringify(b[f])).map((f) => ({ field: f, old: a[f], new: b[f] }));
}
