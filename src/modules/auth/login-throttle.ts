/**
 * Brute-force protection for login, in Redis so that it holds across instances
 * (rate-limiter-flexible). Every attempt takes one point from its email's and its client IP's
 * budget within a window *before* the password is checked, so guesses sent at the same time
 * cannot all slip through before the first failure is counted; an attempt over either budget
 * is refused (429) and blocks that key for LOGIN_BLOCK_SECONDS, after which it decays, so an
 * owner is never locked out for good. A successful login clears its email's count and gives
 * its IP its point back: the budgets count failures.
 */
import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';

const WINDOW_SECONDS = 15 * 60;

@Injectable()
export class LoginThrottle {
  private readonly byEmail: RateLimiterRedis;
  private readonly byIp: RateLimiterRedis;

  constructor(redis: RedisService, @Inject(APP_CONFIG) config: AppConfig) {
    const common = {
      storeClient: redis.client,
      duration: WINDOW_SECONDS,
      blockDuration: config.auth.loginBlockSeconds,
      rejectIfRedisNotReady: true,
    };
    this.byEmail = new RateLimiterRedis({ ...common, keyPrefix: 'login-email', points: config.auth.loginMaxFailuresPerEmail });
    this.byIp = new RateLimiterRedis({ ...common, keyPrefix: 'login-ip', points: config.auth.loginMaxFailuresPerIp });
  }

  /**
   * Takes this attempt's point from the email's and the IP's budgets; throws `RateLimitedError`
   * when either is spent (or blocked), having given back the point the other one took.
   */
  async begin(email: string, ip: string): Promise<void> {
    const attempts = await Promise.allSettled([this.byEmail.consume(email), this.byIp.consume(ip)]);
    const refused = attempts.filter((a): a is PromiseRejectedResult => a.status === 'rejected').map((a) => a.reason as unknown);
    if (refused.length === 0) return;
    const giveBack = [
      attempts[0].status === 'fulfilled' ? this.byEmail.reward(email) : null,
      attempts[1].status === 'fulfilled' ? this.byIp.reward(ip) : null,
    ];
    await Promise.allSettled(giveBack);
    // A refusal is a RateLimiterRes; anything else is the store failing.
    if (!refused.every((reason) => reason instanceof RateLimiterRes)) {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
    const wait = Math.max(...refused.map((res) => (res as RateLimiterRes).msBeforeNext), 1000);
    throw new RateLimitedError(Math.ceil(wait / 1000));
  }

  /** The attempt begun for this email and IP succeeded. */
  async succeeded(email: string, ip: string): Promise<void> {
    await this.guard(() => Promise.all([this.byEmail.delete(email), this.byIp.reward(ip)]));
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
  }
}
