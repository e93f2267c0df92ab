/**
 * Which sessions are revoked, known in memory on every instance, so that verifying an access
 * token needs no Redis call. Revocations are published over Redis pub/sub: a few session ids
 * in the message itself, or, for many sessions of one user at once (log out everywhere), only
 * the user's id, each instance then reading that user's recent revocations from Redis, so that
 * a message stays small however many sessions a user had. After any (re)connection of either
 * Redis connection the recent list is reloaded from Redis, retried until it succeeds (the two
 * connections come back in either order), and again every REVOCATION_RELOAD_INTERVAL_MS in case a
 * publication was lost, so a revocation made while this instance was cut off is not missed. Both
 * periodic jobs (the reload, and pruning expired entries) are registered with the scheduler's
 * registry by this service and removed on shutdown. Until the first
 * reload has succeeded the instance is not ready (readiness): it could not tell a revoked
 * session's token from a live one. An entry lives only as long as an access token issued before
 * the revocation could.
 */
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { Redis } from 'ioredis';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { SessionRepository } from './session.repository.js';

const RELOAD_INTERVAL = 'auth-revocation-reload';
const PRUNE_INTERVAL = 'auth-revocation-prune';
const PRUNE_EVERY_MS = 60_000;
const RELOAD_RETRY_MIN_MS = 250;
const RELOAD_RETRY_MAX_MS = 5_000;
/** How long start-up waits for the first reload before going on without it (not ready yet). */
const FIRST_LOAD_WAIT_MS = 2_000;
/** Session ids a message names at most; more are announced by their user's id. */
const IDS_PER_MESSAGE = 16;

@Injectable()
export class RevocationService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RevocationService.name);
  private readonly revoked = new Map<string, number>();
  private readonly channel: string;
  private subscriber: Redis | undefined;
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloadRetryMs = RELOAD_RETRY_MIN_MS;
  private loaded = false;

  constructor(
    private readonly redis: RedisService,
    private readonly sessions: SessionRepository,
    private readonly scheduler: SchedulerRegistry,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.channel = `${config.redis.keyPrefix}revoked-sessions`;
  }

  async onModuleInit(): Promise<void> {
    const subscriber = this.redis.subscriber();
    subscriber.on('ready', () => this.scheduleReload(0));
    this.redis.client.on('ready', () => this.scheduleReload(0));
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.remember(message);
    });
    void subscriber.subscribe(this.channel).catch(() => undefined);
    this.subscriber = subscriber;
    // The reload's interval comes from the configuration, hence the registry rather than decorators.
    this.scheduler.addInterval(PRUNE_INTERVAL, setInterval(() => this.prune(), PRUNE_EVERY_MS).unref());
    this.scheduler.addInterval(
      RELOAD_INTERVAL,
      setInterval(() => this.scheduleReload(0), this.config.auth.revocationReloadIntervalMs).unref(),
    );
    // The command connection is usually up already (RedisService waited for it), in which case
    // the instance starts with the list loaded rather than becoming ready a moment later.
    if (this.redis.isUp()) await withTimeout(this.reload(), FIRST_LOAD_WAIT_MS);
  }

  /** True once the revoked sessions have been loaded from Redis at least once. */
  hasLoaded(): boolean {
    return this.loaded;
  }

  onApplicationShutdown(): void {
    for (const name of [RELOAD_INTERVAL, PRUNE_INTERVAL]) {
      if (this.scheduler.doesExist('interval', name)) this.scheduler.deleteInterval(name);
    }
    clearTimeout(this.reloadTimer);
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

  /**
   * Marks the user's sessions revoked here at once and tells every other instance (the
   * sessions are already recorded as revoked in Redis).
   */
  async announce(userId: string, sessionIds: string[], now: number): Promise<void> {
    const until = now + this.config.auth.accessTtlMs;
    for (const sid of sessionIds) this.revoked.set(sid, until);
    if (sessionIds.length === 0) return;
    const message = sessionIds.length <= IDS_PER_MESSAGE ? { sids: sessionIds, until } : { user: userId };
    await this.redis.client
      .publish(this.channel, JSON.stringify(message))
      .catch((error: Error) => this.logger.warn({ err: { message: error.message } }, 'revocation not published'));
  }

  private remember(message: string): void {
    try {
      const { sids, until, user } = JSON.parse(message) as { sids?: unknown; until?: unknown; user?: unknown };
      if (typeof user === 'string') void this.loadUser(user);
      if (!Array.isArray(sids) || typeof until !== 'number') return;
      for (const sid of sids) if (typeof sid === 'string') this.revoked.set(sid, until);
    } catch {
      this.logger.warn('ignored a malformed revocation message');
    }
  }

  /** Reads one user's recent revocations; should Redis fail, the full reload retries until it works. */
  private async loadUser(userId: string): Promise<void> {
    try {
      for (const { sid, until } of await this.sessions.recentlyRevokedOf(userId, Date.now())) this.revoked.set(sid, until);
    } catch (error) {
      this.logger.warn({ err: { message: (error as Error).message } }, 'could not read a user\'s revoked sessions; reloading');
      this.scheduleReload(0);
    }
  }

  /** One reload at a time, after `delayMs`; a reload already waiting is brought forward. */
  private scheduleReload(delayMs: number): void {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(), delayMs);
    this.reloadTimer.unref();
  }

  private async reload(): Promise<void> {
    this.reloadTimer = undefined;
    try {
      for (const { sid, until } of await this.sessions.recentlyRevoked(Date.now())) this.revoked.set(sid, until);
      this.loaded = true;
      this.reloadRetryMs = RELOAD_RETRY_MIN_MS;
    } catch (error) {
      this.logger.warn({ err: { message: (error as Error).message } }, 'could not reload revoked sessions; retrying');
      // Unless a newer reload is already scheduled (a connection came back meanwhile).
      if (!this.reloadTimer) this.scheduleReload(this.reloadRetryMs);
      this.reloadRetryMs = Math.min(this.reloadRetryMs * 2, RELOAD_RETRY_MAX_MS);
    }
  }

  private prune(): void {
    const now = Date.now();
    for (const [sid, until] of this.revoked) if (until <= now) this.revoked.delete(sid);
  }
}

/** Waits for `work` at most `ms`; `work` goes on either way (it handles its own failure). */
async function withTimeout(work: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
