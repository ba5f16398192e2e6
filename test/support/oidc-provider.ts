/**
 * A real OpenID Connect provider for the tests (oidc-provider, with its development login and
 * consent pages: any login name with any password signs in as that name; "who:picked" signs in as
 * account "who:picked" with the preferred_username "picked"). Run as a process:
 *
 *   OIDC_PORT=0 OIDC_CLIENT_ID=... OIDC_CLIENT_SECRET=... OIDC_REDIRECT_URI=... node --import tsx test/support/oidc-provider.ts
 *
 * Prints "OIDC provider ready <issuer>". Profile claims stay out of the ID token (the provider's
 * default), so the gateway must read them from userinfo as with many real providers.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

// oidc-provider is an ES module: required here through Node's require(esm).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Provider = (require('oidc-provider') as { default: new (issuer: string, config: object) => { callback(): (req: unknown, res: unknown) => void } }).default;

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

async function main(): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: env('OIDC_CLIENT_ID'), client_secret: env('OIDC_CLIENT_SECRET'), redirect_uris: [env('OIDC_REDIRECT_URI')],
      grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic',
    }],
    // Like providers that let people pick their user name: login "mallory:bob" is the account (sub)
    // "mallory:bob", whose preferred_username is "bob". A plain login "bob" is sub "bob", named "bob".
    findAccount: async (_ctx: unknown, id: string) => {
      const picked = id.includes(':') ? id.slice(id.indexOf(':') + 1) : id;
      return { accountId: id, claims: async () => ({ sub: id, preferred_username: picked, name: picked }) };
    },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'] },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: [`test-cookies-${Math.random().toString(36).slice(2)}`] },
  });
  server.on('request', provider.callback());
  process.stdout.write(`OIDC provider ready ${issuer}\n`);
}

main().catch((err) => {
  process.stderr.write(`OIDC provider failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
