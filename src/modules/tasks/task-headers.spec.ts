import { describe, expect, it } from '@jest/globals';
import { ValidationFailedError } from '../../common/errors/domain-errors.js';
import { etagOf, ifNoneMatchHits, parseIdempotencyKey, parseIfMatch } from './task-headers.js';

describe('task headers', () => {
  it('writes the version as a strong, quoted ETag', () => {
    expect(etagOf(7)).toBe('"7"');
  });

  describe('If-Match', () => {
    it('is absent when not sent', () => {
      expect(parseIfMatch(undefined)).toBeUndefined();
    });

    it('reads one or several versions, and *', () => {
      expect(parseIfMatch('"3"')).toEqual([3]);
      expect(parseIfMatch(' "1" , "12"')).toEqual([1, 12]);
      expect(parseIfMatch(['"1"', '"2"'])).toEqual([1, 2]);
      expect(parseIfMatch('*')).toBe('*');
    });

    it('never matches with weak tags or tags that are not versions (strong comparison)', () => {
      expect(parseIfMatch('W/"3"')).toEqual([]);
      expect(parseIfMatch('"abc", "0", "-1", W/"2", "4"')).toEqual([4]);
    });

    it('refuses a malformed value with a 400 naming the header', () => {
      for (const bad of ['3', '', '"3', '"3" "4"', 'W/3', '"a"b"']) {
        expect(() => parseIfMatch(bad)).toThrow(ValidationFailedError);
      }
      try {
        parseIfMatch('3');
      } catch (error) {
        expect((error as ValidationFailedError).errors).toEqual([
          { field: 'If-Match', message: expect.any(String) },
        ]);
      }
    });
  });

  describe('If-None-Match', () => {
    it('hits on the current version, weakly compared, or *', () => {
      expect(ifNoneMatchHits('"3"', 3)).toBe(true);
      expect(ifNoneMatchHits('W/"3"', 3)).toBe(true);
      expect(ifNoneMatchHits('"1", "3"', 3)).toBe(true);
      expect(ifNoneMatchHits('*', 3)).toBe(true);
    });

    it('misses on another version, nothing sent, or a malformed value', () => {
      expect(ifNoneMatchHits('"2"', 3)).toBe(false);
      expect(ifNoneMatchHits(undefined, 3)).toBe(false);
      expect(ifNoneMatchHits('3', 3)).toBe(false);
    });
  });

  describe('Idempotency-Key', () => {
    it('accepts 1–128 printable ASCII characters', () => {
      expect(parseIdempotencyKey(undefined)).toBeUndefined();
      expect(parseIdempotencyKey('a')).toBe('a');
      expect(parseIdempotencyKey('order 42/retry:1')).toBe('order 42/retry:1');
      expect(parseIdempotencyKey('k'.repeat(128))).toBe('k'.repeat(128));
    });

    it('refuses empty, too long, non-printable or non-ASCII keys', () => {
      for (const bad of [
        '',
        ' ',
        'k'.repeat(129),
        'tab\there',
        'caf\u00e9',
        ' padded',
        'line\n',
        ['a', 'b'],
      ]) {
        expect(() => parseIdempotencyKey(bad)).toThrow(ValidationFailedError);
      }
    });
  });
});
