/**
 * Serilog's default console template, which Firely Server and Firely Server Ingest both use:
 * `[HH:mm:ss LVL] message`. Parse these by level and substring, never by position.
 */
export type Level = 'VRB' | 'DBG' | 'INF' | 'WRN' | 'ERR' | 'FTL';

const pad = (n: number) => String(n).padStart(2, '0');

const LEVELS: Level[] = ['VRB', 'DBG', 'INF', 'WRN', 'ERR', 'FTL'];
let minimum: Level = 'VRB';
/** Lines below this level are not written (Serilog's MinimumLevel). */
export function setMinimumLevel(level: Level): void { minimum = level; }

export function log(level: Level, message: string): void {
  if (LEVELS.indexOf(level) < LEVELS.indexOf(minimum)) return;
  const now = new Date();
  const line = `[${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())} ${level}] ${message}\n`;
  process.stdout.write(line);
}

/** A .NET TimeSpan as it prints: 00:00:05, or 00:00:00.2000000 with a fraction. */
export function timeSpan(ms: number): string {
  const s = Math.floor(ms / 1000);
  const whole = `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  const frac = ms % 1000;
  return frac ? `${whole}.${String(frac * 10_000).padStart(7, '0')}` : whole;
}

/** A connection string with its password hidden, for logs. */
export const maskPassword = (url: string) => url.replace(/^(mongodb(?:\+srv)?:\/\/[^:/@]+:)[^@]*@/, '$1***@');
