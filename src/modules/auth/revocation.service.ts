/**
 * Which sessions are revoked, known in memory on every instance, so that verifying an access
 * token needs no Redis call. Revocations are published over Redis pub/sub; after any
 * (re)connection of the subscriber the recent list is reloaded from Redis, so a revocation
 * made while this instance was cut off is not missed. An entry lives only as long as an access
 * token issued before the revocation could.
 */
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { Redis } from 'ioredis';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { SessionRepository } from './session.repository.js';

const PRUNE_EVERY_MS = 60_000;

@Injectable()
export class RevocationService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RevocationService.name);
  private readonly revoked = new Map<string, number>();
  private readonly channel: string;
  private subscriber: Redis | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisService,
    private readonly sessions: SessionRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.channel = `${config.redis.keyPrefix}revoked-sessions`;
  }

  onModuleInit(): void {
    const subscriber = this.redis.subscriber();
    subscriber.on('ready', () => void this.reload());
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.remember(message);
    });
    void subscriber.subscribe(this.channel).catch(() => undefined);
    this.subscriber = subscriber;
    this.pruneTimer = setInterval(() => this.prune(), PRUNE_EVERY_MS);
    this.pruneTimer.unref();
  }

  onApplicationShutdown(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
  }

  isRevoked(sessionId: string): boolean {
    const until = this.revoked.get(sessionId);
    if (until === undefined) return false;
    if (until <= Date.now()) {
      this.revoked.delete(sessionId);
      return false;
    }
    return true;
  }

  /** Marks the sessions revoked here at once and tells every other instance. */
  async announce(sessionIds: string[], now: number): Promise<void> {
    const until = now + this.config.auth.accessTtlMs;
    for (const sid of sessionIds) this.revoked.set(sid, until);
    if (sessionIds.length === 0) return;
    await this.redis.client
      .publish(this.channel, JSON.stringify({ sids: sessionIds, until }))
      .catch((error: Error) => this.logger.warn({ err: { message: error.message } }, 'revocation not published'));
  }

  private remember(message: string): void {
    try {
      const { sids, until } = JSON.parse(message) as { sids: unknown; until: unknown };
      if (!Array.isArray(sids) || typeof until !== 'number') return;
      for (const sid of sids) if (typeof sid === 'string') this.revoked.set(sid, until);
    } catch {
      this.logger.warn('ignored a malformed revocation message');
    }
  }

  private async reload(): Promise<void> {
    try {
      for (const { sid, until } of await this.sessions.recentlyRevoked(Date.now())) this.revoked.set(sid, until);
    } catch (error) {
      this.logger.warn({ err: { message: (error as Error).message } }, 'could not reload revoked sessions');
    }
  }

  private prune(): void {
    const now = Date.now();
    for (const [sid, until] of this.revoked) if (until <= now) this.revoked.delete(sid);
  }
}
