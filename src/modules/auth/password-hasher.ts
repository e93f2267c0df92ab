/**
 * argon2id password hashing at no less than OWASP's parameters (m = 19 MiB, t = 2, p = 1).
 * argon2 runs on libuv's thread pool, off the event loop, behind a bounded queue that serves
 * password checks before registrations (HashQueue). A login for an unknown email still spends
 * one verification against a fixed dummy hash, so its timing matches a wrong password.
 */
import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import argon2 from 'argon2';
import type { RequestContext } from '../../common/context/request-context.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { HashQueue, type HashPriority } from './hash-queue.js';

export const ARGON2_OPTIONS = {
  type: argon2.argon2id,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} as const;

@Injectable()
export class PasswordHasher implements OnModuleInit {
  /** Made in the background at start-up, so that start-up does not wait for it. */
  private dummyHash: Promise<string> | undefined;
  private readonly queue: HashQueue;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.queue = new HashQueue(config.auth.passwordHashConcurrency, config.auth.passwordHashQueueMax);
  }

  onModuleInit(): void {
    this.dummyHash = this.hash('not-a-real-password');
    // Should the queue refuse it, the first unknown-email login makes it again.
    this.dummyHash.catch(() => (this.dummyHash = undefined));
  }

  /**
   * Hashes a new password: a registration's waits behind every check; a password change's or a
   * login's rehash (`check`, the default) is served with the checks.
   */
  hash(password: string, ctx?: RequestContext, priority: HashPriority = 'check'): Promise<string> {
    return this.queue.run(() => argon2.hash(password, ARGON2_OPTIONS), priority, ctx);
  }

  /** Throws, as `hash` would, when a hash of `priority` would find no place in the queue now. */
  assertRoomFor(priority: HashPriority): void {
    this.queue.assertRoomFor(priority);
  }

  /** False for a wrong password or a malformed hash; throws when the queue refuses the check. */
  verify(hash: string, password: string, ctx?: RequestContext): Promise<boolean> {
    return this.queue.run(() => argon2.verify(hash, password).catch(() => false), 'check', ctx);
  }

  /** Spends the time of one verification, for an email that does not exist. */
  async verifyDummy(password: string, ctx?: RequestContext): Promise<false> {
    this.dummyHash ??= this.hash('not-a-real-password');
    await this.verify(await this.dummyHash, password, ctx);
    return false;
  }

  /**
   * True when `hash` was made with another variant or other parameters than today's (the
   * library compares the parameters only: an argon2i or argon2d hash with today's costs would
   * pass).
   */
  needsRehash(hash: string): boolean {
    return !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, ARGON2_OPTIONS);
  }
}
