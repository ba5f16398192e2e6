/**
 * Writes the JSON Schema of every runbook's input (from its zod schema) to schemas/<runbook>.schema.json.
 * `npm run schemas -- --check` exits 1 when a committed schema is out of date.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { catalog, type CatalogEntry } from '../contracts/catalog';

const repoRoot = path.resolve(__dirname, '..');

export function jsonSchemaOf(entry: CatalogEntry): string {
  const schema = z.toJSONSchema(entry.schema, { io: 'input', unrepresentable: 'any' });
  return `${JSON.stringify({ ...schema, title: entry.name, description: entry.title }, null, 2)}\n`;
}

export const schemaPath = (entry: CatalogEntry): string => path.join(repoRoot, 'schemas', `${entry.name}.schema.json`);

export function staleSchemas(entries: CatalogEntry[] = catalog): string[] {
  return entries.filter((e) => !existsSync(schemaPath(e)) || readFileSync(schemaPath(e), 'utf8') !== jsonSchemaOf(e)).map((e) => e.name);
}

if (require.main === module) {
  if (process.argv.includes('--check')) {
    const stale = staleSchemas();
    if (stale.length) {
      console.error(`Out of date: ${stale.join(', ')}. Run npm run schemas and commit schemas/.`);
      process.exit(1);
    }
    console.log(`${catalog.length} schemas up to date`);
  } else {
    mkdirSync(path.join(repoRoot, 'schemas'), { recursive: true });
    for (const entry of catalog) {
      writeFileSync(schemaPath(entry), jsonSchemaOf(entry));
      console.log(`wrote ${path.relative(repoRoot, schemaPath(entry))}`);
    }
  }
}
