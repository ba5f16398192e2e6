/**
 * Turning an imported JSON object into column values (with DHIS2's E4000/E4001 checks), and reading,
 * inserting and updating those columns. Column names come from the fixed specs in schema.ts; every
 * value travels as a query parameter.
 */
import { badRequest } from './http';
import { errors, type ErrorReport } from './import-report';
import type { ColumnSpec, ResourceSpec } from './schema';
import type { Db } from './store';

export type Values = Record<string, unknown>;

function asText(col: ColumnSpec, given: unknown): string | null {
  if (given === null || given === undefined) return null;
  if (typeof given === 'string') return given;
  if (typeof given === 'number' || typeof given === 'boolean') return String(given);
  throw badRequest(`JSON parse error: property \`${col.prop}\` must be a string`);
}

/** DHIS2 takes "2020-01-31", "2020-01-31T00:00:00.000" or epoch milliseconds; the column keeps the day. */
function asDay(col: ColumnSpec, given: unknown): string | null {
  if (given === null || given === undefined) return null;
  if (typeof given === 'number' && Number.isFinite(given)) return new Date(given).toISOString().slice(0, 10);
  const match = typeof given === 'string' ? /^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(given) : null;
  if (!match || Number.isNaN(Date.parse(`${match[1]}T00:00:00Z`))) {
    throw badRequest(`JSON parse error: property \`${col.prop}\` is not a date: ${JSON.stringify(given)}`);
  }
  return match[1];
}

function asBool(col: ColumnSpec, given: unknown): boolean {
  if (given === null || given === undefined) return col.fallback as boolean;
  if (typeof given === 'boolean') return given;
  if (given === 'true' || given === 'false') return given === 'true';
  throw badRequest(`JSON parse error: property \`${col.prop}\` must be a boolean`);
}

function asJson(col: ColumnSpec, given: unknown): unknown {
  if (given === null || given === undefined) return col.fallback ?? null;
  const ok = col.prop === 'translations' ? Array.isArray(given) : typeof given === 'object' && !Array.isArray(given) && typeof (given as { type?: unknown }).type === 'string';
  if (!ok) throw badRequest(`JSON parse error: property \`${col.prop}\` must be ${col.prop === 'translations' ? 'a list' : 'a GeoJSON object'}`);
  return given;
}

/** [{attribute:{id}, value}] in the API becomes {attributeUid: {value, attribute:{id}}} in the column, as in DHIS2. */
function asAttributes(col: ColumnSpec, given: unknown): Record<string, unknown> {
  if (given === null || given === undefined) return {};
  if (!Array.isArray(given)) throw badRequest(`JSON parse error: property \`${col.prop}\` must be a list`);
  const stored: Record<string, unknown> = {};
  for (const item of given) {
    const id = item?.attribute?.id;
    if (typeof id !== 'string') throw badRequest('JSON parse error: every attributeValue needs attribute.id');
    stored[id] = { value: item.value, attribute: { id } };
  }
  return stored;
}

/** The column values an imported object asks for, plus the validation errors DHIS2 would report. */
export function columnValues(res: ResourceSpec, raw: Record<string, unknown>): { values: Values; errors: ErrorReport[] } {
  const values: Values = {};
  const found: ErrorReport[] = [];
  for (const col of res.columns) {
    const given = raw[col.prop];
    let value: unknown;
    if (col.kind === 'text') value = asText(col, given);
    else if (col.kind === 'date') value = asDay(col, given);
    else if (col.kind === 'bool') value = asBool(col, given);
    else if (col.kind === 'json') value = asJson(col, given);
    else value = asAttributes(col, given);
    if (col.required && (value === null || value === '')) found.push(errors.missing(res, col.prop));
    else if (col.max && typeof value === 'string' && value.length > col.max) found.push(errors.tooLong(res, col.prop, col.max, value.length));
    values[col.column] = value;
  }
  return { values, errors: found };
}

const selectList = (res: ResourceSpec) => res.columns.map((c) => (c.kind === 'date' ? `to_char(${c.column}, 'YYYY-MM-DD') AS ${c.column}` : c.column)).join(', ');

/** The stored row of `uid`, locked for the rest of the transaction, or undefined. */
export async function lockRow(db: Db, res: ResourceSpec, uid: string, extra: string[] = []): Promise<Record<string, any> | undefined> {
  const { rows } = await db.query(
    `SELECT ${[`${res.idColumn} AS id`, 'uid', ...extra, selectList(res)].join(', ')} FROM ${res.table} WHERE uid = $1 FOR UPDATE`, [uid]);
  return rows[0];
}

/** jsonb parameters go as JSON text: node-postgres would otherwise send JS arrays as PostgreSQL arrays. */
function params(res: ResourceSpec, values: Values, extra: Values): { names: string[]; args: unknown[] } {
  const json = new Set(res.columns.filter((c) => c.kind === 'json' || c.kind === 'attributes').map((c) => c.column));
  const all = { ...values, ...extra };
  const names = Object.keys(all);
  return { names, args: names.map((n) => (json.has(n) && all[n] !== null ? JSON.stringify(all[n]) : all[n])) };
}

export async function insertRow(db: Db, res: ResourceSpec, values: Values, extra: Values): Promise<string> {
  const { names, args } = params(res, values, extra);
  const { rows } = await db.query(
    `INSERT INTO ${res.table} (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING ${res.idColumn} AS id`, args);
  return String(rows[0].id);
}

export async function updateRow(db: Db, res: ResourceSpec, id: string, values: Values, extra: Values): Promise<void> {
  const { names, args } = params(res, values, extra);
  await db.query(`UPDATE ${res.table} SET ${names.map((n, i) => `${n} = $${i + 2}`).join(', ')} WHERE ${res.idColumn} = $1`, [id, ...args]);
}
