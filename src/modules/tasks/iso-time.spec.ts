import { describe, expect, it } from '@jest/globals';
import { isCanonicalInstant, normaliseIsoInstant } from './iso-time.js';

describe('ISO 8601 instants', () => {
  it('normalises date-times with an offset to UTC with milliseconds', () => {
    expect(normaliseIsoInstant('2026-03-01T17:00:00Z')).toBe('2026-03-01T17:00:00.000Z');
    expect(normaliseIsoInstant('2026-03-01T18:30:00.5+01:30')).toBe('2026-03-01T17:00:00.500Z');
    expect(normaliseIsoInstant('2026-03-01t17:00:00z')).toBe('2026-03-01T17:00:00.000Z');
    expect(normaliseIsoInstant('2026-03-01T17:00:00.123456789Z')).toBe('2026-03-01T17:00:00.123Z');
    expect(normaliseIsoInstant('2024-02-29T00:00:00-05:00')).toBe('2024-02-29T05:00:00.000Z');
  });

  it('reads a date alone as midnight UTC', () => {
    expect(normaliseIsoInstant('2026-03-01')).toBe('2026-03-01T00:00:00.000Z');
  });

  it('keeps years below 100 as they are', () => {
    expect(normaliseIsoInstant('0042-06-01T00:00:00Z')).toBe('0042-06-01T00:00:00.000Z');
  });

  it('takes the first and last days of the range with offsets that stay inside it', () => {
    expect(normaliseIsoInstant('0001-01-01T10:00:00-01:00')).toBe('0001-01-01T11:00:00.000Z');
    expect(normaliseIsoInstant('0001-01-01T10:00:00+00:00')).toBe('0001-01-01T10:00:00.000Z');
    expect(normaliseIsoInstant('9999-12-31T10:00:00+01:00')).toBe('9999-12-31T09:00:00.000Z');
    expect(normaliseIsoInstant('9999-12-31T10:00:00-00:00')).toBe('9999-12-31T10:00:00.000Z');
  });

  it('refuses impossible dates and times instead of rolling them over', () => {
    for (const bad of [
      '2025-02-29T00:00:00Z',
      '2026-02-30',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T23:60:00Z',
      '2026-01-01T23:59:60Z',
      '2026-01-01T00:00:00+24:00',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:00:00+01:00',
      '0001-01-01T23:00:00+01:00',
      '9999-12-31T00:00:00-01:00',
    ]) {
      expect(normaliseIsoInstant(bad)).toBeUndefined();
    }
  });

  it('refuses times without an offset and other formats', () => {
    for (const bad of [
      '2026-03-01T17:00:00',
      '2026-03-01T17:00Z',
      '2026-03-01 17:00:00Z',
      'tomorrow',
      '',
      '1740873600000',
      '2026-3-1',
      '+012026-03-01T00:00:00Z',
      'Sun, 01 Mar 2026 17:00:00 GMT',
    ]) {
      expect(normaliseIsoInstant(bad)).toBeUndefined();
    }
  });

  it('recognises the canonical form only', () => {
    expect(isCanonicalInstant('2026-03-01T17:00:00.000Z')).toBe(true);
    expect(isCanonicalInstant('2026-03-01T17:00:00Z')).toBe(false);
    expect(isCanonicalInstant('2026-02-30T17:00:00.000Z')).toBe(false);
    expect(isCanonicalInstant(0)).toBe(false);
  });
});
