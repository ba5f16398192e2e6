/**
 * The runbooks as the CLI sees them: name, title, input schema and example input.
 * Imports only the schemas, never workflow code.
 */
import type { z } from 'zod';

export interface CatalogEntry {
  /** The workflow type. */
  name: string;
  title: string;
  schema: z.ZodObject;
  /** The example input, relative to the repository root. */
  example: string;
}

export const catalog: CatalogEntry[] = [];
