/**
 * A target's transform: gets the source resource with server-computed fields already removed
 * (path, level, children, sharing, users, ...) and returns what this target should hold, with
 * the same id; or null when this target should not have it at all.
 */
import type { Resource, TransformContext } from '../../activities/dhis2/mapping';

export default function toTracker(resource: Resource, ctx: TransformContext): Resource | null {
  if (ctx.type !== 'organisationUnit') return resource;
  // The tracker instance keeps closed facilities out.
  if (resource.closedDate) return null;
  // It has no use for the attribute values of the registry.
  const { attributeValues: _ignored, ...rest } = resource;
  return rest as Resource;
}
