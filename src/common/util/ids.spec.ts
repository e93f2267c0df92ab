import { jest } from '@jest/globals';
import { newId } from './ids.js';

describe('newId', () => {
  it('makes distinct UUIDv7s in creation order, across refills of its random pool', () => {
    const ids = Array.from({ length: 5_000 }, () => newId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    // The random tail differs too, not only the time and sequence.
    expect(new Set(ids.map((id) => id.slice(-10))).size).toBe(ids.length);
  });

  it('stays monotonic when the clock does not move', () => {
    const now = Date.now();
    const spy = jest.spyOn(Date, 'now').mockReturnValue(now + 60_000);
    try {
      const ids = Array.from({ length: 1_000 }, () => newId());
      expect([...ids].sort()).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
    } finally {
      spy.mockRestore();
    }
  });
});
