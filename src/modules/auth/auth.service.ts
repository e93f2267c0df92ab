/**
 * Registration and login. Registration is throttled per IP and its hash waits behind every
 * password check; a refused registration (throttle, full hash queue) is answered after a pause,
 * so that clients resending as soon as they are answered cannot turn refusals into the load.
 * Login is throttled per email and per IP (LoginThrottle), answers the same way for an unknown
 * email and a wrong password (and spends the same time on both), and upgrades a hash made with
 * older argon2 parameters.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import { InvalidCredentialsError, RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { normaliseEmail, toPublicUser, type PublicUser, type User } from '../users/user.js';
import { UsersRepository } from '../users/users.repository.js';
import { LoginThrottle } from './login-throttle.js';
import { PasswordHasher } from './password-hasher.js';
import { RegistrationThrottle } from './registration-throttle.js';
import { SessionsService } from './sessions.service.js';
import type { ClientInfo, TokenPair } from './token-pair.js';
import { newId } from '../../common/util/ids.js';

export interface Registration {
  email: string;
  password: string;
  name: string;
}

@Injectable()
export class AuthService {
  private readonly logger = new Logger(AuthService.name);
  private readonly refusalPauseMs: number;

  constructor(
    private readonly users: UsersRepository,
    private readonly hasher: PasswordHasher,
    private readonly throttle: LoginThrottle,
    private readonly sessions: SessionsService,
    private readonly registrations: RegistrationThrottle,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.refusalPauseMs = config.auth.registerRefusalPauseMs;
  }

  async register(ctx: RequestContext, input: Registration, client: ClientInfo): Promise<PublicUser> {
    let passwordHash: string;
    try {
      // A flood is refused while the hash queue is full before it costs even a throttle round trip.
      this.hasher.assertRoomFor('registration');
      await this.registrations.take(client.ip);
      passwordHash = await this.hasher.hash(input.password, ctx, 'registration');
    } catch (error) {
      // Answered at once, a refusal is what a client resending at once turns into its load: the
      // event loop answering thousands of them a second delays every login beside them.
      if (error instanceof ServiceUnavailableError || error instanceof RateLimitedError) await pause(ctx, this.refusalPauseMs);
      throw error;
    }
    const now = new Date();
    const user: User = {
      id: newId(),
      email: normaliseEmail(input.email),
      name: input.name.trim(),
      passwordHash,
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    await this.users.insert(ctx, user);
    return toPublicUser(user);
  }

  async login(ctx: RequestContext, email: string, password: string, client: ClientInfo): Promise<TokenPair> {
    const normalised = normaliseEmail(email);
    // The attempt counts against the budgets before the password is checked: see LoginThrottle.
    const attempt = await this.throttle.begin(normalised, client.ip);
    let user: User | undefined;
    let valid: boolean;
    try {
      user = await this.users.findByEmail(ctx, normalised);
      valid = user ? await this.hasher.verify(user.passwordHash, password, ctx) : await this.hasher.verifyDummy(password, ctx);
    } catch (error) {
      // Not a guess: the check could not be made (PostgreSQL down, the deadline, a full hash
      // queue), so clients retrying through an outage are not blocked once it is over.
      await this.throttle.cancelled(attempt);
      throw error;
    }
    if (!user || !valid) {
      await this.throttle.failed(attempt);
      throw new InvalidCredentialsError();
    }
    await this.throttle.succeeded(attempt);
    let verifiedHash = user.passwordHash;
    if (this.hasher.needsRehash(user.passwordHash)) verifiedHash = await this.upgradeHash(ctx, user, password);
    // A password change that ran while this password was being checked revoked the sessions it
    // could see, not this one, started after it: withdraw it as if the password had been wrong.
    // A hash that differs may be another login's rehash of the same password: only a password
    // the stored hash no longer accepts withdraws the session.
    const pair = await this.sessions.startChecked(user.id, client, async () => {
      const stored = await this.users.passwordHashOf(ctx, user.id);
      if (stored === verifiedHash) return true;
      return stored !== undefined && (await this.hasher.verify(stored, password, ctx));
    });
    if (!pair) throw new InvalidCredentialsError();
    return pair;
  }

  /** Rehashes with today's parameters; the hash stored afterwards (the old one if that failed). */
  private async upgradeHash(ctx: RequestContext, user: User, password: string): Promise<string> {
    try {
      const upgraded = await this.hasher.hash(password, ctx);
      return (await this.users.rehashPassword(ctx, user.id, user.passwordHash, upgraded)) ? upgraded : user.passwordHash;
    } catch (error) {
      // The login itself succeeded; the upgrade is retried at the next one.
      this.logger.warn({ err: { message: (error as Error).message }, userId: user.id }, 'password rehash failed');
      return user.passwordHash;
    }
  }
}

/** Waits `ms`, or less if the request's deadline comes first or its client goes. */
function pause(ctx: RequestContext, ms: number): Promise<void> {
  const wait = Math.min(ms, ctx.remainingMs());
  if (wait <= 0 || ctx.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = ctx.onAbort(() => {
      clearTimeout(timer);
      resolve();
    });
    const timer = setTimeout(() => {
      stop();
      resolve();
    }, wait);
  });
}
