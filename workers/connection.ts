/**
 * How every process here reaches Temporal: the usual Temporal environment variables
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE),
 * read by @temporalio/envconfig. Defaults to the local dev server.
 */
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { runbookSearchAttributes } from '../workflows/kit/search-attributes';

export const taskQueue = (): string => process.env.RUNBOOKS_TASK_QUEUE || 'runbooks';

function connectConfig() {
  const config = loadClientConnectConfig();
  const options = { ...config.connectionOptions };
  const address = options.address || 'localhost:7233';
  return { options: { ...options, address }, namespace: config.namespace || 'default' };
}

export async function connectClient(): Promise<Client> {
  const { options, namespace } = connectConfig();
  const connection = await Connection.connect(options);
  return new Client({ connection, namespace });
}

export async function connectWorker(): Promise<{ connection: NativeConnection; namespace: string; address: string }> {
  const { options, namespace } = connectConfig();
  return { connection: await NativeConnection.connect(options), namespace, address: options.address };
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
