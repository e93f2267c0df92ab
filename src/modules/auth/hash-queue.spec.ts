/**
 * The argon2 queue's order and bounds, with stand-in work (no argon2): checks before
 * registrations, a fast refusal past the bound, a registration giving its place to a check, and
 * no work for a request that has timed out or whose client has gone.
 */
import { describe, expect, it } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import { RequestTimeoutError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { HashQueue } from './hash-queue.js';

/** Work that runs until `finish()` is called, recording that it started. */
function gate(started: string[], label: string) {
  let finish!: () => void;
  const done = new Promise<string>((resolve) => (finish = () => resolve(label)));
  return {
    work: () => {
      started.push(label);
      return done;
    },
    finish: () => finish(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('HashQueue', () => {
  it('runs at most `concurrency` at once and serves waiting checks before waiting registrations', async () => {
    const queue = new HashQueue(1, 10);
    const started: string[] = [];
    const first = gate(started, 'first');
    const running = queue.run(first.work, 'registration');
    const results = [
      queue.run(async () => (started.push('reg-1'), 'reg-1'), 'registration'),
      queue.run(async () => (started.push('reg-2'), 'reg-2'), 'registration'),
      queue.run(async () => (started.push('check-1'), 'check-1'), 'check'),
      queue.run(async () => (started.push('check-2'), 'check-2'), 'check'),
    ];
    await tick();
    expect(started).toEqual(['first']);
    first.finish();
    await expect(running).resolves.toBe('first');
    await expect(Promise.all(results)).resolves.toEqual(['reg-1', 'reg-2', 'check-1', 'check-2']);
    expect(started).toEqual(['first', 'check-1', 'check-2', 'reg-1', 'reg-2']);
  });

  it('refuses at once past the bound, with a Retry-After of at least a second', async () => {
    const queue = new HashQueue(1, 2);
    const started: string[] = [];
    const first = gate(started, 'first');
    const running = queue.run(first.work, 'check');
    const waiting = [queue.run(async () => 'a', 'check'), queue.run(async () => 'b', 'check')];
    const refused = queue.run(async () => 'c', 'check');
    const error = await refused.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    first.finish();
    await expect(Promise.all([running, ...waiting])).resolves.toEqual(['first', 'a', 'b']);
  });

  it('lets a check take the place of the registration that came last when full; a registration cannot', async () => {
    const queue = new HashQueue(1, 2);
    const started: string[] = [];
    const first = gate(started, 'first');
    const running = queue.run(first.work, 'registration');
    const earlier = queue.run(async () => 'earlier', 'registration');
    const later = queue.run(async () => 'later', 'registration');
    const check = queue.run(async () => 'check', 'check');
    await expect(later).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(queue.run(async () => 'another', 'registration')).rejects.toBeInstanceOf(ServiceUnavailableError);
    first.finish();
    await expect(Promise.all([running, check, earlier])).resolves.toEqual(['first', 'check', 'earlier']);
  });

  it('tells beforehand whether work would find room: a check while registrations wait, a registration not', async () => {
    const queue = new HashQueue(1, 1);
    const started: string[] = [];
    const first = gate(started, 'first');
    const running = queue.run(first.work, 'check');
    expect(() => queue.assertRoomFor('registration')).not.toThrow();
    const waiting = queue.run(async () => 'waiting', 'registration');
    expect(() => queue.assertRoomFor('registration')).toThrow(ServiceUnavailableError);
    expect(() => queue.assertRoomFor('check')).not.toThrow();
    first.finish();
    await expect(Promise.all([running, waiting])).resolves.toEqual(['first', 'waiting']);
  });

  it('drops the work of a request whose client has gone while it waited, and passes the slot on', async () => {
    const queue = new HashQueue(1, 10);
    const started: string[] = [];
    const first = gate(started, 'first');
    const running = queue.run(first.work, 'check');
    const ctx = RequestContext.start('gone', 10_000);
    const abandoned = queue.run(async () => (started.push('abandoned'), 'abandoned'), 'check', ctx);
    const next = queue.run(async () => (started.push('next'), 'next'), 'registration');
    ctx.abort('client-closed');
    await expect(abandoned).rejects.toBeInstanceOf(RequestTimeoutError);
    first.finish();
    await expect(Promise.all([running, next])).resolves.toEqual(['first', 'next']);
    expect(started).toEqual(['first', 'next']);
  });

  it('computes nothing for a request already past its deadline', async () => {
    const queue = new HashQueue(2, 10);
    const ctx = RequestContext.start('late', 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    let ran = false;
    await expect(queue.run(async () => (ran = true), 'check', ctx)).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(ran).toBe(false);
  });

  it('frees its slot when the work fails', async () => {
    const queue = new HashQueue(1, 0);
    await expect(queue.run(() => Promise.reject(new Error('boom')), 'check')).rejects.toThrow('boom');
    await expect(queue.run(() => Promise.resolve('ok'), 'check')).resolves.toBe('ok');
  });
});
