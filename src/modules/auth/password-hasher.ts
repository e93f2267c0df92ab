/**
 * argon2id password hashing at no less than OWASP's parameters (m = 19 MiB, t = 2, p = 1).
 * argon2 runs on libuv's thread pool, off the event loop. A login for an unknown email still
 * spends one verification against a fixed dummy hash, so its timing matches a wrong password.
 */
import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import argon2 from 'argon2';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { Semaphore } from '../../common/util/semaphore.js';

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
  private readonly slots: Semaphore;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.slots = new Semaphore(config.auth.passwordHashConcurrency);
  }

  onModuleInit(): void {
    this.dummyHash = this.hash('not-a-real-password');
  }

  hash(password: string): Promise<string> {
    return this.slots.run(() => argon2.hash(password, ARGON2_OPTIONS));
  }

  async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await this.slots.run(() => argon2.verify(hash, password));
    } catch {
      return false;
    }
  }

  /** Spends the time of one verification, for an email that does not exist. */
  async verifyDummy(password: string): Promise<false> {
    this.dummyHash ??= this.hash('not-a-real-password');
    await this.verify(await this.dummyHash, password);
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
