/**
 * The one write path: a write use case builds its operation, then hands it here with the code
 * that applies it. The change goes to PostgreSQL directly when that is safe, and to the durable
 * buffer otherwise:
 *
 * - the circuit breaker is open (PostgreSQL known to be down): buffer;
 * - the buffer is not empty: buffer, so that a direct write never overtakes an older buffered
 *   one (replay drains the queue, then writes go direct again);
 * - the direct attempt fails because PostgreSQL cannot be reached (the probe confirms it: a
 *   single dropped connection is not an outage): buffer. The attempt may have committed all the
 *   same (the connection died while the COMMIT was on its way); that is harmless, since every
 *   handler is idempotent on its own and its replay finds nothing left to do. So a direct write
 *   is the plain statement alone, as cheap as a write without any buffer;
 * - anything else the direct attempt throws (constraint, validation, not found) propagates.
 *
 * A write that must not be buffered (one conditional on what is stored now, like `If-Match`)
 * says so, and gets 503 with a Retry-After instead of a 202.
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import type { EntityManager } from 'typeorm';
import { Database, DatabaseUnavailableError } from '../../infrastructure/database/database.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferFullError } from './buffer.errors.js';
import { LmdbBuffer } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';

/** How long a client is asked to wait when the buffer is full: PostgreSQL has been down a while. */
export const BUFFER_FULL_RETRY_AFTER_SECONDS = 30;
/** How long a client is asked to wait for a write that cannot be buffered while PostgreSQL is down. */
export const DATABASE_DOWN_RETRY_AFTER_SECONDS = 5;
/** … and while PostgreSQL is up but the buffer is still draining (replay runs every second or so). */
export const DRAINING_RETRY_AFTER_SECONDS = 2;

export type WriteOutcome<T, P = unknown> =
  /** Answered by PostgreSQL: `direct` ran, or `findExisting` found the key's earlier result. */
  | { mode: 'direct'; result: T }
  /**
   * Durably queued; `op` is the operation that will be applied: the one given, or for a
   * deduplicated retry (`duplicate` true) the one queued first under the same key.
   */
  | { mode: 'buffered'; op: BufferedOperation<P>; duplicate: boolean };

export interface WriteOptions<T> {
  /**
   * The key an operation is queued under: a client's idempotency key, or what makes two
   * operations the same one (a delete: the task's id). While an operation of the same user and
   * kind is queued under this key, a retry returns that operation instead of queueing a second
   * one. (Once replayed, the feature's own storage answers for the key: see `findExisting`.)
   */
  dedupeKey?: string;
  /**
   * With `dedupeKey`: reads what an earlier write under the same key stored, if anything. Asked
   * when the write is about to be queued although PostgreSQL is up (the buffer is draining) and
   * no queued operation holds the key, which is when the key's first write may have been
   * replayed already: the retry then gets that result instead of a 202 for an operation whose
   * replay would be ignored.
   */
  findExisting?: () => Promise<T | undefined>;
  /**
   * False for a write that is only valid against the data as it is now (`If-Match`): instead of
   * being buffered, it fails with 503 SERVICE_UNAVAILABLE and a Retry-After. Default true.
   */
  bufferable?: boolean;
}

@Injectable()
export class WritePath {
  constructor(
    private readonly database: Database,
    private readonly buffer: LmdbBuffer,
    private readonly registry: OperationRegistry,
    private readonly counters: BufferCounters,
  ) {}

  /**
   * True when a write would go to PostgreSQL now: it is up and nothing is queued. A use case
   * that must read before it writes (the version to guard an update with) asks first, and builds
   * a change that needs no read when the answer is no.
   */
  canWriteDirectly(): boolean {
    return this.database.isUp() && this.buffer.isEmpty();
  }

  /** True while an operation of `kind` for `userId` waits in the queue under `dedupeKey`. */
  isQueuedUnder(userId: string, kind: string, dedupeKey: string): boolean {
    return !this.buffer.isEmpty() && this.buffer.isQueuedUnder(scopedDedupeKey(userId, kind, dedupeKey));
  }

  /**
   * For a write that must not be buffered (`bufferable: false`): throws its 503 now, before the
   * use case reads anything, unless the write could go direct.
   */
  assertCanWriteDirectly(): void {
    if (!this.canWriteDirectly()) throw this.cannotBuffer();
  }

  /**
   * Applies `op` now with `direct`, or queues it for replay. `direct` does all its work through
   * the manager it is given (the pool's: each statement on its own), typically the same code as
   * the kind's registered handler, and returns what the client is answered with.
   */
  async execute<T, P>(
    ctx: RequestContext,
    op: BufferedOperation<P>,
    direct: (manager: EntityManager) => Promise<T>,
    options: WriteOptions<T> = {},
  ): Promise<WriteOutcome<T, P>> {
    // A kind nobody can replay must fail now, not sit in the buffer until the database is back.
    if (!this.registry.has(op.kind))
      throw new Error(`no handler is registered for operation kind ${op.kind}`);
    ctx.throwIfAborted();
    if (!this.canWriteDirectly()) return this.enqueue(op, options);
    try {
      return { mode: 'direct', result: await this.database.run(ctx, () => direct(this.database.manager)) };
    } catch (error) {
      // Past its deadline the client has had its 504: no promise to keep, so nothing is queued.
      if (!ctx.aborted && (await this.isDatabaseUnreachable(error))) return this.enqueue(op, options);
      throw error;
    }
  }

  /**
   * True when `error` (from the write path or from a read of the same request) means that
   * PostgreSQL cannot be reached, once the probe has decided, as opposed to a failure of the
   * statement itself or of one connection.
   */
  async isDatabaseUnreachable(error: unknown): Promise<boolean> {
    return error instanceof DatabaseUnavailableError && (await this.database.confirmedDown());
  }

  private async enqueue<T, P>(
    op: BufferedOperation<P>,
    options: WriteOptions<T>,
  ): Promise<WriteOutcome<T, P>> {
    if (options.bufferable === false) throw this.cannotBuffer();
    const dedupeKey =
      options.dedupeKey === undefined ? undefined : scopedDedupeKey(op.userId, op.kind, options.dedupeKey);
    if (dedupeKey !== undefined && options.findExisting) {
      const existing = await this.findApplied(dedupeKey, options.findExisting);
      if (existing !== undefined) return { mode: 'direct', result: existing };
    }
    try {
      const { entry, duplicate } = await this.buffer.add(this.registry.stamp(op), { dedupeKey });
      if (!duplicate) this.counters.buffered += 1;
      // A duplicate's original may have been stored by the previous release.
      return { mode: 'buffered', op: duplicate ? this.registry.upgrade<P>(entry.op) : op, duplicate };
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

  /**
   * The stored result of the key's earlier write, when PostgreSQL is up and that write is no
   * longer queued. Checked in this order because an entry leaves the queue only after its replay
   * has committed: a key not queued now is either in the database already or was never used.
   */
  private async findApplied<T>(
    dedupeKey: string,
    findExisting: () => Promise<T | undefined>,
  ): Promise<T | undefined> {
    if (!this.database.isUp() || this.buffer.isQueuedUnder(dedupeKey)) return undefined;
    try {
      return await findExisting();
    } catch (error) {
      if (await this.isDatabaseUnreachable(error)) return undefined;
      throw error;
    }
  }

  private cannotBuffer(): ServiceUnavailableError {
    return this.database.isUp()
      ? new ServiceUnavailableError(
          'earlier writes are still being applied; try again shortly',
          DRAINING_RETRY_AFTER_SECONDS,
        )
      : new ServiceUnavailableError(
          'the database is unavailable; try again shortly',
          DATABASE_DOWN_RETRY_AFTER_SECONDS,
        );
  }
}

/** A client's key only means something for its own user and for one kind of write. */
function scopedDedupeKey(userId: string, kind: string, key: string): string {
  return JSON.stringify([userId, kind, key]);
}
