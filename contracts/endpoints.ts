/**
 * Every address a runbook takes, parsed (never pattern-matched) the way its client reads it:
 * WHATWG URL for http(s) URLs (what fetch and undici read), and for MongoDB connection strings the
 * driver's own algorithm (mongodb-connection-string-url: the host list cut out, the rest read as a
 * WHATWG URL). An address names where to go and nothing more: no credentials (those come only from
 * secret references, which the worker resolves for a host and a purpose its scope file allows),
 * no option that makes a client fetch or read a credential by itself. One parser per kind; the zod
 * schemas (workflow and CLI) and the activities (before they connect) both use them.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };
const refused = (problem: string): { ok: false; problem: string } => ({ ok: false, problem });

/** An http(s) URL's pieces: the host as secret scopes name it (an IPv6 address without brackets). */
export interface HttpEndpoint { href: string; host: string; port: number }

const noCredentials = 'credentials come only from secret references, which the worker resolves for this host';
const controlOrSpace = /[\s\0-\x1f\x7f]/;

/** An http(s) URL; `base` refuses a query too (a base URL gets paths appended). */
export function parseHttpUrl(text: string, opts: { base?: boolean } = {}): Parsed<HttpEndpoint> {
  // The URL parser drops tabs and new lines silently: what is checked would not be what the input says.
  if (controlOrSpace.test(text)) return refused('must not contain spaces or control characters');
  let url: URL;
  try { url = new URL(text); } catch { return refused('not a URL, e.g. https://fhir.example.org'); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return refused(`the scheme "${url.protocol.replace(/:$/, '')}" is not allowed: only http and https`);
  if (url.username || url.password) return refused(`must not hold a user name or password (user@ or user:password@): ${noCredentials}`);
  if (url.hash || text.includes('#')) return refused('must not have a fragment (#...)');
  if (opts.base && (url.search || text.includes('?'))) return refused('a base URL takes no query (?...): paths are appended to it');
  if (!url.hostname) return refused('must name a host');
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return { ok: true, value: { href: url.href, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port } };
}

/** A MongoDB connection string's pieces. */
export interface MongoEndpoint { srv: boolean; hosts: Array<{ host: string; port: number }>; database: string; options: Record<string, string> }

/**
 * The options a Firely Server deployment needs, and nothing that authenticates or reads a file:
 * a replica set (replicaSet, readPreference, w, retryWrites, directConnection for one member),
 * TLS with the system's CAs (tls), the timeouts of a slow network, and appName to find the
 * runbook's connections in mongod's log. authSource is left out: without credentials it means
 * nothing. Values are checked too, so a typo fails here and not in the driver.
 */
const mongoOptions: Record<string, RegExp> = {
  replicaSet: /^[A-Za-z0-9_.-]{1,128}$/,
  tls: /^(true|false)$/,
  readPreference: /^(primary|primaryPreferred|secondary|secondaryPreferred|nearest)$/,
  w: /^(\d{1,2}|majority)$/,
  retryWrites: /^(true|false)$/,
  directConnection: /^(true|false)$/,
  serverSelectionTimeoutMS: /^\d{1,7}$/,
  connectTimeoutMS: /^\d{1,7}$/,
  socketTimeoutMS: /^\d{1,7}$/,
  appName: /^[A-Za-z0-9_. -]{1,128}$/,
};
export const allowedMongoOptions = Object.keys(mongoOptions);

function mongoOptionProblem(key: string, value: string): string | undefined {
  if (/^authMechanism/i.test(key)) {
    return `option "${key}" is refused: an authentication mechanism makes the driver fetch a credential by itself (MONGODB-OIDC reads the worker's cloud identity) ` +
      `and send it to the hosts named here, where the worker's secret scopes never see it`;
  }
  if (/^(tls|ssl).*File$/i.test(key)) return `option "${key}" is refused: it makes the driver read a file of the worker (a key or a certificate) and use it for the hosts named here`;
  const known = allowedMongoOptions.find((k) => k.toLowerCase() === key.toLowerCase());
  if (!known) return `option "${key}" is not allowed; allowed: ${allowedMongoOptions.join(', ')}`;
  if (!mongoOptions[known].test(value)) return `option "${key}" has the value "${value}", which is not one it takes`;
  return undefined;
}

/**
 * The driver's cut (mongodb-connection-string-url 3.0.2, which the driver uses): scheme, userinfo,
 * the comma-separated host list, the rest. Its class cannot be imported here: its whatwg-url needs
 * punycode, which a workflow bundle may not load. The worker checks that the driver reads the same
 * hosts and no credentials before it connects (activities/firely/databases.ts).
 */
const driverCut = /^(?<scheme>[^/]+):\/\/(?:(?<username>[^:@]*)(?::(?<password>[^@]*))?@)?(?<hosts>(?!:)[^/?@]*)(?<rest>.*)/;
const mongoHost = /^(?<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])(:(?<port>\d{1,5}))?$/;

/** A MongoDB connection string (mongodb:// or mongodb+srv://), read as the driver reads it. */
export function parseMongoConnectionString(text: string): Parsed<MongoEndpoint> {
  // It is also an argument of the ingest tool on the migration host: nothing a shell or the tool could read differently.
  if (/[\s'"`$\\\0-\x1f\x7f]/.test(text)) return refused('must not contain spaces, quotes, $, \\ or control characters');
  const example = 'e.g. mongodb://db:27017/vonkdata';
  if (!text.startsWith('mongodb://') && !text.startsWith('mongodb+srv://')) return refused(`must start with mongodb:// or mongodb+srv://, ${example}`);
  const cut = driverCut.exec(text)?.groups;
  if (!cut?.hosts) return refused(`names no host, ${example}`);
  if (cut.password !== undefined) return refused('must not hold a password: it would be in the run\'s history and in the migration host\'s process list');
  if (cut.username !== undefined) return refused(`must not hold a user name: ${noCredentials}`);
  let url: URL;
  try { url = new URL(`${cut.scheme}://placeholder${cut.rest}`); } catch { return refused(`is not a connection string, ${example}`); }
  if (url.hash || text.includes('#')) return refused('must not have a fragment (#...)');
  const srv = cut.scheme === 'mongodb+srv';
  const hostList = cut.hosts.split(',');
  if (srv && (hostList.length !== 1 || hostList[0].includes(':'))) return refused('mongodb+srv:// takes one service name and no port');
  const hosts: MongoEndpoint['hosts'] = [];
  for (const h of hostList) {
    const m = mongoHost.exec(h);
    if (!m) return refused(`the host "${h}" is not a host name or an IP address with an optional port`);
    const port = m.groups!.port ? Number(m.groups!.port) : 27017;
    if (port < 1 || port > 65535) return refused(`the host "${h}" has a port out of range`);
    hosts.push({ host: m.groups!.host.replace(/^\[(.*)\]$/, '$1').toLowerCase(), port });
  }
  const database = url.pathname.replace(/^\//, '');
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(database)) return refused(`must name the database, ${example}`);
  const options: Record<string, string> = {};
  for (const [key, value] of url.searchParams.entries()) {
    const problem = mongoOptionProblem(key, value);
    if (problem) return refused(problem);
    if (Object.keys(options).some((k) => k.toLowerCase() === key.toLowerCase())) return refused(`option "${key}" is given twice`);
    options[key] = value;
  }
  return { ok: true, value: { srv, hosts, database, options } };
}

/** A zod check that runs a parser and reports its problem on the field. */
const parsedBy = <T>(parse: (text: string) => Parsed<T>) => (text: string, ctx: z.RefinementCtx) => {
  const r = parse(text);
  if (!r.ok) ctx.addIssue({ code: 'custom', message: r.problem });
};

/** An http(s) URL with no credentials and no fragment. */
export const httpUrl = z.string().max(2000).meta({ format: 'uri' }).superRefine(parsedBy((t) => parseHttpUrl(t)));
/** An http(s) base URL: no credentials, no query, no fragment. */
export const httpBaseUrl = z.string().max(2000).meta({ format: 'uri' }).superRefine(parsedBy((t) => parseHttpUrl(t, { base: true })));
/** A MongoDB connection string: hosts, a database and allowed options only. */
export const mongoConnectionString = z.string().max(500).meta({ pattern: '^mongodb(\\+srv)?://' }).superRefine(parsedBy(parseMongoConnectionString));

/**
 * In an activity: the pieces of an address, parsed again before anything connects (a run started
 * before a rule existed carries an input no schema checked). Refuses, non-retryable, naming the problem.
 */
export function endpointOf<T>(parse: (text: string) => Parsed<T>, text: string, what: string): T {
  const r = parse(text);
  if (r.ok) return r.value;
  throw endpointRefused(what, text, r.problem);
}

/** The failure for an address refused in an activity: non-retryable, the address shown without its options. */
export const endpointRefused = (what: string, text: string, problem: string) => ApplicationFailure.nonRetryable(
  `${what} ${text.replace(/[?#].*$/, '')} is refused: ${problem}. Fix the input and start the runbook again; nothing was changed.`, 'InvalidInput');
