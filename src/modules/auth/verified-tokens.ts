/**
 * Access tokens whose signature and claims have been verified, by their exact text, until they
 * expire. A client sends the same token with every request for its whole lifetime; verifying
 * it again (two base64 and JSON decodes and an HMAC) gives the same answer every time, so it is
 * done once. Only the exact bytes that passed verification hit; expiry is checked on every
 * lookup, as jsonwebtoken checks it, and revocation is the caller's, on every request. Bounded:
 * past `capacity` tokens the oldest entry goes.
 */
export interface VerifiedClaims {
  sub: string;
  sid: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

export class VerifiedTokens {
  private readonly entries = new Map<string, VerifiedClaims>();

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The claims of `token` if it was verified and has not expired at `nowMs`. */
  get(token: string, nowMs: number): VerifiedClaims | undefined {
    const claims = this.entries.get(token);
    if (claims === undefined) return undefined;
    // jsonwebtoken refuses a token once the current second reaches `exp`.
    if (Math.floor(nowMs / 1000) >= claims.exp) {
      this.entries.delete(token);
      return undefined;
    }
    return claims;
  }

  remember(token: string, claims: VerifiedClaims): void {
    if (this.entries.size >= this.capacity && !this.entries.has(token)) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(token, claims);
  }
}
