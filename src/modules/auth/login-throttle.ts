/**
 * Brute-force protection for password checks, in Redis so that it holds across instances
 * (rate-limiter-flexible). Every login attempt takes one point from its email's and its client
 * IP's budget within a window *before* the password is checked, so guesses sent at the same
 * time cannot all slip through before the first failure is counted; an attempt over either
 * budget is refused (429) and blocks that key for LOGIN_BLOCK_SECONDS, after which it decays,
 * so an owner is never locked out for good. A successful login clears its email's count and
 * gives its IP its point back: the budgets count failures. A password change's check of the
 * current password has its own budget per user (LOGIN_MAX_FAILURES_PER_EMAIL), so that a
 * stolen access token cannot be used to guess the password and take the account over.
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
  private readonly byUser: RateLimiterRedis;

  constructor(redis: RedisService, @Inject(APP_CONFIG) config: AppConfig) {
    const common = {
      storeClient: redis.client,
      duration: WINDOW_SECONDS,
      blockDuration: config.auth.loginBlockSeconds,
      rejectIfRedisNotReady: true,
    };
    this.byEmail = new RateLimiterRedis({ ...common, keyPrefix: 'login-email', points: config.auth.loginMaxFailuresPerEmail });
    this.byIp = new RateLimiterRedis({ ...common, keyPrefix: 'login-ip', points: config.auth.loginMaxFailuresPerIp });
    this.byUser = new RateLimiterRedis({ ...common, keyPrefix: 'password-user', points: config.auth.loginMaxFailuresPerEmail });
  }

  /**
   * Takes this attempt's point from the email's and the IP's budgets; throws `RateLimitedError`
   * when either is spent (or blocked), having given back the point the other one took.
   */
  async begin(email: string, ip: string): Promise<void> {
    await this.take([
      [this.byEmail, email],
      [this.byIp, ip],
    ]);
  }

  /** The attempt begun for this email and IP succeeded. */
  async succeeded(email: string, ip: string): Promise<void> {
    await this.guard(() => Promise.all([this.byEmail.delete(email), this.byIp.reward(ip)]));
  }

  /** The attempt begun for this email and IP could not be checked: both points back, if Redis lets. */
  async cancelled(email: string, ip: string): Promise<void> {
    await Promise.allSettled([this.byEmail.reward(email), this.byIp.reward(ip)]);
  }

  /** Takes a point from the user's budget for checking their current password. */
  async beginPasswordCheck(userId: string): Promise<void> {
    await this.take([[this.byUser, userId]]);
  }

  /** The user's current password was right: their count starts again. */
  async passwordCheckSucceeded(userId: string): Promise<void> {
    await this.guard(() => this.byUser.delete(userId));
  }

  private async take(budgets: Array<[RateLimiterRedis, string]>): Promise<void> {
    const attempts = await Promise.allSettled(budgets.map(([limiter, key]) => limiter.consume(key)));
    const refused = attempts.filter((a): a is PromiseRejectedResult => a.status === 'rejected').map((a) => a.reason as unknown);
    if (refused.length === 0) return;
    await Promise.allSettled(
      budgets.map(([limiter, key], i) => (attempts[i]!.status === 'fulfilled' ? limiter.reward(key) : null)),
    );
    // A refusal is a RateLimiterRes; anything else is the store failing.
    if (!refused.every((reason) => reason instanceof RateLimiterRes)) {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
    const wait = Math.max(...refused.map((res) => (res as RateLimiterRes).msBeforeNext), 1000);
    throw new RateLimitedError(Math.ceil(wait / 1000));
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
  }
}
