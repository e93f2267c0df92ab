/**
 * WriteOrder: the position of every write but a create (docs/design/replicas.md, section 1), against a stand-in of
 * RedisService that runs the position script's rule (`max(last + 1, the caller's clock)` per
 * user, and Redis's TIME) in memory, on jest's fake clock. No I/O.
 *
 * Covered: positions from Redis adopted (microseconds × 1024, tag 0) and never gone below
 * afterwards; Redis down, failing or slower than 200 ms: this replica's own position, with its
 * tag, strictly increasing even when the clock steps back; the clock offset measured against
 * Redis's TIME and the skew warning; the position helpers (positionAt, timeOfPosition,
 * comparePositions) with microseconds.
 *
 * CI budget: 3 s
 */
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import type { RedisScript, RedisService } from '../../infrastructure/redis/redis.service.js';
import { comparePositions, POSITION_LUA, positionAt, positionedWithoutRedis, positionKey, timeOfPosition, WriteOrder } from './write-order.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const OTHER_USER = '0193a000-0000-7000-8000-000000000002';
const TAG = 7;
const T0 = Date.parse('2026-02-20T09:15:00.000Z');
const DAY_MS = 24 * 3_600_000;

/** A position as WriteOrder builds it: microseconds × 1024 + tag. */
const positionOf = (micros: number, tag = 0) => String(BigInt(micros) * 1024n + BigInt(tag));

/** Redis as WriteOrder uses it: connected or not, and the position script's rule in memory. */
class RedisStandIn {
  up = true;
  /** How far Redis's clock is ahead of this process's (ms). */
  aheadMs = 0;
  /** 'never': the script never answers; a number: it answers after that many ms. */
  delay: 'never' | number | undefined;
  failure: Error | undefined;
  /** What the script returns after the position (a feature script's own results). */
  extra: unknown[] = [];
  reply: unknown;
  readonly last = new Map<string, number>();
  readonly calls: Array<{ keys: string[]; args: (string | number)[] }> = [];
  readonly scripts: string[] = [];

  isUp(): boolean {
    return this.up;
  }

  script(lua: string): RedisScript {
    this.scripts.push(lua);
    return (keys, args) => this.run(keys, args);
  }

  asRedis(): RedisService {
    return this as unknown as RedisService;
  }

  private run(keys: string[], args: (string | number)[]): Promise<unknown> {
    this.calls.push({ keys, args });
    if (this.failure) return Promise.reject(this.failure);
    const answer = () => {
      if (this.reply !== undefined) return this.reply;
      const position = Math.max((this.last.get(keys[0]!) ?? 0) + 1, Number(args[0]));
      this.last.set(keys[0]!, position);
      const micros = (Date.now() + this.aheadMs) * 1_000;
      return [String(position), String(Math.floor(micros / 1_000_000)), String(micros % 1_000_000), ...this.extra];
    };
    if (this.delay === 'never') return new Promise(() => undefined);
    if (this.delay !== undefined) return new Promise((resolve) => setTimeout(() => resolve(answer()), this.delay as number));
    return Promise.resolve(answer());
  }
}

describe('WriteOrder', () => {
  let redis: RedisStandIn;
  let order: WriteOrder;
  let warn: jest.SpiedFunction<Logger['warn']>;

  const newOrder = (clockSkewMaxMs = 500) =>
    new WriteOrder({ replication: { replicaTag: TAG, clockSkewMaxMs, retentionMs: 7 * DAY_MS } } as AppConfig, redis.asRedis());

  beforeEach(() => {
    // Immediates stay real: a time limit's rejection waits for one (within.ts).
    jest.useFakeTimers({ now: T0, doNotFake: ['setImmediate', 'clearImmediate'] });
    redis = new RedisStandIn();
    order = newOrder();
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.useRealTimers();
    warn.mockRestore();
  });

  describe('while Redis answers', () => {
    it("asks the user's position key with this replica's clock in microseconds, and adopts the answer with tag 0", async () => {
      await expect(order.next(USER)).resolves.toBe(positionOf(T0 * 1_000));
      expect(redis.calls).toEqual([{ keys: [positionKey(USER)], args: [T0 * 1_000, DAY_MS] }]);
      expect(positionKey(USER)).toBe(`{u:${USER}}:pos`);
      expect(redis.scripts[0]).toContain(POSITION_LUA);
    });

    it("orders one user's writes after the last position Redis gave out, whichever replica's clock asked", async () => {
      // Another replica, its clock 2 s ahead, positioned this user's last write.
      redis.last.set(positionKey(USER), (T0 + 2_000) * 1_000);

      await expect(order.next(USER)).resolves.toBe(positionOf((T0 + 2_000) * 1_000 + 1));
      await expect(order.next(USER)).resolves.toBe(positionOf((T0 + 2_000) * 1_000 + 2));
    });

    it('never goes below a position it has seen: the next clock it sends, and its own positions once Redis is down, come after it', async () => {
      redis.last.set(positionKey(USER), (T0 + 2_000) * 1_000);
      const seen = await order.next(USER);

      expect(seen).toBe(positionOf((T0 + 2_000) * 1_000 + 1));

      await order.next(OTHER_USER);
      expect(redis.calls[1]!.args[0]).toBe((T0 + 2_000) * 1_000 + 2);

      redis.up = false;
      const own = await order.next(OTHER_USER);
      expect(own).toBe(positionOf((T0 + 2_000) * 1_000 + 3, TAG));
      expect(comparePositions(own, seen)).toBe(1);
      // Only the replica's own positions say that Redis was not asked.
      expect([positionedWithoutRedis(own), positionedWithoutRedis(seen)]).toEqual([true, false]);
    });

    it("runs a feature's script with its own keys and arguments after the position's, and hands back its results", async () => {
      redis.extra = ['{"id":"held"}'];
      const script = redis.script(`${POSITION_LUA} return {}`);

      const result = await order.nextVia(script, USER, ['{u:user}:keys'], ['key-1']);

      expect(result).toEqual({ position: positionOf(T0 * 1_000), extra: ['{"id":"held"}'] });
      expect(redis.calls[0]).toEqual({ keys: [positionKey(USER), '{u:user}:keys'], args: [T0 * 1_000, DAY_MS, 'key-1'] });
    });
  });

  describe('while Redis does not answer', () => {
    it('issues its own position (its clock, its replica tag) without asking Redis when it is down', async () => {
      redis.up = false;
      await expect(order.next(USER)).resolves.toBe(positionOf(T0 * 1_000, TAG));
      expect(redis.calls).toEqual([]);
    });

    it("issues its own position when Redis fails or answers nonsense, and then the feature script's work is not done", async () => {
      redis.failure = new Error('READONLY You can\'t write against a read only replica');
      await expect(order.nextVia(redis.script(POSITION_LUA), USER, [], [])).resolves.toEqual({ position: positionOf(T0 * 1_000, TAG), extra: undefined });

      redis.failure = undefined;
      redis.reply = 'OK';
      await expect(order.next(USER)).resolves.toBe(positionOf(T0 * 1_000 + 1, TAG));
    });

    it('issues its own position after 200 ms when Redis is slower than that, at the time the write was accepted', async () => {
      redis.delay = 'never';
      let settled: string | undefined;
      const pending = order.next(USER).then((position) => (settled = position));

      await jest.advanceTimersByTimeAsync(199);
      expect(settled).toBeUndefined();
      await jest.advanceTimersByTimeAsync(1);
      await pending;
      expect(settled).toBe(positionOf(T0 * 1_000, TAG));
    });

    it('adopts an answer that comes within 200 ms', async () => {
      redis.delay = 150;
      const pending = order.next(USER);
      await jest.advanceTimersByTimeAsync(150);
      await expect(pending).resolves.toBe(positionOf(T0 * 1_000));
    });

    it('issues strictly increasing positions within one millisecond, and when the clock steps back', async () => {
      redis.up = false;
      const within = [await order.next(USER), await order.next(USER), await order.next(OTHER_USER)];
      jest.setSystemTime(T0 - 5_000);
      const afterStepBack = await order.next(USER);
      jest.setSystemTime(T0 + 1);
      const later = await order.next(USER);

      expect(within).toEqual([positionOf(T0 * 1_000, TAG), positionOf(T0 * 1_000 + 1, TAG), positionOf(T0 * 1_000 + 2, TAG)]);
      expect(afterStepBack).toBe(positionOf(T0 * 1_000 + 3, TAG));
      expect(later).toBe(positionOf((T0 + 1) * 1_000, TAG));
      const all = [...within, afterStepBack, later];
      for (let n = 1; n < all.length; n += 1) expect(comparePositions(all[n]!, all[n - 1]!)).toBe(1);
    });

    it('sends Redis a clock past its own last position when it comes back, so that the order holds across the switch', async () => {
      redis.up = false;
      jest.setSystemTime(T0 + 10);
      const own = await order.next(USER);
      jest.setSystemTime(T0);
      redis.up = true;

      const fromRedis = await order.next(USER);

      expect(redis.calls[0]!.args[0]).toBe((T0 + 10) * 1_000 + 1);
      expect(comparePositions(fromRedis, own)).toBe(1);
    });
  });

  describe('the clock offset', () => {
    it("is unknown before Redis has answered, then this replica's clock minus Redis's TIME", async () => {
      expect(order.clockOffsetMs()).toBeUndefined();
      redis.aheadMs = 300;
      await order.next(USER);
      expect(order.clockOffsetMs()).toBe(-300);
      redis.aheadMs = -120;
      await order.next(USER);
      expect(order.clockOffsetMs()).toBe(120);
    });

    it("measures this replica's clock, not positions adopted from replicas whose clocks run ahead", async () => {
      redis.last.set(positionKey(USER), (T0 + 2_000) * 1_000);
      await order.next(USER);
      await order.next(USER);
      expect(order.clockOffsetMs()).toBe(0);
      expect(warn).not.toHaveBeenCalled();
    });

    it('logs a warning when it exceeds CLOCK_SKEW_MAX_MS, at most once a minute', async () => {
      redis.aheadMs = -499;
      await order.next(USER);
      expect(warn).not.toHaveBeenCalled();

      redis.aheadMs = -600;
      await order.next(USER);
      await order.next(USER);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith({ offsetMs: 600, boundMs: 500 }, expect.stringContaining('CLOCK_SKEW_MAX_MS'));

      jest.setSystemTime(T0 + 59_000);
      await order.next(USER);
      expect(warn).toHaveBeenCalledTimes(1);
      jest.setSystemTime(T0 + 61_000);
      await order.next(USER);
      expect(warn).toHaveBeenCalledTimes(2);
    });
  });
});

describe('positions', () => {
  it('are microseconds since the epoch × 1024 with tag 0 for a time, microseconds kept and extra digits dropped', () => {
    const millis = Date.parse('2026-02-20T09:15:00.123Z');
    expect(positionAt('2026-02-20T09:15:00.123Z')).toBe(positionOf(millis * 1_000));
    expect(positionAt('2026-02-20T09:15:00.123456Z')).toBe(positionOf(millis * 1_000 + 456));
    expect(positionAt('2026-02-20T09:15:00.1234567Z')).toBe(positionOf(millis * 1_000 + 456));
    expect(positionAt('2026-02-20T09:15:00Z')).toBe(positionOf(Date.parse('2026-02-20T09:15:00Z') * 1_000));
    expect(() => positionAt('yesterday')).toThrow(RangeError);
  });

  it('give their time back with microseconds, whatever their tag', () => {
    for (const iso of ['2026-02-20T09:15:00.123456Z', '2026-02-20T09:15:00.000001Z', '1999-12-31T23:59:59.999999Z']) {
      expect(timeOfPosition(positionAt(iso))).toBe(iso);
    }
    expect(timeOfPosition(positionAt('2026-02-20T09:15:00.123Z'))).toBe('2026-02-20T09:15:00.123000Z');
    const micros = Date.parse('2026-02-20T09:15:00.123Z') * 1_000 + 45;
    expect(timeOfPosition(positionOf(micros, 1023))).toBe('2026-02-20T09:15:00.123045Z');
    expect(positionAt(timeOfPosition(positionOf(micros, 9)))).toBe(positionOf(micros));
  });

  it('compare as numbers, not as text, with the tag as the tie-break', () => {
    const micros = Date.parse('2026-02-20T09:15:00.000Z') * 1_000;
    expect(comparePositions('999', '1000')).toBe(-1);
    expect(comparePositions(positionOf(micros, 1), positionOf(micros, 2))).toBe(-1);
    expect(comparePositions(positionOf(micros + 1, 0), positionOf(micros, 1023))).toBe(1);
    expect(comparePositions(positionOf(micros, 5), positionOf(micros, 5))).toBe(0);
    expect(comparePositions(positionAt('2026-02-20T09:15:00.000002Z'), positionAt('2026-02-20T09:15:00.000001Z'))).toBe(1);
  });
});
