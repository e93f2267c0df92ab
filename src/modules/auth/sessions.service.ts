/**
 * Session use cases shared by auth and profile: start a session (token pair), rotate its
 * refresh token, list, and revoke — revocation also kills the session's access tokens on every
 * instance (RevocationService). A user holds at most SESSION_MAX_PER_USER sessions: a new one
 * past that revokes the oldest.
 */
import { Inject, Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { InvalidRefreshTokenError, NotFoundError } from '../../common/errors/domain-errors.js';
import { newRefreshSecret, parseRefreshToken } from './refresh-token.js';
import { RevocationService } from './revocation.service.js';
import type { Session } from './session.js';
import { SessionRepository } from './session.repository.js';
import type { ClientInfo, SessionView, TokenPair } from './token-pair.js';
import { newId } from '../../common/util/ids.js';

@Injectable()
export class SessionsService {
  constructor(
    private readonly sessions: SessionRepository,
    private readonly revocations: RevocationService,
    private readonly jwt: JwtService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Starts a session on credentials just checked, then asks `stillValid` whether they still hold
   * now that the session exists; if not (the password changed meanwhile, and that change
   * revoked only the sessions it could see), the session is revoked and `undefined` returned.
   */
  async startChecked(userId: string, client: ClientInfo, stillValid: () => Promise<boolean>): Promise<TokenPair | undefined> {
    const { sessionId, pair } = await this.open(userId, client, Date.now());
    let valid = false;
    try {
      valid = await stillValid();
    } finally {
      // Withdrawn too when the check could not be made: its tokens are never handed out.
      if (!valid) await this.revoke(userId, [sessionId]);
    }
    return valid ? pair : undefined;
  }

  private async open(userId: string, client: ClientInfo, now: number): Promise<{ sessionId: string; pair: TokenPair }> {
    const { refreshTtlMs, sessionMaxTtlMs } = this.config.auth;
    const session: Session = {
      id: newId(),
      userId,
      userAgent: client.userAgent.slice(0, 256),
      ip: client.ip,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: Math.min(now + refreshTtlMs, now + sessionMaxTtlMs),
      absoluteExpiresAt: now + sessionMaxTtlMs,
    };
    const refresh = newRefreshSecret(session.id);
    await this.sessions.create(session, refresh.hash);
    await this.revoke(userId, await this.sessions.oldestBeyond(userId, this.config.auth.sessionMaxPerUser), now);
    return { sessionId: session.id, pair: await this.tokenPair(userId, session.id, refresh.token) };
  }

  /**
   * Rotates a refresh token: the presented one dies, a new pair is issued. Presenting a token
   * that was already rotated away revokes the whole session, access token included.
   */
  async refresh(refreshToken: string, now = Date.now()): Promise<TokenPair> {
    const parsed = parseRefreshToken(refreshToken);
    if (!parsed) throw new InvalidRefreshTokenError();
    const next = newRefreshSecret(parsed.sessionId);
    const result = await this.sessions.rotate(parsed.sessionId, parsed.hash, next.hash, now);
    if (result.outcome === 'reused') {
      await this.revoke(result.userId, [parsed.sessionId], now);
      throw new InvalidRefreshTokenError();
    }
    if (result.outcome !== 'rotated') throw new InvalidRefreshTokenError();
    return this.tokenPair(result.session.userId, parsed.sessionId, next.token);
  }

  async list(userId: string, currentSessionId: string | undefined): Promise<SessionView[]> {
    const sessions = await this.sessions.listForUser(userId);
    return sessions
      .sort((a, b) => b.createdAt - a.createdAt)
      .map((s) => ({
        id: s.id,
        userAgent: s.userAgent,
        ip: s.ip,
        createdAt: new Date(s.createdAt).toISOString(),
        lastUsedAt: new Date(s.lastUsedAt).toISOString(),
        expiresAt: new Date(s.expiresAt).toISOString(),
        current: s.id === currentSessionId,
      }));
  }

  /** Revokes one of the user's sessions; someone else's (or a missing) one is a 404. */
  async revokeOwn(userId: string, sessionId: string): Promise<void> {
    const session = await this.sessions.find(sessionId);
    if (!session || session.userId !== userId) throw new NotFoundError('session');
    await this.revoke(userId, [sessionId]);
  }

  /** Revokes every session of the user, or every one but `keep`. */
  async revokeAll(userId: string, keep?: string): Promise<void> {
    const sessions = await this.sessions.listForUser(userId);
    await this.revoke(
      userId,
      sessions.map((s) => s.id).filter((id) => id !== keep),
    );
  }

  async revoke(userId: string, sessionIds: string[], now = Date.now()): Promise<void> {
    if (sessionIds.length === 0) return;
    await this.sessions.revoke(userId, sessionIds, now);
    await this.revocations.announce(userId, sessionIds, now);
  }

  private async tokenPair(userId: string, sessionId: string, refreshToken: string): Promise<TokenPair> {
    const accessToken = await this.jwt.signAsync({ sid: sessionId }, { subject: userId });
    return {
      accessToken,
      refreshToken,
      tokenType: 'Bearer',
      expiresIn: Math.floor(this.config.auth.accessTtlMs / 1000),
    };
  }
}
