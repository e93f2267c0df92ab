/**
 * Verifies access tokens without a database or Redis round trip: signature (HS256 only, so
 * `none` and algorithm confusion are refused), `exp` (required: jsonwebtoken accepts a token
 * without one, which would never expire), `iss`, `aud`, no `crit` header (RFC 7515 §4.1.11: a
 * token naming extensions the verifier must understand is refused, and this one understands
 * none), the claims' shape, and that the session has not been revoked (in-memory, kept current
 * by RevocationService).
 */
import { createSecretKey } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RevocationService } from './revocation.service.js';
import { VerifiedTokens } from './verified-tokens.js';

export const JWT_ALGORITHM = 'HS256';

export interface AccessClaims {
  sub: string;
  sid: string;
}

/** What jsonwebtoken hands over with `complete: true`. */
interface DecodedToken {
  header: Record<string, unknown>;
  payload: Partial<AccessClaims> & { exp?: unknown };
}

export interface AuthenticatedUser {
  userId: string;
  sessionId: string;
}

const bearerToken = ExtractJwt.fromAuthHeaderAsBearerToken();

/** Verified tokens remembered at most; each is a few hundred bytes. */
const VERIFIED_TOKENS_CAPACITY = 10_000;

@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  private readonly verified = new VerifiedTokens(VERIFIED_TOKENS_CAPACITY);

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly revocations: RevocationService,
  ) {
    super({
      jwtFromRequest: bearerToken,
      passReqToCallback: true,
      // A KeyObject made once: given a string, jsonwebtoken would try to parse it as a PEM
      // public key on every request (and throw) before making it a secret key.
      secretOrKey: createSecretKey(Buffer.from(config.auth.jwtSecret, 'utf8')) as unknown as string,
      algorithms: [JWT_ALGORITHM],
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      ignoreExpiration: false,
      // The header too, for its `crit`.
      jsonWebTokenOptions: { complete: true },
    });
  }

  /**
   * A token verified before (same bytes, not yet expired) skips passport-jwt's decoding and
   * HMAC; it still goes through `validate`'s checks, revocation included.
   */
  override authenticate(request: unknown, options?: unknown): void {
    const token = bearerToken(request as never);
    const claims = token ? this.verified.get(token, Date.now()) : undefined;
    if (!claims) {
      super.authenticate(request as never, options);
      return;
    }
    const user = this.check(claims);
    if (user) this.success(user);
    else this.fail(401);
  }

  /** Called by passport-jwt once a token's signature, `exp` (if any), `iss` and `aud` hold. */
  validate(request: unknown, token: DecodedToken): AuthenticatedUser | false {
    const { header, payload } = token;
    if (header.crit !== undefined || typeof payload.exp !== 'number') return false;
    const user = this.check(payload);
    const text = bearerToken(request as never);
    if (user && text) this.verified.remember(text, { sub: user.userId, sid: user.sessionId, exp: payload.exp });
    return user;
  }

  private check(claims: Partial<AccessClaims>): AuthenticatedUser | false {
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') return false;
    if (this.revocations.isRevoked(claims.sid)) return false;
    return { userId: claims.sub, sessionId: claims.sid };
  }
}
