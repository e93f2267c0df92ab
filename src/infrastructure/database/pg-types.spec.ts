import { timestamptzToIso } from './pg-types.js';

describe('timestamptzToIso', () => {
  it.each([
    ['2026-11-24 07:02:43+00', '2026-11-24T07:02:43.000Z'],
    ['2026-11-24 07:02:43.1+00', '2026-11-24T07:02:43.100Z'],
    ['2026-11-24 07:02:43.12+00', '2026-11-24T07:02:43.120Z'],
    ['2026-11-24 07:02:43.123+00', '2026-11-24T07:02:43.123Z'],
    ['2026-11-24 07:02:43.123999+00', '2026-11-24T07:02:43.123Z'],
    ['0001-01-01 00:00:00+00', '0001-01-01T00:00:00.000Z'],
    ['9999-12-31 23:59:59.999999+00', '9999-12-31T23:59:59.999Z'],
  ])('rearranges UTC text %s', (text, iso) => {
    expect(timestamptzToIso(text)).toBe(iso);
  });

  it.each([
    ['2026-11-24 09:02:43.5+02', '2026-11-24T07:02:43.500Z'],
    ['2026-11-24 01:32:43.123456-05:30', '2026-11-24T07:02:43.123Z'],
  ])('converts text in another offset, %s, through pg', (text, iso) => {
    expect(timestamptzToIso(text)).toBe(iso);
  });

  it('agrees with a Date made by pg to the millisecond', () => {
    for (let i = 0; i < 500; i++) {
      const ms = Math.floor(Math.random() * 253_402_300_799_999);
      const micros = String(Math.floor(Math.random() * 1000)).padStart(3, '0');
      const iso = new Date(ms).toISOString();
      const text = `${iso.slice(0, 10)} ${iso.slice(11, 23)}${micros}+00`;
      expect(timestamptzToIso(text)).toBe(iso);
    }
  });
});
