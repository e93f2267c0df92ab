/**
 * The context every request carries through use cases and repositories: who asks, under which
 * request id, and until when. Its `signal` aborts at the request's deadline or when the client
 * goes away, so that I/O started for a request that can no longer be answered is cut short.
 */
import { RequestTimeoutError, UnauthenticatedError } from '../errors/domain-errors.js';

export type AbortCause = 'deadline' | 'client-closed';

export class RequestContext {
  /** Made on first use of `signal`: most requests never need a real AbortSignal. */
  private controller: AbortController | undefined;
  private abortedBy: AbortCause | undefined;
  private readonly listeners: Array<(cause: AbortCause) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  /** Set by the authentication guard once the access token is verified. */
  userId: string | undefined;
  sessionId: string | undefined;

  private constructor(
    readonly requestId: string,
    readonly deadline: number,
  ) {}

  /**
   * A context bounded by `timeoutMs` from now; at the deadline it aborts, then calls
   * `onDeadline` (the HTTP layer answers 504 there).
   */
  static start(requestId: string, timeoutMs: number, onDeadline?: () => void): RequestContext {
    const ctx = new RequestContext(requestId, Date.now() + timeoutMs);
    ctx.timer = setTimeout(() => {
      ctx.abort('deadline');
      onDeadline?.();
    }, timeoutMs);
    ctx.timer.unref();
    return ctx;
  }

  /** Aborts at the deadline or when the client goes away, with the cause as its reason. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedBy) this.controller.abort(this.abortedBy);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.abortedBy !== undefined;
  }

  /**
   * Calls `listener` once when the context aborts (never if it already has: check `aborted`
   * first); returns the function that unregisters it. The cheap form of listening to `signal`.
   */
  onAbort(listener: (cause: AbortCause) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const index = this.listeners.indexOf(listener);
      if (index >= 0) this.listeners.splice(index, 1);
    };
  }

  /** The authenticated user's id; only routes behind the access-token guard may call this. */
  requireUserId(): string {
    if (!this.userId) throw new UnauthenticatedError();
    return this.userId;
  }

  /** A context for work that no request started (scheduled replay, start-up). */
  static background(label: string, timeoutMs: number): RequestContext {
    return RequestContext.start(`${label}-${Date.now().toString(36)}`, timeoutMs);
  }

  /** Milliseconds left before the deadline (never below zero). */
  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  /** Throws `RequestTimeoutError` when the request can no longer be answered in time. */
  throwIfAborted(): void {
    if (this.aborted || Date.now() >= this.deadline) throw new RequestTimeoutError();
  }

  abort(cause: AbortCause): void {
    this.release();
    if (this.abortedBy) return;
    this.abortedBy = cause;
    this.controller?.abort(cause);
    for (const listener of this.listeners.splice(0)) listener(cause);
  }

  /** Stops the deadline timer once the response has been sent. */
  release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
