/**
 * Registrations per client IP (an IPv6 client per /64: `addressBucket`) within a fixed window
 * (REGISTER_MAX_PER_IP per REGISTER_WINDOW_SECONDS), in Redis so that it holds across
 * instances. Every registration that reaches it counts, whatever its outcome: each costs a
 * password hash, and each answer (201, or 409 EMAIL_TAKEN) tells whether an address has an
 * account, so the throttle is also what bounds how fast one can enumerate accounts
 * (docs/security.md). While Redis is unreachable the same limit is kept in this instance's
 * memory instead: registration needs only PostgreSQL.
 */
import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { addressBucket } from './address-bucket.js';

@Injectable()
export class RegistrationThrottle {
  private readonly byIp: RateLimiterRedis;

  constructor(redis: RedisService, @Inject(APP_CONFIG) config: AppConfig) {
    const limits = { points: config.auth.registerMaxPerIp, duration: config.auth.registerWindowSeconds };
    this.byIp = new RateLimiterRedis({
      ...limits,
      storeClient: redis.client,
      keyPrefix: 'register-ip',
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ ...limits, keyPrefix: 'register-ip' }),
    });
  }

  /** Counts a registration from `ip`; throws `RateLimitedError` past the limit. */
  async take(ip: string): Promise<void> {
    try {
      await this.byIp.consume(addressBucket(ip));
    } catch (refusal) {
      if (refusal instanceof RateLimiterRes) throw new RateLimitedError(Math.max(1, Math.ceil(refusal.msBeforeNext / 1000)));
      throw new ServiceUnavailableError('the registration throttle is unavailable; try again shortly');
    }
  }
}
