/**
 * Times as people read them, one way everywhere (the approval pages, the CLI, the UI's current
 * details, tickets): readable UTC to the minute, "2026-12-07 13:08 UTC", and where the text is
 * made at the moment it is read, how far that is, "(in 1 h 59 min)" / "(3 min ago)".
 * Pure functions: workflows use them too (given their own clock).
 */

/** "2026-12-07 13:08 UTC" from an ISO string or milliseconds since the epoch; the input itself when it is not a time. */
export function utcText(t: string | number): string {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  if (!Number.isFinite(ms)) return String(t);
  return new Date(ms).toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');
}

/** "3 h 12 min", "45 s": how long, for people (whole units: "59 min" while a second of the hour is left). */
export function span(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} days ${h % 24} h`;
}

/** "2026-12-07 13:08 UTC (in 1 h 59 min)" or "... (3 min ago)", relative to `now`. */
export function whenText(t: string | number, now = Date.now()): string {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  if (!Number.isFinite(ms)) return String(t);
  return ms > now ? `${utcText(ms)} (in ${span(ms - now)})` : `${utcText(ms)} (${span(now - ms)} ago)`;
}
