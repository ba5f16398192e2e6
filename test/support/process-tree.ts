/** Which processes a process started (children, grandchildren...), and whether one still runs: to prove nothing is left behind. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* exited meanwhile */ }
  }
  const found: number[] = [];
  const walk = (p: number) => { for (const [child, parent] of parents) if (parent === p) { found.push(child); walk(child); } };
  walk(pid);
  return found;
}

export function alive(pid: number): boolean {
  try {
    return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}
