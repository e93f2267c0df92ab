/**
 * The queue in front of argon2. At most `concurrency` hashes run at once (on libuv's thread
 * pool) and at most `maxWaiting` wait for a slot. Password checks (a login, the current password
 * of a change) are served before the hashes of new registrations, so that a flood of sign-ups
 * cannot delay logins: when the queue is full, a registration waiting at its back gives its
 * place to a check. A request that finds no place is refused at once (503 with Retry-After;
 * AuthService holds a registration's answer for a pause) rather than left to run into its
 * deadline, and the work of a request that has passed its deadline, or whose client has gone,
 * is dropped without being computed.
 */
import type { RequestContext } from '../../common/context/request-context.js';
import { RequestTimeoutError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';

/** `check`: verifying a password someone is waiting on; `registration`: hashing a new one. */
export type HashPriority = 'check' | 'registration';

interface Waiter {
  start(): void;
  refuse(error: Error): void;
  /** Stops listening to the request's abort. */
  detach(): void;
}

/** Weight of the newest duration in the running average that estimates Retry-After. */
const AVERAGE_WEIGHT = 0.1;

export class HashQueue {
  private running = 0;
  private readonly checks: Waiter[] = [];
  private readonly registrations: Waiter[] = [];
  private averageMs = 50;

  constructor(
    private readonly concurrency: number,
    private readonly maxWaiting: number,
  ) {}

  get waiting(): number {
    return this.checks.length + this.registrations.length;
  }

  /**
   * Runs `work` once a slot is free. Throws `ServiceUnavailableError` when the queue is full,
   * `RequestTimeoutError` when `ctx` aborts (deadline, client gone) before the work starts.
   */
  async run<T>(work: () => Promise<T>, priority: HashPriority, ctx?: RequestContext): Promise<T> {
    if (ctx) throwIfGone(ctx);
    if (this.running < this.concurrency) this.running += 1;
    else await this.wait(priority, ctx);
    try {
      // The slot may have come just as the deadline passed.
      if (ctx) throwIfGone(ctx);
      const started = performance.now();
      const result = await work();
      this.averageMs += (performance.now() - started - this.averageMs) * AVERAGE_WEIGHT;
      return result;
    } finally {
      this.release();
    }
  }

  /**
   * Throws the refusal `run` would throw for work of `priority` queued now, so that a request
   * can be refused before it spends anything else (a throttle's round trip) on the way here.
   */
  assertRoomFor(priority: HashPriority): void {
    const full = this.running >= this.concurrency && this.waiting >= this.maxWaiting;
    if (full && (priority !== 'check' || this.registrations.length === 0)) throw this.full();
  }

  private wait(priority: HashPriority, ctx: RequestContext | undefined): Promise<void> {
    if (this.waiting >= this.maxWaiting && !this.makeRoomFor(priority)) throw this.full();
    const line = priority === 'check' ? this.checks : this.registrations;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: resolve,
        refuse: reject,
        detach: ctx
          ? ctx.onAbort(() => {
              remove(line, waiter);
              reject(new RequestTimeoutError());
            })
          : () => undefined,
      };
      line.push(waiter);
    });
  }

  /** A check may take the place of the registration that came last. */
  private makeRoomFor(priority: HashPriority): boolean {
    if (priority !== 'check') return false;
    const displaced = this.registrations.pop();
    if (!displaced) return false;
    displaced.detach();
    displaced.refuse(this.full());
    return true;
  }

  /** Hands the slot to the next waiter, checks first, or frees it. */
  private release(): void {
    const next = this.checks.shift() ?? this.registrations.shift();
    if (!next) {
      this.running -= 1;
      return;
    }
    next.detach();
    next.start();
  }

  private full(): ServiceUnavailableError {
    const queuedPerSlot = (this.waiting + this.running) / this.concurrency;
    const seconds = Math.max(1, Math.ceil((queuedPerSlot * this.averageMs) / 1000));
    return new ServiceUnavailableError('too many password checks are waiting; try again shortly', seconds);
  }
}

function throwIfGone(ctx: RequestContext): void {
  if (ctx.aborted || ctx.remainingMs() === 0) throw new RequestTimeoutError();
}

function remove(line: Waiter[], waiter: Waiter): void {
  const index = line.indexOf(waiter);
  if (index >= 0) line.splice(index, 1);
}
