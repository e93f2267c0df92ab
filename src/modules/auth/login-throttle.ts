/**
 * Brute-force protection for login, in Redis so that it holds across instances
 * (rate-limiter-flexible). Failed attempts are counted per email and per client IP within a
 * window; past the limit the key is blocked for LOGIN_BLOCK_SECONDS, then decays, so an owner
 * is never locked out for good. A successful login clears the email's count.
 */
import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterRedis, type RateLimiterRes } from 'rate-limiter-flexible';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';

const WINDOW_SECONDS = 15 * 60;

@Injectable()
export class LoginThrottle {
  private readonly byEmail: RateLimiterRedis;
  private readonly byIp: RateLimiterRedis;

  constructor(redis: RedisService, @Inject(APP_CONFIG) private readonly config: AppConfig) {
    const common = { storeClient: redis.client, duration: WINDOW_SECONDS, rejectIfRedisNotReady: true };
    this.byEmail = new RateLimiterRedis({ ...common, keyPrefix: 'login-email', points: config.auth.loginMaxFailuresPerEmail });
    this.byIp = new RateLimiterRedis({ ...common, keyPrefix: 'login-ip', points: config.auth.loginMaxFailuresPerIp });
  }

  /** Throws `RateLimitedError` when this email or this IP is blocked right now. */
  async assertAllowed(email: string, ip: string): Promise<void> {
    const [emailState, ipState] = await this.guard(() => Promise.all([this.byEmail.get(email), this.byIp.get(ip)]));
    const waits = [
      blockedFor(emailState, this.config.auth.loginMaxFailuresPerEmail),
      blockedFor(ipState, this.config.auth.loginMaxFailuresPerIp),
    ];
    const wait = Math.max(...waits);
    if (wait > 0) throw new RateLimitedError(Math.ceil(wait / 1000));
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    const block = this.config.auth.loginBlockSeconds;
    await this.guard(async () => {
      const [emailState, ipState] = await Promise.all([this.byEmail.penalty(email), this.byIp.penalty(ip)]);
      await Promise.all([
        emailState.consumedPoints >= this.config.auth.loginMaxFailuresPerEmail ? this.byEmail.block(email, block) : null,
        ipState.consumedPoints >= this.config.auth.loginMaxFailuresPerIp ? this.byIp.block(ip, block) : null,
      ]);
    });
  }

  async recordSuccess(email: string): Promise<void> {
    await this.guard(() => this.byEmail.delete(email));
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
  }
}

function blockedFor(state: RateLimiterRes | null, limit: number): number {
  return state && state.consumedPoints >= limit ? Math.max(state.msBeforeNext, 1000) : 0;
}
