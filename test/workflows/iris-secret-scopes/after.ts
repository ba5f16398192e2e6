/** The same preflight through the IRIS runbooks' check as it is now. */
import { checkSecretScopes } from '../../../workflows/iris/secret-scopes';

export async function irisSecretScopeCheck(): Promise<number> {
  return (await checkSecretScopes([{ secret: 'healthconnect-ssh', host: 'healthconnect-0', purpose: 'ssh-key' }])).checked;
}
