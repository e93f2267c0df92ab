/**
 * When a stored hash is replaced on the next login: another argon2 variant or other costs.
 * Real argon2 (pure computation, no I/O).
 */
import { describe, expect, it } from '@jest/globals';
import argon2 from 'argon2';
import { loadConfig } from '../../config/app-config.js';
import { ARGON2_OPTIONS, PasswordHasher } from './password-hasher.js';

describe('PasswordHasher.needsRehash', () => {
  const hasher = new PasswordHasher(loadConfig({ JWT_SECRET: 'a-test-secret-of-at-least-32-characters!' }));

  it("keeps a hash made with today's variant and costs", async () => {
    expect(hasher.needsRehash(await hasher.hash('a passphrase'))).toBe(false);
  });

  it('replaces an argon2i or argon2d hash with the same costs', async () => {
    for (const type of [argon2.argon2i, argon2.argon2d] as const) {
      const hash = await argon2.hash('a passphrase', { ...ARGON2_OPTIONS, type });
      expect({ hash: hash.split('$')[1], rehash: hasher.needsRehash(hash) }).toEqual({
        hash: hash.split('$')[1],
        rehash: true,
      });
    }
  });

  it('replaces an argon2id hash with lower costs', async () => {
    const hash = await argon2.hash('a passphrase', { ...ARGON2_OPTIONS, memoryCost: 8_192 });
    expect(hasher.needsRehash(hash)).toBe(true);
  });
});
