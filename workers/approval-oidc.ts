/**
 * "Who clicked": with APPROVAL_OIDC_ISSUER set, an approver signs in with the organisation's
 * OpenID Connect provider (authorization code + PKCE, openid-client) before a link decides
 * anything, and the gateway checks that the signed-in person is the approver the link names: a
 * forwarded link alone is then not enough.
 *
 * Who a person is: the issuer and the `sub` claim, the only pair OpenID Connect Core 1.0 §5.7
 * calls stable and unique (https://openid.net/specs/openid-connect-core-1_0.html#ClaimStability).
 * APPROVAL_OIDC_SUBJECTS_FILE maps approver names to their `sub` (`{"bob": "248289761001"}`); an
 * approver not in it is matched when the name is the `sub` itself. Another claim
 * (APPROVAL_OIDC_CLAIM=preferred_username, email, ...) is not unique by specification: it is used
 * only when APPROVAL_OIDC_TRUST_CLAIM names the same claim, and the gateway warns at start.
 *
 * The sign-in lives in an HttpOnly cookie signed with the gateway's OWN key (APPROVAL_COOKIE_SECRET,
 * see approvals.ts): never derived from APPROVAL_SECRET, which workers and the CLI hold to sign links.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';

/** How the signed-in person is matched to the approver a link names. */
export type IdentityRule =
  /** issuer + sub; names mapped to their sub (else the name is the sub). */
  | { kind: 'subject'; subjects: Map<string, string> }
  /** A claim the operator vouches is unique at this provider (explicit opt-in). */
  | { kind: 'claim'; claim: string };

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  identity: IdentityRule;
  /** The gateway's public base URL. */
  baseUrl: string;
}

const subjectsFile = z.record(z.string().trim().min(1), z.string().min(1, 'a sub claim value').max(255));

/** The settings from the environment; throws naming what is missing or refused. `warn` hears about a claim that is not unique. */
export function oidcSettingsFromEnv(env = process.env, warn: (text: string) => void = () => undefined): OidcSettings | undefined {
  const issuer = env.APPROVAL_OIDC_ISSUER;
  if (!issuer) return undefined;
  const secretFile = env.APPROVAL_OIDC_CLIENT_SECRET_FILE;
  const clientSecret = env.APPROVAL_OIDC_CLIENT_SECRET || (secretFile ? readFileSync(secretFile, 'utf8').trim() : '');
  const missing = [!env.APPROVAL_OIDC_CLIENT_ID && 'APPROVAL_OIDC_CLIENT_ID', !clientSecret && 'APPROVAL_OIDC_CLIENT_SECRET', !env.APPROVAL_BASE_URL && 'APPROVAL_BASE_URL'].filter(Boolean);
  if (missing.length) throw new Error(`APPROVAL_OIDC_ISSUER is set, so sign-in is on, but ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set`);
  return { issuer, clientId: env.APPROVAL_OIDC_CLIENT_ID!, clientSecret, identity: identityRule(env, warn), baseUrl: env.APPROVAL_BASE_URL!.replace(/\/+$/, '') };
}

function identityRule(env: NodeJS.ProcessEnv, warn: (text: string) => void): IdentityRule {
  const claim = env.APPROVAL_OIDC_CLAIM?.trim();
  if (claim && claim !== 'sub') {
    if (env.APPROVAL_OIDC_TRUST_CLAIM?.trim() !== claim) {
      throw new Error(`APPROVAL_OIDC_CLAIM=${claim}: OpenID Connect says only the issuer and "sub" identify a person (Core 1.0 §5.7); ` +
        `"${claim}" may be shared, reused or chosen by the user, who would then decide as someone else. Leave APPROVAL_OIDC_CLAIM unset ` +
        `(and map approvers to their sub in APPROVAL_OIDC_SUBJECTS_FILE), or, if your provider guarantees "${claim}" is unique and cannot be chosen, set APPROVAL_OIDC_TRUST_CLAIM=${claim}`);
    }
    warn(`Sign-in matches approvers by the "${claim}" claim, which OpenID Connect does not guarantee unique or stable (APPROVAL_OIDC_TRUST_CLAIM): ` +
      'whoever your provider lets hold that value decides as that approver');
    return { kind: 'claim', claim };
  }
  const subjects = new Map<string, string>();
  const file = env.APPROVAL_OIDC_SUBJECTS_FILE;
  if (file) {
    let raw: unknown;
    try { raw = JSON.parse(readFileSync(file, 'utf8')); } catch (err) { throw new Error(`APPROVAL_OIDC_SUBJECTS_FILE=${file} cannot be read as JSON: ${(err as Error).message}`); }
    const parsed = subjectsFile.safeParse(raw);
    if (!parsed.success) {
      throw new Error(`APPROVAL_OIDC_SUBJECTS_FILE=${file} must map approver names to their "sub": ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
    }
    for (const [name, sub] of Object.entries(parsed.data)) subjects.set(normalName(name), sub);
  }
  return { kind: 'subject', subjects };
}

/** Who is signed in: the provider's issuer and subject, and what to call them on a page. */
export interface SignedIn {
  iss: string;
  sub: string;
  /** The trusted claim's value (claim rule only). */
  claim?: string;
  /** For people: the provider's preferred_username or name, with the sub when it differs. */
  label: string;
}

const sessionCookie = 'rb_session';
const flowCookie = 'rb_signin';
const sessionSeconds = 8 * 3600;
const flowSeconds = 600;

type OidcModule = typeof import('openid-client');

export class OidcSignIn {
  private readonly key: Buffer;
  private readonly secure: boolean;
  private readonly issuer: string;

  private constructor(readonly settings: OidcSettings, cookieSecret: string, private readonly oidc: OidcModule, private readonly config: import('openid-client').Configuration) {
    // The gateway's own key: nothing else holds it, so nothing else can write a session.
    this.key = createHmac('sha256', cookieSecret).update('approval-gateway-session-v2').digest();
    this.secure = settings.baseUrl.startsWith('https:');
    this.issuer = config.serverMetadata().issuer;
  }

  /** Discovers the provider (plain http only for a provider on this machine). `cookieSecret` is the gateway's own (APPROVAL_COOKIE_SECRET). */
  static async create(settings: OidcSettings, cookieSecret: string): Promise<OidcSignIn> {
    const oidc: OidcModule = await import('openid-client');
    const issuer = new URL(settings.issuer);
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
    if (issuer.protocol !== 'https:' && !local) throw new Error(`APPROVAL_OIDC_ISSUER must be https (${settings.issuer})`);
    const config = await oidc.discovery(issuer, settings.clientId, undefined, oidc.ClientSecretBasic(settings.clientSecret),
      issuer.protocol === 'https:' ? undefined : { execute: [oidc.allowInsecureRequests] });
    return new OidcSignIn(settings, cookieSecret, oidc, config);
  }

  get callbackUrl(): string {
    return `${this.settings.baseUrl}/oidc/callback`;
  }

  /** The signed-in person, from the session cookie, or undefined. A session from another issuer does not count. */
  identity(req: IncomingMessage): SignedIn | undefined {
    const s = this.read<SignedIn & { exp: number }>(req, sessionCookie);
    if (!s || typeof s.sub !== 'string' || !s.sub || s.iss !== this.issuer || !(s.exp > Date.now() / 1000)) return undefined;
    if (this.settings.identity.kind === 'claim' && (typeof s.claim !== 'string' || !s.claim)) return undefined;
    return { iss: s.iss, sub: s.sub, claim: s.claim, label: typeof s.label === 'string' ? s.label : s.sub };
  }

  /** Whether the signed-in person is the approver a link or an inbox names. */
  isApprover(who: SignedIn, approver: string): boolean {
    const rule = this.settings.identity;
    if (rule.kind === 'claim') return who.claim !== undefined && sameApprover(who.claim, approver);
    return who.iss === this.issuer && (rule.subjects.get(normalName(approver)) ?? approver) === who.sub;
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
  async finish(req: IncomingMessage): Promise<{ identity: SignedIn; next: string; cookies: string[] }> {
    const flow = this.read<{ state: string; verifier: string; nonce: string; next: string; exp: number }>(req, flowCookie);
    if (!flow || !(flow.exp > Date.now() / 1000)) throw new SignInError('The sign-in took too long or did not start here. Open your link again.');
    const current = new URL(req.url ?? '/', this.settings.baseUrl);
    let claims: Record<string, unknown> | undefined;
    try {
      const tokens = await this.oidc.authorizationCodeGrant(this.config, current, { pkceCodeVerifier: flow.verifier, expectedState: flow.state, expectedNonce: flow.nonce });
      claims = tokens.claims() as Record<string, unknown> | undefined;
      // Providers that keep profile claims out of the ID token give them at the userinfo endpoint (its sub is checked against the ID token's).
      if (claims?.sub && (claims.preferred_username === undefined || (this.settings.identity.kind === 'claim' && claims[this.settings.identity.claim] === undefined))) {
        claims = { ...(await this.oidc.fetchUserInfo(this.config, tokens.access_token, claims.sub as string)), ...claims };
      }
    } catch (err) {
      throw new SignInError(`The sign-in was not accepted: ${(err as Error).message}`);
    }
    const sub = claims?.sub;
    if (typeof sub !== 'string' || !sub) throw new SignInError('The provider did not say who you are (no "sub" claim).');
    const rule = this.settings.identity;
    const claim = rule.kind === 'claim' ? claims?.[rule.claim] : undefined;
    if (rule.kind === 'claim' && (typeof claim !== 'string' || !claim)) throw new SignInError(`The provider did not say who you are (no "${rule.claim}" claim).`);
    const shown = [claims?.preferred_username, claims?.name].find((v): v is string => typeof v === 'string' && v.trim() !== '')?.slice(0, 100);
    const label = rule.kind === 'claim' ? claim as string : shown && shown !== sub ? `${shown} (sub ${sub})` : sub;
    const identity: SignedIn = { iss: this.issuer, sub, claim: claim as string | undefined, label };
    return {
      identity,
      next: flow.next,
      cookies: [this.cookie(sessionCookie, { ...identity, exp: Date.now() / 1000 + sessionSeconds }, sessionSeconds), this.cookie(flowCookie, {}, 0)],
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

const normalName = (a: string) => a.trim().toLowerCase();

/** Two approver names are the same person's (names compared as the gates compare them). */
export const sameApprover = (a: string, b: string) => normalName(a) === normalName(b);
