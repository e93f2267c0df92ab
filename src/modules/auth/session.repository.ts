/**
 * Sessions in Redis.
 *
 *   sess:{sid}        hash: the session and the SHA-256 of its current refresh secret;
 *                     expires with the session's sliding lifetime
 *   sess:{sid}:used   set: hashes of secrets already rotated away (reuse detection)
 *   usess:{uid}       sorted set of the user's session ids by creation time (list, revoke-all)
 *   revoked           sorted set: recently revoked session ids, scored by when access tokens
 *                     issued for them have all expired (reloaded by every instance)
 *   urevoked:{uid}    the same, of one user only: what an instance reads when told that many
 *                     of that user's sessions were revoked at once
 *
 * The `{sid}` hash tag keeps one session's keys in one Cluster slot, so that rotation is one
 * Lua script: compare the presented hash, swap in the new one, slide the expiry, remember the
 * old hash — or, if the presented hash was already rotated away, delete the session (RFC 9700
 * §4.14.2: refresh-token reuse revokes the whole grant).
 */
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import type { RotationResult, Session } from './session.js';

const ROTATE_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'hash', 'absoluteExpiresAt', 'userId')
if not s[1] then return {'invalid'} end
local now = tonumber(ARGV[3])
if s[1] ~= ARGV[1] then
  if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {'reused', s[3]}
  end
  return {'invalid'}
end
local absolute = tonumber(s[2])
if now >= absolute then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'invalid'}
end
local expires = math.min(now + tonumber(ARGV[4]), absolute)
redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'lastUsedAt', now, 'expiresAt', expires)
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], absolute)
return {'rotated'}
`;

const sessionKey = (sid: string) => `sess:{${sid}}`;
const usedKey = (sid: string) => `sess:{${sid}}:used`;
const userKey = (uid: string) => `usess:${uid}`;
const userRevokedKey = (uid: string) => `urevoked:${uid}`;
const REVOKED_KEY = 'revoked';

@Injectable()
export class SessionRepository {
  constructor(
    private readonly redis: RedisService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async create(session: Session, refreshHash: string): Promise<void> {
    await this.run(() =>
      this.redis.client
        .multi()
        .hset(sessionKey(session.id), { ...toHash(session), hash: refreshHash })
        .pexpireat(sessionKey(session.id), session.expiresAt)
        .zadd(userKey(session.userId), session.createdAt, session.id)
        .pexpireat(userKey(session.userId), session.absoluteExpiresAt)
        .exec(),
    );
  }

  async find(sid: string): Promise<Session | undefined> {
    const fields = await this.run(() => this.redis.client.hgetall(sessionKey(sid)));
    return fromHash(sid, fields);
  }

  /** Atomically swaps `presentedHash` for `nextHash` (see the header). */
  async rotate(sid: string, presentedHash: string, nextHash: string, now: number): Promise<RotationResult> {
    const reply = (await this.run(() =>
      this.redis.client.eval(
        ROTATE_SCRIPT,
        2,
        sessionKey(sid),
        usedKey(sid),
        presentedHash,
        nextHash,
        String(now),
        String(this.config.auth.refreshTtlMs),
      ),
    )) as [string, string?];
    if (reply[0] === 'reused') return { outcome: 'reused', userId: reply[1]! };
    if (reply[0] !== 'rotated') return { outcome: 'invalid' };
    const session = await this.find(sid);
    return session ? { outcome: 'rotated', session } : { outcome: 'invalid' };
  }

  /** The user's live sessions, newest first; ids whose session has expired are pruned. */
  async listForUser(userId: string): Promise<Session[]> {
    const ids = await this.run(() => this.redis.client.zrevrange(userKey(userId), 0, -1));
    if (ids.length === 0) return [];
    const pipeline = this.redis.client.pipeline();
    for (const id of ids) pipeline.hgetall(sessionKey(id));
    const replies = (await this.run(() => pipeline.exec())) ?? [];
    const sessions: Session[] = [];
    const gone: string[] = [];
    ids.forEach((id, index) => {
      const session = fromHash(id, (replies[index]?.[1] ?? {}) as Record<string, string>);
      if (session && session.userId === userId) sessions.push(session);
      else gone.push(id);
    });
    if (gone.length) await this.run(() => this.redis.client.zrem(userKey(userId), ...gone));
    return sessions;
  }

  /** The ids of the user's sessions beyond the newest `keep` (by creation time), oldest first. */
  async oldestBeyond(userId: string, keep: number): Promise<string[]> {
    return this.run(() => this.redis.client.zrange(userKey(userId), 0, String(-(keep + 1))));
  }

  /**
   * Deletes the sessions and records them as revoked until every access token issued for them
   * has expired.
   */
  async revoke(userId: string, sids: string[], now: number): Promise<void> {
    if (sids.length === 0) return;
    const until = now + this.config.auth.accessTtlMs;
    const multi = this.redis.client.multi();
    for (const sid of sids) {
      multi.del(sessionKey(sid), usedKey(sid));
      multi.zadd(REVOKED_KEY, until, sid);
      multi.zadd(userRevokedKey(userId), until, sid);
    }
    multi.zrem(userKey(userId), ...sids);
    multi.zremrangebyscore(REVOKED_KEY, '-inf', now);
    multi.zremrangebyscore(userRevokedKey(userId), '-inf', now);
    multi.pexpireat(userRevokedKey(userId), until);
    await this.run(() => multi.exec());
  }

  /** Session ids revoked recently enough that access tokens for them may still be live. */
  async recentlyRevoked(now: number): Promise<Array<{ sid: string; until: number }>> {
    return this.revokedIn(REVOKED_KEY, now);
  }

  /** The same, of one user. */
  async recentlyRevokedOf(userId: string, now: number): Promise<Array<{ sid: string; until: number }>> {
    return this.revokedIn(userRevokedKey(userId), now);
  }

  private async revokedIn(key: string, now: number): Promise<Array<{ sid: string; until: number }>> {
    const flat = await this.run(() => this.redis.client.zrangebyscore(key, now, '+inf', 'WITHSCORES'));
    const entries: Array<{ sid: string; until: number }> = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ sid: flat[i]!, until: Number(flat[i + 1]) });
    return entries;
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      if (error instanceof ServiceUnavailableError) throw error;
      throw new ServiceUnavailableError('the session store is unavailable; try again shortly');
    }
  }
}

function toHash(session: Session): Record<string, string> {
  return {
    userId: session.userId,
    userAgent: session.userAgent,
    ip: session.ip,
    createdAt: String(session.createdAt),
    lastUsedAt: String(session.lastUsedAt),
    expiresAt: String(session.expiresAt),
    absoluteExpiresAt: String(session.absoluteExpiresAt),
  };
}

function fromHash(id: string, fields: Record<string, string>): Session | undefined {
  if (!fields.userId) return undefined;
  return {
    id,
    userId: fields.userId,
    userAgent: fields.userAgent ?? '',
    ip: fields.ip ?? '',
    createdAt: Number(fields.createdAt),
    lastUsedAt: Number(fields.lastUsedAt),
    expiresAt: Number(fields.expiresAt),
    absoluteExpiresAt: Number(fields.absoluteExpiresAt),
  };
}
