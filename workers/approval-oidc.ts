/**
 * "Who clicked": with APPROVAL_OIDC_ISSUER set, an approver signs in with the organisation's
 * OpenID Connect provider (authorization code + PKCE, openid-client) before a link decides
 * anything, and the gateway checks that the signed-in person is the approver the link names: a
 * forwarded link alone is then not enough. The sign-in lives in a signed, HttpOnly cookie.
 *
 * Env: APPROVAL_OIDC_ISSUER, APPROVAL_OIDC_CLIENT_ID, APPROVAL_OIDC_CLIENT_SECRET (or
 * APPROVAL_OIDC_CLIENT_SECRET_FILE), APPROVAL_OIDC_CLAIM (the claim that holds the approver's
 * name: preferred_username by default), APPROVAL_BASE_URL (the gateway's public address; the
 * callback is <base>/oidc/callback).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  claim: string;
  /** The gateway's public base URL. */
  baseUrl: string;
}

export function oidcSettingsFromEnv(env = process.env): OidcSettings | undefined {
  const issuer = env.APPROVAL_OIDC_ISSUER;
  if (!issuer) return undefined;
  const secretFile = env.APPROVAL_OIDC_CLIENT_SECRET_FILE;
  const clientSecret = env.APPROVAL_OIDC_CLIENT_SECRET || (secretFile ? readFileSync(secretFile, 'utf8').trim() : '');
  const missing = [!env.APPROVAL_OIDC_CLIENT_ID && 'APPROVAL_OIDC_CLIENT_ID', !clientSecret && 'APPROVAL_OIDC_CLIENT_SECRET', !env.APPROVAL_BASE_URL && 'APPROVAL_BASE_URL'].filter(Boolean);
  if (missing.length) throw new Error(`APPROVAL_OIDC_ISSUER is set, so sign-in is on, but ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set`);
  return { issuer, clientId: env.APPROVAL_OIDC_CLIENT_ID!, clientSecret, claim: env.APPROVAL_OIDC_CLAIM || 'preferred_username', baseUrl: env.APPROVAL_BASE_URL!.replace(/\/+$/, '') };
}

const sessionCookie = 'rb_session';
const flowCookie = 'rb_signin';
const sessionSeconds = 8 * 3600;
const flowSeconds = 600;

type OidcModule = typeof import('openid-client');

export class OidcSignIn {
  private readonly key: Buffer;
  private readonly secure: boolean;

  private constructor(readonly settings: OidcSettings, gatewaySecret: string, private readonly oidc: OidcModule, private readonly config: import('openid-client').Configuration) {
    // Cookies are signed with a key of their own, derived from the gateway's secret.
    this.key = createHmac('sha256', gatewaySecret).update('approval-gateway-cookies-v1').digest();
    this.secure = settings.baseUrl.startsWith('https:');
  }

  /** Discovers the provider (plain http only for a provider on this machine). */
  static async create(settings: OidcSettings, gatewaySecret: string): Promise<OidcSignIn> {
    const oidc: OidcModule = await import('openid-client');
    const issuer = new URL(settings.issuer);
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
    if (issuer.protocol !== 'https:' && !local) throw new Error(`APPROVAL_OIDC_ISSUER must be https (${settings.issuer})`);
    const config = await oidc.discovery(issuer, settings.clientId, undefined, oidc.ClientSecretBasic(settings.clientSecret),
      issuer.protocol === 'https:' ? undefined : { execute: [oidc.allowInsecureRequests] });
    return new OidcSignIn(settings, gatewaySecret, oidc, config);
  }

  get callbackUrl(): string {
    return `${this.settings.baseUrl}/oidc/callback`;
  }

  /** The signed-in approver, from the session cookie, or undefined. */
  identity(req: IncomingMessage): string | undefined {
    const session = this.read<{ id: string; exp: number }>(req, sessionCookie);
    return session && typeof session.id === 'string' && session.exp > Date.now() / 1000 ? session.id : undefined;
  }

  /** Where to send the browser to sign in, and the cookie that remembers the attempt; `next` is a path on this gateway. */
  async begin(next: string): Promise<{ location: string; cookie: string }> {
    const { oidc } = this;
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const location = oidc.buildAuthorizationUrl(this.config, {
      redirect_uri: this.callbackUrl, scope: 'openid profile email', state, nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const safeNext = next.startsWith('/') && !next.startsWith('//') ? next : '/';
    return { location: location.href, cookie: this.cookie(flowCookie, { state, verifier, nonce, next: safeNext, exp: Date.now() / 1000 + flowSeconds }, flowSeconds) };
  }

  /** The provider sent the browser back: check everything, then sign in. */
  async finish(req: IncomingMessage): Promise<{ identity: string; next: string; cookies: string[] }> {
    const flow = this.read<{ state: string; verifier: string; nonce: string; next: string; exp: number }>(req, flowCookie);
    if (!flow || !(flow.exp > Date.now() / 1000)) throw new SignInError('The sign-in took too long or did not start here. Open your link again.');
    const current = new URL(req.url ?? '/', this.settings.baseUrl);
    let id: unknown;
    try {
      const tokens = await this.oidc.authorizationCodeGrant(this.config, current, { pkceCodeVerifier: flow.verifier, expectedState: flow.state, expectedNonce: flow.nonce });
      const claims = tokens.claims();
      id = claims?.[this.settings.claim];
      // Providers that keep profile claims out of the ID token give them at the userinfo endpoint.
      if (id === undefined && claims?.sub) id = (await this.oidc.fetchUserInfo(this.config, tokens.access_token, claims.sub))[this.settings.claim];
    } catch (err) {
      throw new SignInError(`The sign-in was not accepted: ${(err as Error).message}`);
    }
    if (typeof id !== 'string' || !id) throw new SignInError(`The provider did not say who you are (no "${this.settings.claim}" claim).`);
    return {
      identity: id,
      next: flow.next,
      cookies: [this.cookie(sessionCookie, { id, exp: Date.now() / 1000 + sessionSeconds }, sessionSeconds), this.cookie(flowCookie, {}, 0)],
    };
  }

  private cookie(name: string, value: object, maxAge: number): string {
    const payload = Buffer.from(JSON.stringify(value)).toString('base64url');
    const mac = createHmac('sha256', this.key).update(`${name}.${payload}`).digest('base64url');
    return `${name}=${payload}.${mac}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${this.secure ? '; Secure' : ''}`;
  }

  private read<T>(req: IncomingMessage, name: string): T | undefined {
    const raw = (req.headers.cookie ?? '').split(';').map((c) => c.trim()).find((c) => c.startsWith(`${name}=`))?.slice(name.length + 1);
    const [payload, mac] = (raw ?? '').split('.');
    if (!payload || !mac) return undefined;
    const expected = createHmac('sha256', this.key).update(`${name}.${payload}`).digest();
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try { return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as T; } catch { return undefined; }
  }
}

export class SignInError extends Error {}

/** The signed-in person is the approver the link names (names compared as the gates compare them). */
export const sameApprover = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();
