/**
 * The processes' log lines. RUNBOOKS_LOG_FORMAT=json (the default) writes one JSON object per
 * line: time, level, message, then workflowId, runId, runbook and step where known, then the
 * rest of what the line is about. RUNBOOKS_LOG_FORMAT=text writes the same as a readable line.
 *
 * Whatever a message carries, no secret the process holds reaches the log: the values of the
 * secrets in its environment (RUNBOOKS_SECRET_*, APPROVAL_SECRET, ...) and in RUNBOOKS_SECRETS_DIR,
 * and the token of an approval or inbox link, are replaced by "<redacted>".
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export type LogLevel = 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
export type LogFormat = 'json' | 'text';
export const logFormatEnv = 'RUNBOOKS_LOG_FORMAT';

/** RUNBOOKS_LOG_FORMAT, checked: a typo stops the process at start, naming the variable. */
export function logFormat(value = process.env[logFormatEnv]): LogFormat {
  if (value === undefined || value === '' || value === 'json') return 'json';
  if (value === 'text') return 'text';
  throw new Error(`${logFormatEnv} is "${value}": write json (one JSON object per line) or text`);
}

/** Environment variables that hold a secret's value (not a path to one). */
const secretEnv = /^(RUNBOOKS_SECRET_.+|APPROVAL_SECRET|APPROVAL_INBOX_TOKEN|APPROVAL_OIDC_CLIENT_SECRET|TEMPORAL_API_KEY|PGPASSWORD)$/;
/** A signed link's token in a URL or a form (?t=..., &t=...), and an Authorization header's credential. */
const tokenInText = /([?&]t=)[A-Za-z0-9_.~%-]{16,}|((?:Bearer|ApiToken|Basic) )[A-Za-z0-9_.~+/=-]{8,}/g;

let known: string[] | undefined;

/** The secret values this process could hold, longest first (read once). */
function secretValues(): string[] {
  if (known) return known;
  const values = Object.entries(process.env).filter(([k, v]) => secretEnv.test(k) && v).map(([, v]) => v!);
  const dir = process.env.RUNBOOKS_SECRETS_DIR;
  if (dir) {
    try {
      for (const name of readdirSync(dir)) {
        try { values.push(readFileSync(path.join(dir, name), 'utf8').replace(/\r?\n$/, '')); } catch { /* not a readable file */ }
      }
    } catch { /* no such directory: the worker says so when a secret is needed */ }
  }
  known = [...new Set(values.filter((v) => v.length >= 6))].sort((a, b) => b.length - a.length);
  return known;
}

/** The text with every secret value and link token replaced. */
export function redact(text: string): string {
  let out = text.replace(tokenInText, (_m, q?: string, scheme?: string) => `${q ?? scheme}<redacted>`);
  for (const v of secretValues()) if (out.includes(v)) out = out.split(v).join('<redacted>');
  return out;
}

/**
 * The SDK's names for a run (workflowId, runId or workflowRunId, workflowType) made the same for
 * every line: workflowId, runId, runbook, step.
 */
function context(meta: Record<string, unknown>): Record<string, unknown> {
  const { workflowId, runId, workflowRunId, workflowType, runbook, step, ...rest } = meta;
  const known = { workflowId, runId: runId ?? workflowRunId, runbook: runbook ?? workflowType, step };
  return { ...Object.fromEntries(Object.entries(known).filter(([, v]) => v !== undefined && v !== null && v !== '')), ...rest };
}

const plain = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? v.message : v);

/** One log line, ending in a newline, in the given format. */
export function formatLine(format: LogFormat, level: string, message: string, meta: Record<string, unknown> = {}, time = new Date()): string {
  const fields = context(meta);
  if (format === 'json') return `${redact(JSON.stringify({ time: time.toISOString(), level, message, ...fields }, plain))}\n`;
  const rest = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v, plain)}`).join(' ');
  return `${redact(`${time.toISOString()} ${level.padEnd(5)} ${message}${rest ? `  ${rest}` : ''}`)}\n`;
}

export type Log = (level: 'info' | 'warn' | 'error', message: string, meta?: object) => void;

/** A process's log, on stdout, in RUNBOOKS_LOG_FORMAT. */
export function processLog(format: LogFormat = logFormat()): Log {
  return (level, message, meta = {}) => { process.stdout.write(formatLine(format, level.toUpperCase(), message, meta as Record<string, unknown>)); };
}
