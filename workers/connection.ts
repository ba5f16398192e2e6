/**
 * How every process here reaches Temporal: the usual Temporal environment variables
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE),
 * read by @temporalio/envconfig. Defaults to the local dev server.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { runbookSearchAttributes } from '../contracts/search-attributes';

export const taskQueue = (): string => process.env.RUNBOOKS_TASK_QUEUE || 'runbooks';

/** Temporal cannot be reached with these settings; the message says why and what to set. The CLI and the worker exit 4. */
export class TemporalUnreachableError extends Error {
  readonly name = 'TemporalUnreachableError';
}

interface ConnectSettings { address: string; tls?: ConnectionOptions['tls']; apiKey?: unknown }

function connectConfig() {
  let config: ReturnType<typeof loadClientConnectConfig>;
  try {
    config = loadClientConnectConfig();
  } catch (err) {
    // E.g. a TEMPORAL_TLS_*_PATH that names no readable file.
    throw new TemporalUnreachableError(`Cannot read the Temporal connection settings: ${(err as Error).message}`, { cause: err });
  }
  const options = { ...config.connectionOptions };
  const address = options.address || 'localhost:7233';
  return { options: { ...options, address }, namespace: config.namespace || 'default' };
}

export async function connectClient(): Promise<Client> {
  const { options, namespace } = connectConfig();
  const connection = await explainFailure(() => Connection.connect(options), options, namespace);
  return new Client({ connection, namespace });
}

export async function connectWorker(): Promise<{ connection: NativeConnection; namespace: string; address: string }> {
  const { options, namespace } = connectConfig();
  return { connection: await explainFailure(() => NativeConnection.connect(options), options, namespace), namespace, address: options.address };
}

/** The SDKs say "Failed to connect before the deadline" or "transport error": find out why, and say what to set. */
async function explainFailure<T>(connect: () => Promise<T>, settings: ConnectSettings, namespace: string): Promise<T> {
  try {
    return await connect();
  } catch (err) {
    const why = await whyUnreachable(settings).catch(() => undefined);
    const how = tlsOn(settings) ? `TLS ${clientCert(settings) ? 'with' : 'without'} a client certificate` : 'no TLS';
    throw new TemporalUnreachableError(
      `Cannot connect to Temporal at ${settings.address} (namespace ${namespace}, ${how}): ${why ?? `${(err as Error).message}. Check TEMPORAL_ADDRESS and the TEMPORAL_TLS_* settings`}.`,
      { cause: err });
  }
}

const tlsOn = (s: ConnectSettings) => (s.tls === undefined || s.tls === null ? Boolean(s.apiKey) : s.tls !== false);
const clientCert = (s: ConnectSettings) => (typeof s.tls === 'object' && s.tls ? s.tls.clientCertPair : undefined);

/** The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first. */
const http2Preface = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/**
 * Why Temporal cannot be reached with these settings, found the way gRPC meets it: a TCP
 * connection, the TLS handshake with the same certificates and name, the HTTP/2 preface (the server
 * answers with its SETTINGS). Undefined when all of that works.
 */
export function whyUnreachable(settings: ConnectSettings, timeoutMs = 5_000): Promise<string | undefined> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(settings.address);
  if (!m) return Promise.resolve(`TEMPORAL_ADDRESS must be host:port (got "${settings.address}")`);
  const [, host, port] = m;
  const secure = tlsOn(settings);
  const t = typeof settings.tls === 'object' && settings.tls ? settings.tls : {};
  const cert = clientCert(settings);
  return new Promise((resolve) => {
    const socket: net.Socket = secure
      ? tls.connect({
        host, port: Number(port), ALPNProtocols: ['h2'],
        servername: t.serverNameOverride ?? (net.isIP(host) ? undefined : host),
        ca: t.serverRootCACertificate ? Buffer.from(t.serverRootCACertificate) : undefined,
        cert: cert ? Buffer.from(cert.crt) : undefined, key: cert ? Buffer.from(cert.key) : undefined,
      })
      : net.connect({ host, port: Number(port) });
    let answered = false;
    const done = (why: string | undefined) => { clearTimeout(timer); socket.destroy(); resolve(why); };
    const timer = setTimeout(() => done(`no answer within ${timeoutMs / 1000} s (a firewall, or not a Temporal server at that address?)`), timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(http2Preface));
    socket.on('data', (data: Buffer) => {
      answered = true;
      if (data.length >= 9 && data[3] === 0x04) done(undefined); // the server's SETTINGS frame: gRPC can talk to it
      else if (!secure && data[0] === 0x15) done(tlsExpected);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done(explainSocketError(err, secure, Boolean(cert), t.serverNameOverride ?? host)));
    socket.once('close', () => done(answered ? 'the server answered, but not as a gRPC server does' : secure
      ? 'the server closed the connection after the TLS handshake without a word: it may require a client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH) or not speak HTTP/2'
      : tlsExpected));
  });
}

const tlsExpected = 'the server closed a connection without TLS: it expects TLS. Set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA of its certificate '
  + '(or TEMPORAL_TLS=true for a publicly trusted one) and, for mutual TLS, TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH';

function explainSocketError(err: NodeJS.ErrnoException, secure: boolean, withCert: boolean, name: string): string {
  const code = err.code ?? '';
  if (code === 'ECONNREFUSED') return 'connection refused: nothing listens there. Check that the Temporal server runs and that TEMPORAL_ADDRESS names it';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'the host name does not resolve: check TEMPORAL_ADDRESS';
  if (/CERTIFICATE_REQUIRED/.test(code) || (!withCert && /HANDSHAKE_FAILURE|BAD_CERTIFICATE/.test(code))) {
    return 'the server requires a client certificate (mutual TLS) and none was given. Set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH '
      + '(scripts/temporal-postgres.sh prints them)';
  }
  if (/UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE/.test(code)) {
    return `the server refused the client certificate (${code}): TEMPORAL_TLS_CLIENT_CERT_PATH must name a certificate signed by a CA the server trusts, and valid today`;
  }
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED/.test(code)) {
    return `the server's certificate is not signed by a CA this client trusts (${code}): set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA that signed it`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the server's certificate is not made out to "${name}": set TEMPORAL_TLS_SERVER_NAME to a name in it`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `the server's certificate is not valid today (${code})`;
  if (secure && /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|ECONNRESET/.test(code)) {
    return `the TLS handshake failed (${code}): the server may not use TLS at that address (then unset TEMPORAL_TLS and the TEMPORAL_TLS_* settings)`;
  }
  return `${err.message}${code ? ` (${code})` : ''}`;
}

/**
 * Registers the runbooks' search attributes when the namespace lacks them: without them every
 * run's first workflow task would fail. Servers that refuse (Temporal Cloud) need them added by an admin.
 */
export async function ensureSearchAttributes(client: Client): Promise<string | undefined> {
  const namespace = client.options.namespace;
  const existing = await client.connection.operatorService.listSearchAttributes({ namespace });
  const known = { ...existing.customAttributes, ...existing.systemAttributes };
  const missing = runbookSearchAttributes.filter((k) => !(k.name in known));
  if (!missing.length) return undefined;
  try {
    await client.connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((k) => [k.name, 2 /* INDEXED_VALUE_TYPE_KEYWORD */])),
    });
    return undefined;
  } catch (err) {
    return `Search attributes ${missing.map((k) => k.name).join(', ')} are missing on namespace ${namespace} and could not be added (${String(err)}). ` +
      `Add them as Keyword (temporal operator search-attribute create --name RunbookName --type Keyword ...), or runs will stall.`;
  }
}
