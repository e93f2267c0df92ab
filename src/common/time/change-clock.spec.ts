import { describe, expect, it } from '@jest/globals';
import { ChangeClock, microsOf, toMillisecondIso } from './change-clock.js';
import type { Clock } from './clock.js';

function clockAt(iso: string): { clock: Clock; set(iso: string): void } {
  let now = new Date(iso);
  return { clock: { now: () => new Date(now) }, set: (next) => (now = new Date(next)) };
}

describe('ChangeClock', () => {
  it('issues the wall-clock time with microseconds, strictly increasing within one millisecond', () => {
    const { clock, set } = clockAt('2026-02-20T09:15:00.123Z');
    const changes = new ChangeClock(clock);
    expect([changes.next(), changes.next(), changes.next()]).toEqual([
      '2026-02-20T09:15:00.123000Z',
      '2026-02-20T09:15:00.123001Z',
      '2026-02-20T09:15:00.123002Z',
    ]);
    set('2026-02-20T09:15:00.124Z');
    expect(changes.next()).toBe('2026-02-20T09:15:00.124000Z');
  });

  it('never goes back when the wall clock does', () => {
    const { clock, set } = clockAt('2026-02-20T09:15:00.500Z');
    const changes = new ChangeClock(clock);
    changes.next();
    set('2026-02-20T09:14:59.000Z');
    expect(changes.next()).toBe('2026-02-20T09:15:00.500001Z');
  });

  it('goes past the whole millisecond of a time read back, and past times observed', () => {
    const { clock } = clockAt('2026-02-20T09:15:00.000Z');
    const changes = new ChangeClock(clock);
    expect(changes.next('2026-02-20T09:15:05.000Z')).toBe('2026-02-20T09:15:05.001000Z');
    changes.observe('2026-02-20T09:16:00.000Z');
    expect(changes.next()).toBe('2026-02-20T09:16:00.000001Z');
    changes.observe('2026-02-20T09:00:00.000Z');
    expect(changes.next()).toBe('2026-02-20T09:16:00.000002Z');
  });

  it('reads and cuts ISO times exactly', () => {
    expect(microsOf('2026-02-20T09:15:00.123456Z')).toBe(
      Date.parse('2026-02-20T09:15:00Z') * 1000 + 123_456,
    );
    expect(microsOf('2026-02-20T09:15:00.1Z')).toBe(
      Date.parse('2026-02-20T09:15:00Z') * 1000 + 100_000,
    );
    expect(microsOf('2026-02-20T09:15:00Z')).toBe(Date.parse('2026-02-20T09:15:00Z') * 1000);
    expect(() => microsOf('yesterday')).toThrow(RangeError);
    expect(toMillisecondIso('2026-02-20T09:15:00.123999Z')).toBe('2026-02-20T09:15:00.123Z');
    expect(toMillisecondIso('2026-02-20T09:15:00.123Z')).toBe('2026-02-20T09:15:00.123Z');
  });
});
