/**
 * Brute-force protection for password checks, in Redis so that it holds across instances. The
 * policy, with its numbers, is in docs/security.md; in short:
 *
 * - A budget (an email, a client IP, a user's current-password checks) allows `max` failures
 *   within a sliding window: a failure counts for the whole window, whatever blocks came
 *   between. Every attempt takes its place in the budget *before* the password is checked, so
 *   guesses sent at the same time cannot all slip through; a success or an attempt that could
 *   not be checked gives its place back.
 * - A failure that leaves the budget spent also blocks it, for LOGIN_BLOCK_SECONDS the first
 *   time and twice as long each further time (up to LOGIN_BLOCK_MAX_SECONDS); the escalation is
 *   forgotten a day after the last failure. A spent or blocked budget answers 429 with the time
 *   until both the block ends and its oldest failure leaves the window.
 * - An address from which the account has logged in successfully (the last ten, for 30 days)
 *   has an email budget of its own, which attempts from anywhere else cannot spend: someone
 *   guessing from other addresses cannot lock the owner out of a device they already use.
 * - Addresses count as `addressBucket` makes them: an IPv6 client per /64.
 *
 * Keys (each budget under one hash tag, so that its scripts touch one Cluster slot):
 *   login-email:{h}:a|s             attempts (sorted set, by time) and state (block, level) of
 *                                   the email whose SHA-256 starts with h
 *   login-email:{h}:known           addresses that logged in to it, by the time they last did
 *   login-email:{h}:from:<ip>:a|s   the budget of one of those addresses
 *   login-ip:{ip}:a|s               a client IP's budget
 *   password-user:{id}:a|s          a user's budget for checks of their current password
 */
import { createHash, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { addressBucket } from './address-bucket.js';

const KNOWN_ADDRESSES_KEPT = 10;
const KNOWN_ADDRESS_MS = 30 * 86_400_000;
const ESCALATION_MEMORY_MS = 86_400_000;

/** Lua: takes a place in one budget, or answers how many ms until one is free. */
const TAKE_FUNCTION = `
local function take(attempts, state, now, window, max, id)
  redis.call('ZREMRANGEBYSCORE', attempts, '-inf', string.format('%.0f', now - window))
  local wait = 0
  local blocked = tonumber(redis.call('HGET', state, 'blockedUntil') or '0')
  if blocked > now then wait = blocked - now end
  if redis.call('ZCARD', attempts) >= max then
    local oldest = redis.call('ZRANGE', attempts, 0, 0, 'WITHSCORES')
    local free = tonumber(oldest[2]) + window - now
    if free > wait then wait = free end
  end
  if wait > 0 then return wait end
  redis.call('ZADD', attempts, string.format('%.0f', now), id)
  redis.call('PEXPIRE', attempts, window)
  return 0
end
`;

/** KEYS: attempts, state. ARGV: now, window, max, attempt id. */
const TAKE_SCRIPT = `${TAKE_FUNCTION}
return take(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
`;

/**
 * KEYS: known addresses, the email's attempts and state, the address's attempts and state.
 * ARGV: now, window, max, attempt id, address, how long an address stays known.
 * Answers {1 if the address's own budget was used, wait}.
 */
const TAKE_EMAIL_SCRIPT = `${TAKE_FUNCTION}
local now = tonumber(ARGV[1])
local since = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[5]) or '0')
if since > now - tonumber(ARGV[6]) then
  return {1, take(KEYS[4], KEYS[5], now, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])}
end
return {0, take(KEYS[2], KEYS[3], now, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])}
`;

/**
 * A failure was recorded (its attempt stays in the window): if the budget is now spent and not
 * already blocked, it is blocked, each time twice as long. KEYS: attempts, state. ARGV: now,
 * window, max, first block, longest block, how long the escalation is remembered (all ms).
 */
const FAIL_SCRIPT = `
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[2])))
local blocked = tonumber(redis.call('HGET', KEYS[2], 'blockedUntil') or '0')
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) and blocked <= now then
  local level = redis.call('HINCRBY', KEYS[2], 'level', 1)
  local block = math.min(tonumber(ARGV[4]) * math.pow(2, level - 1), tonumber(ARGV[5]))
  redis.call('HSET', KEYS[2], 'blockedUntil', string.format('%.0f', now + block))
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
`;

interface Budget {
  attempts: string;
  state: string;
  max: number;
}

/** A login attempt that holds a place in its email's (or address's) and its IP's budgets. */
export interface LoginAttempt {
  readonly id: string;
  readonly email: Budget;
  readonly ip: Budget;
  readonly emailHash: string;
  readonly address: string;
  /** The address has logged in to this account before: its own budget was used. */
  readonly fromKnownAddress: boolean;
}

/** A check of a user's current password that holds a place in the user's budget. */
export interface PasswordCheck {
  readonly id: string;
  readonly budget: Budget;
}

@Injectable()
export class LoginThrottle {
  private readonly windowMs: number;
  private readonly blockMs: number;
  private readonly blockMaxMs: number;
  private readonly memoryMs: number;

  constructor(
    private readonly redis: RedisService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.windowMs = config.auth.loginWindowSeconds * 1000;
    this.blockMs = config.auth.loginBlockSeconds * 1000;
    this.blockMaxMs = config.auth.loginBlockMaxSeconds * 1000;
    this.memoryMs = Math.max(ESCALATION_MEMORY_MS, this.blockMaxMs + this.windowMs);
  }

  /**
   * Takes this attempt's place in its email's budget (the address's own, if it has logged in
   * to the account before) and its IP's; throws `RateLimitedError` when either is spent or
   * blocked, having given back the place the other one took.
   */
  async begin(email: string, clientIp: string): Promise<LoginAttempt> {
    const id = randomUUID();
    const ip = addressBucket(clientIp);
    const emailHash = createHash('sha256').update(email).digest('hex').slice(0, 32);
    const ipBudget = this.budget(`login-ip:{${ip}}`, this.config.auth.loginMaxFailuresPerIp);
    const emailTag = `login-email:{${emailHash}}`;
    const shared = this.budget(emailTag, this.config.auth.loginMaxFailuresPerEmail);
    const own = this.budget(`${emailTag}:from:${ip}`, this.config.auth.loginMaxFailuresPerEmail);
    const now = Date.now();
    const [emailTaken, ipTaken] = await Promise.allSettled([
      this.redis.client.eval(
        TAKE_EMAIL_SCRIPT,
        5,
        `${emailTag}:known`,
        shared.attempts,
        shared.state,
        own.attempts,
        own.state,
        now,
        this.windowMs,
        shared.max,
        id,
        ip,
        KNOWN_ADDRESS_MS,
      ) as Promise<[number, number]>,
      this.takeOne(ipBudget, id, now),
    ]);
    const fromKnownAddress = emailTaken.status === 'fulfilled' && emailTaken.value[0] === 1;
    const emailBudget = fromKnownAddress ? own : shared;
    await this.settle(id, [
      [emailBudget, emailTaken.status === 'fulfilled' ? { status: 'fulfilled', value: emailTaken.value[1] } : emailTaken],
      [ipBudget, ipTaken],
    ]);
    return { id, email: emailBudget, ip: ipBudget, emailHash, address: ip, fromKnownAddress };
  }

  /** The password was wrong: the attempt stays counted, and may block its budgets. */
  async failed(attempt: LoginAttempt): Promise<void> {
    await this.guard(() => Promise.all([this.fail(attempt.email), this.fail(attempt.ip)]));
  }

  /**
   * The password was right: the attempt's places are given back (the budgets count failures),
   * the address's own budget starts again, and the address is known to the account from now on.
   */
  async succeeded(attempt: LoginAttempt): Promise<void> {
    const known = `login-email:{${attempt.emailHash}}:known`;
    const multi = this.redis.client
      .multi()
      .zrem(attempt.ip.attempts, attempt.id)
      .zadd(known, Date.now(), attempt.address)
      .zremrangebyrank(known, 0, -(KNOWN_ADDRESSES_KEPT + 1))
      .pexpire(known, KNOWN_ADDRESS_MS);
    if (attempt.fromKnownAddress) multi.del(attempt.email.attempts, attempt.email.state);
    else multi.zrem(attempt.email.attempts, attempt.id);
    await this.guard(() => multi.exec());
  }

  /** The attempt could not be checked (PostgreSQL down, the deadline): its places back, if Redis lets. */
  async cancelled(attempt: LoginAttempt): Promise<void> {
    await Promise.allSettled([
      this.redis.client.zrem(attempt.email.attempts, attempt.id),
      this.redis.client.zrem(attempt.ip.attempts, attempt.id),
    ]);
  }

  /** Takes a place in the user's budget for checking their current password. */
  async beginPasswordCheck(userId: string): Promise<PasswordCheck> {
    const id = randomUUID();
    const budget = this.budget(`password-user:{${userId}}`, this.config.auth.loginMaxFailuresPerEmail);
    const taken = await Promise.allSettled([this.takeOne(budget, id, Date.now())]);
    await this.settle(id, [[budget, taken[0]]]);
    return { id, budget };
  }

  async passwordCheckFailed(check: PasswordCheck): Promise<void> {
    await this.guard(() => this.fail(check.budget));
  }

  /** The user's current password was right: their count starts again. */
  async passwordCheckSucceeded(check: PasswordCheck): Promise<void> {
    await this.guard(() => this.redis.client.del(check.budget.attempts, check.budget.state));
  }

  async passwordCheckCancelled(check: PasswordCheck): Promise<void> {
    await this.redis.client.zrem(check.budget.attempts, check.id).catch(() => undefined);
  }

  private budget(tag: string, max: number): Budget {
    return { attempts: `${tag}:a`, state: `${tag}:s`, max };
  }

  private takeOne(budget: Budget, id: string, now: number): Promise<number> {
    return this.redis.client.eval(TAKE_SCRIPT, 2, budget.attempts, budget.state, now, this.windowMs, budget.max, id) as Promise<number>;
  }

  private fail(budget: Budget): Promise<unknown> {
    return this.redis.client.eval(
      FAIL_SCRIPT,
      2,
      budget.attempts,
      budget.state,
      Date.now(),
      this.windowMs,
      budget.max,
      this.blockMs,
      this.blockMaxMs,
      this.memoryMs,
    );
  }

  /**
   * Throws unless every budget gave a place (a wait of 0), giving back the places that were
   * taken: `ServiceUnavailableError` when Redis failed, `RateLimitedError` with the longest
   * wait otherwise.
   */
  private async settle(id: string, outcomes: Array<[Budget, PromiseSettledResult<number>]>): Promise<void> {
    const refused = outcomes.filter(([, outcome]) => outcome.status === 'rejected' || outcome.value > 0);
    if (refused.length === 0) return;
    const taken = outcomes.filter(([, outcome]) => outcome.status === 'fulfilled' && outcome.value === 0);
    await Promise.allSettled(taken.map(([budget]) => this.redis.client.zrem(budget.attempts, id)));
    if (refused.some(([, outcome]) => outcome.status === 'rejected')) {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
    const waitMs = Math.max(...refused.map(([, outcome]) => (outcome as PromiseFulfilledResult<number>).value));
    throw new RateLimitedError(Math.max(1, Math.ceil(waitMs / 1000)));
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch {
      throw new ServiceUnavailableError('the login throttle store is unavailable; try again shortly');
    }
  }
}
