import { RequestTimeoutError } from '../errors/domain-errors.js';
import { RequestContext } from './request-context.js';

describe('RequestContext', () => {
  it('tells its listeners once, with the cause, and not those that left', () => {
    const ctx = RequestContext.start('r1', 10_000);
    const heard: string[] = [];
    ctx.onAbort((cause) => heard.push(`a:${cause}`));
    const leave = ctx.onAbort((cause) => heard.push(`b:${cause}`));
    leave();
    ctx.abort('client-closed');
    ctx.abort('deadline');
    expect(heard).toEqual(['a:client-closed']);
    expect(ctx.aborted).toBe(true);
    expect(() => ctx.throwIfAborted()).toThrow(RequestTimeoutError);
  });

  it('has an AbortSignal that aborts with the cause, whether asked for before or after', () => {
    const early = RequestContext.start('r2', 10_000);
    const signal = early.signal;
    expect(signal.aborted).toBe(false);
    early.abort('client-closed');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('client-closed');

    const late = RequestContext.start('r3', 10_000);
    late.abort('deadline');
    expect(late.signal.aborted).toBe(true);
    expect(late.signal.reason).toBe('deadline');
  });

  it('aborts by itself at its deadline unless released', async () => {
    const timed = RequestContext.start('r4', 5);
    const released = RequestContext.start('r5', 5);
    released.release();
    const cause = await new Promise((resolve) => timed.onAbort(resolve));
    expect(cause).toBe('deadline');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(released.aborted).toBe(false);
  });
});
