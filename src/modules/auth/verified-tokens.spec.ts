import { VerifiedTokens } from './verified-tokens.js';

const claims = (exp: number) => ({ sub: 'u1', sid: 's1', exp });

describe('VerifiedTokens', () => {
  it('answers for the exact token until the second its exp names', () => {
    const tokens = new VerifiedTokens(10);
    tokens.remember('a.b.c', claims(1_000));
    expect(tokens.get('a.b.c', 999_999)).toEqual(claims(1_000));
    expect(tokens.get('a.b.C', 999_999)).toBeUndefined();
    expect(tokens.get('a.b.c', 1_000_000)).toBeUndefined();
    // An expired entry is gone for good.
    expect(tokens.size).toBe(0);
  });

  it('keeps at most its capacity, dropping the oldest', () => {
    const tokens = new VerifiedTokens(3);
    for (const token of ['t1', 't2', 't3', 't4']) tokens.remember(token, claims(2_000));
    expect(tokens.size).toBe(3);
    expect(tokens.get('t1', 0)).toBeUndefined();
    expect(tokens.get('t4', 0)).toEqual(claims(2_000));
    tokens.remember('t4', claims(2_000));
    expect(tokens.size).toBe(3);
    expect(tokens.get('t2', 0)).toEqual(claims(2_000));
  });
});
