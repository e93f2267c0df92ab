/**
 * The one write path: a write use case builds its operation, then hands it here with the code
 * that applies it. The change goes to PostgreSQL directly when that is safe, and to the durable
 * buffer otherwise:
 *
 * - the circuit breaker is open (PostgreSQL known to be down): buffer;
 * - the buffer is not empty: buffer, so that a direct write never overtakes an older buffered
 *   one (replay drains the queue, then writes go direct again);
 * - the direct attempt fails because PostgreSQL cannot be reached: buffer. The attempt may have
 *   committed all the same (the connection died while the COMMIT was on its way), which is why
 *   it records the operation id in the exactly-once ledger inside its own transaction: replay
 *   skips an operation that turns out to be applied already;
 * - anything else the direct attempt throws (constraint, validation, not found) propagates.
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { isConnectionError } from '../../infrastructure/database/connection-errors.js';
import { DatabaseService } from '../../infrastructure/database/database.service.js';
import { AppliedOperations } from './applied-operations.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferFullError } from './buffer.errors.js';
import { LmdbBuffer } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';

/** How long a client is asked to wait when the buffer is full: PostgreSQL has been down a while. */
export const BUFFER_FULL_RETRY_AFTER_SECONDS = 30;

export type WriteOutcome<T, P = unknown> =
  | { mode: 'direct'; result: T }
  /**
   * Durably queued; `op` is the operation that will be applied: the one given, or for a
   * deduplicated retry (`duplicate` true) the one queued first under the same key.
   */
  | { mode: 'buffered'; op: BufferedOperation<P>; duplicate: boolean };

export interface WriteOptions {
  /**
   * A client's idempotency key. While an operation of the same user and kind is queued under
   * this key, a retry returns that operation instead of queueing a second one. (Once replayed,
   * the feature's own storage answers for the key.)
   */
  dedupeKey?: string;
}

@Injectable()
export class WritePath {
  constructor(
    private readonly database: DatabaseService,
    private readonly buffer: LmdbBuffer,
    private readonly registry: OperationRegistry,
    private readonly applied: AppliedOperations,
    private readonly counters: BufferCounters,
  ) {}

  /**
   * Applies `op` now with `direct`, or queues it for replay. `direct` runs inside a transaction
   * and must do all its work through `manager` (typically the same code as the kind's
   * registered handler, returning what the client is answered with).
   */
  async execute<T, P>(
    ctx: RequestContext,
    op: BufferedOperation<P>,
    direct: (manager: EntityManager) => Promise<T>,
    options: WriteOptions = {},
  ): Promise<WriteOutcome<T, P>> {
    // A kind nobody can replay must fail now, not sit in the buffer until the database is back.
    if (!this.registry.has(op.kind))
      throw new Error(`no handler is registered for operation kind ${op.kind}`);
    ctx.throwIfAborted();
    if (!this.database.isUp() || !this.buffer.isEmpty()) return this.enqueue(op, options);
    try {
      const result = await this.database.transaction(ctx, async (manager) => {
        await this.applied.claim(manager, [op.id]);
        return direct(manager);
      });
      return { mode: 'direct', result };
    } catch (error) {
      // Past its deadline the client has had its 504: no promise to keep, so nothing is queued.
      if (this.isDatabaseUnreachable(error) && !ctx.aborted) return this.enqueue(op, options);
      throw error;
    }
  }

  /** DatabaseService turns connection errors into ServiceUnavailableError after opening the breaker. */
  private isDatabaseUnreachable(error: unknown): boolean {
    return (
      isConnectionError(error) ||
      (error instanceof ServiceUnavailableError && !this.database.isUp())
    );
  }

  private async enqueue<T, P>(
    op: BufferedOperation<P>,
    options: WriteOptions,
  ): Promise<WriteOutcome<T, P>> {
    const dedupeKey =
      options.dedupeKey === undefined ? undefined : scopedDedupeKey(op, options.dedupeKey);
    try {
      const { entry, duplicate } = await this.buffer.add(op, { dedupeKey });
      if (!duplicate) this.counters.buffered += 1;
      return { mode: 'buffered', op: entry.op as BufferedOperation<P>, duplicate };
    } catch (error) {
      if (error instanceof BufferFullError) {
        throw new ServiceUnavailableError(
          'the write buffer is full; try again later',
          BUFFER_FULL_RETRY_AFTER_SECONDS,
        );
      }
      throw error;
    }
  }
}

/** A client's key only means something for its own user and for one kind of write. */
function scopedDedupeKey(op: BufferedOperation<unknown>, key: string): string {
  return JSON.stringify([op.userId, op.kind, key]);
}
