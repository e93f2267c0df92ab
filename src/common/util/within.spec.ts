/**
 * `within`: a time limit that a stalled event loop does not turn into a false timeout.
 */
import { describe, expect, it } from '@jest/globals';
import { within } from './within.js';

describe('within', () => {
  it('takes an answer that came while the event loop was stalled past the limit, not a timeout', async () => {
    // Run from the check phase, with the answer's callback queued for the next one, as a reply
    // read from a socket in the poll phase would be: a stall past the limit makes the timer due
    // before that phase comes round.
    const outcome = await new Promise((resolve) =>
      setImmediate(() => {
        const answer = new Promise((settle) => setImmediate(() => settle('answered')));
        const limited = within(answer, 20);
        const stalledUntil = Date.now() + 60;
        while (Date.now() < stalledUntil);
        limited.then(resolve, (error: Error) => resolve(error.message));
      }),
    );
    expect(outcome).toBe('answered');
  });

  it('rejects once the limit has passed without an answer, with the error asked for', async () => {
    await expect(within(new Promise(() => undefined), 10)).rejects.toThrow('no answer within 10 ms');
    await expect(within(new Promise(() => undefined), 10, () => new RangeError('too slow'))).rejects.toBeInstanceOf(RangeError);
  });

  it('passes an answer or a failure that comes in time through as it is', async () => {
    await expect(within(Promise.resolve('now'), 10)).resolves.toBe('now');
    const failure = new Error('refused');
    await expect(within(Promise.reject(failure), 10)).rejects.toBe(failure);
  });
});
