/**
 * Verifies access tokens without a database or Redis round trip: signature (HS256 only, so
 * `none` and algorithm confusion are refused), `exp`, `iss`, `aud`, the claims' shape, and that
 * the session has not been revoked (in-memory, kept current by RevocationService).
 */
import { createSecretKey } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RevocationService } from './revocation.service.js';

export const JWT_ALGORITHM = 'HS256';

export interface AccessClaims {
  sub: string;
  sid: string;
}

export interface AuthenticatedUser {
  userId: string;
  sessionId: string;
}

@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly revocations: RevocationService,
  ) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      // A KeyObject made once: given a string, jsonwebtoken would try to parse it as a PEM
      // public key on every request (and throw) before making it a secret key.
      secretOrKey: createSecretKey(Buffer.from(config.auth.jwtSecret, 'utf8')) as unknown as string,
      algorithms: [JWT_ALGORITHM],
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      ignoreExpiration: false,
    });
  }

  validate(claims: Partial<AccessClaims>): AuthenticatedUser | false {
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') return false;
    if (this.revocations.isRevoked(claims.sid)) return false;
    return { userId: claims.sub, sessionId: claims.sid };
  }
}
