/** Quoting for remote shell commands: every argument that is not a plain word is single-quoted. */
export function shq(arg: string | number): string {
  const s = String(arg);
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line from words, each quoted as needed. */
export const cmd = (...words: Array<string | number>): string => words.map(shq).join(' ');
