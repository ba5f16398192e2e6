/**
 * SCRAM-SHA-256 verifiers (RFC 5802 / 7677) as PostgreSQL stores them, so a role's password is set
 * without the password itself ever appearing in SQL, logs or pg_stat_statements.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest();

function keys(password: string, salt: Buffer, iterations: number) {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  return { storedKey: createHash('sha256').update(hmac(salted, 'Client Key')).digest(), serverKey: hmac(salted, 'Server Key') };
}

export function scramVerifier(password: string, iterations = 4096, salt = randomBytes(16)): string {
  const { storedKey, serverKey } = keys(password, salt, iterations);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** More iterations than this are not checked (PostgreSQL's default is 4096): the role's verifier is then set anew. */
export const maxIterations = 1_000_000;

/** Whether a stored verifier was made from this password. */
export function scramMatches(verifier: string | null | undefined, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier ?? '');
  // The iteration count comes from the server: a huge one would keep the worker busy for hours.
  if (!m || Number(m[1]) < 1 || Number(m[1]) > maxIterations) return false;
  const { storedKey, serverKey } = keys(password, Buffer.from(m[2], 'base64'), Number(m[1]));
  const a = Buffer.concat([storedKey, serverKey]);
  const b = Buffer.concat([Buffer.from(m[3], 'base64'), Buffer.from(m[4], 'base64')]);
  return a.length === b.length && timingSafeEqual(a, b);
}
