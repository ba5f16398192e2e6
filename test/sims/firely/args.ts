/** A small `--name value` parser shared by the simulators' entry points. */

export class UsageError extends Error {}

/**
 * Parses `--name value` and `--name=value` pairs (and the given aliases, e.g. `-l` for `--limit`).
 * An option not in `known` is an error, as System.CommandLine reports it. A boolean option (in
 * `booleans`) may stand alone, meaning true, as System.CommandLine allows.
 */
export function parseOptions(argv: string[], known: string[], aliases: Record<string, string> = {}, booleans: string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const name = aliases[flag] ?? flag;
    if (!known.includes(name)) throw new UsageError(`Unrecognized command or argument '${raw}'.`);
    let value: string | undefined;
    if (eq > 0) value = raw.slice(eq + 1);
    else {
      value = argv[i + 1];
      const missing = value === undefined || (value.startsWith('-') && value.length > 1 && !/^-\d/.test(value));
      if (missing && booleans.includes(name)) value = 'true';
      else if (missing) throw new UsageError(`Required argument missing for option: '${flag}'.`);
      else i++;
    }
    if (out.has(name)) throw new UsageError(`Option '${flag}' expects a single argument but 2 were provided.`);
    out.set(name, value);
  }
  return out;
}

/** A boolean option as .NET parses it: true or false, any case. */
export function boolOption(opts: Map<string, string>, name: string, fallback: boolean): boolean {
  const raw = opts.get(name);
  if (raw === undefined) return fallback;
  if (/^true$/i.test(raw)) return true;
  if (/^false$/i.test(raw)) return false;
  throw new UsageError(`Cannot parse argument '${raw}' for option '${name}' as expected type 'System.Boolean'.`);
}

/** An enum option, matched case-insensitively as .NET's Enum.Parse does; returns the canonical spelling. */
export function enumOption<T extends string>(opts: Map<string, string>, name: string, values: readonly T[], fallback: T): T {
  const raw = opts.get(name);
  if (raw === undefined) return fallback;
  const value = values.find((v) => v.toLowerCase() === raw.toLowerCase());
  if (!value) throw new UsageError(`Cannot parse argument '${raw}' for option '${name}'. Expected one of: ${values.join(', ')}.`);
  return value;
}

export function intOption(opts: Map<string, string>, name: string, fallback: number, min: number): number {
  const raw = opts.get(name);
  if (raw === undefined) return fallback;
  if (!/^-?\d{1,9}$/.test(raw) || Number(raw) < min) throw new UsageError(`Cannot parse argument '${raw}' for option '${name}' as an integer of at least ${min}.`);
  return Number(raw);
}
