/**
 * Refresh tokens are opaque to clients: `<session id>.<secret>`, the secret 256 random bits.
 * Only the SHA-256 of the secret is stored; the session id lets the store find the session
 * without an index of hashes.
 */
import { createHash, randomBytes } from 'node:crypto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET = /^[A-Za-z0-9_-]{43}$/;

export interface RefreshSecret {
  token: string;
  hash: string;
}

export function newRefreshSecret(sessionId: string): RefreshSecret {
  const secret = randomBytes(32).toString('base64url');
  return { token: `${sessionId}.${secret}`, hash: hashSecret(secret) };
}

/** The session id and secret hash of a well-formed token, or undefined. */
export function parseRefreshToken(token: string): { sessionId: string; hash: string } | undefined {
  const dot = token.indexOf('.');
  if (dot < 0) return undefined;
  const sessionId = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  if (!UUID.test(sessionId) || !SECRET.test(secret)) return undefined;
  return { sessionId, hash: hashSecret(secret) };
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}
