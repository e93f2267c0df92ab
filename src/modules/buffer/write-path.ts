/**
 * The one write path: a write use case builds its operation (positioned, but for a create: see
 * WriteOrder), then
 * hands it here with the code that applies it. The change goes to PostgreSQL directly when it
 * can be reached, and to the durable buffer otherwise:
 *
 * - the circuit breaker is open (PostgreSQL known to be down): buffer;
 * - the direct attempt fails because PostgreSQL cannot be reached (the probe confirms it: a
 *   single dropped connection is not an outage): buffer. The attempt may have committed all the
 *   same (the connection died while the COMMIT was on its way); that is harmless, since every
 *   handler is idempotent on its own and its replay finds nothing left to do;
 * - anything else the direct attempt throws (constraint, validation, not found) propagates.
 *
 * A direct write may overtake writes still waiting in the buffer: what is stored merges writes
 * by their positions, not by when they arrive (docs/design/replicas.md, section 2), so writes go
 * direct again as soon as PostgreSQL answers, while the buffer drains.
 *
 * A write that must not be buffered (one conditional on what is stored now, like `If-Match`)
 * says so, and gets 503 with a Retry-After instead of a 202. A user who holds their whole share
 * of the buffer gets 429; a full buffer is 503.
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { Database, DatabaseUnavailableError } from '../../infrastructure/database/database.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferFullError, UserShareExceededError } from './buffer.errors.js';
import { LmdbBuffer } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';
import { lockForWrite } from '../../infrastructure/database/write-locks.js';

/** How long a client is asked to wait when the buffer is full: PostgreSQL has been down a while. */
export const BUFFER_FULL_RETRY_AFTER_SECONDS = 30;
/** … and when its own share of the buffer is used up. */
export const USER_SHARE_RETRY_AFTER_SECONDS = 30;
/** How long a client is asked to wait for a write that cannot be buffered while PostgreSQL is down. */
export const DATABASE_DOWN_RETRY_AFTER_SECONDS = 5;

export type WriteOutcome<T, P = unknown> =
  /** Answered by PostgreSQL. */
  | { mode: 'direct'; result: T }
  /**
   * Durably queued; `op` is the operation that will be applied: the one given, or for a
   * deduplicated retry (`duplicate` true) the one queued first under the same key.
   */
  | { mode: 'buffered'; op: BufferedOperation<P>; duplicate: boolean };

export interface WriteOptions {
  /**
   * The key an operation is queued under: a client's idempotency key, or what makes two
   * operations the same one (a delete: the task's id). While an operation of the same user and
   * kind is queued under this key in this replica's buffer, a retry returns that operation
   * instead of queueing a second one.
   */
  dedupeKey?: string;
  /** Tags under which `isTagged` finds the operation while it waits (scoped like `dedupeKey`). */
  tags?: string[];
  /**
   * Operations of the same user queued in this buffer (by kind and tag) whose dedupe keys this
   * one sets free once queued: a delete frees the idempotency key of its task's queued create.
   */
  releases?: Array<{ kind: string; tag: string }>;
  /**
   * False for a write that is only valid against the data as it is now (`If-Match`): instead of
   * being buffered, it fails with 503 SERVICE_UNAVAILABLE and a Retry-After. Default true.
   */
  bufferable?: boolean;
  /** Runs the direct write in a transaction, holding the write locks of these keys (`lockForWrite`). */
  lockKeys?: string[];
}

@Injectable()
export class WritePath {
  constructor(
    private readonly database: Database,
    private readonly buffer: LmdbBuffer,
    private readonly registry: OperationRegistry,
    private readonly counters: BufferCounters,
  ) {}

  /** True when a write would go to PostgreSQL now. */
  canWriteDirectly(): boolean {
    return this.database.isUp();
  }

  /** True while an operation of `kind` for `userId` waits in this replica's buffer under `key`. */
  isQueuedUnder(userId: string, kind: string, key: string): boolean {
    return this.buffer.isQueuedUnder(scopedKey(userId, kind, key));
  }

  /** The queue key of the operation of `kind` for `userId` waiting under `key`, if one waits. */
  queuedKeyUnder(userId: string, kind: string, key: string): number | undefined {
    return this.buffer.queuedKeyOf(scopedKey(userId, kind, key));
  }

  /** True while an operation of `kind` for `userId` tagged `tag` waits in this replica's buffer. */
  isTagged(userId: string, kind: string, tag: string): boolean {
    return this.buffer.isQueuedUnder(scopedTag(userId, kind, tag));
  }

  /** The operations of `kind` waiting in this replica's buffer, in their order. */
  queuedOf(kind: string): BufferedOperation[] {
    const ops: BufferedOperation[] = [];
    for (const { op } of this.buffer.queued()) if (op.kind === kind) ops.push(op);
    return ops;
  }

  /** The queue key of the waiting operation of `kind` for `userId` tagged `tag`, if one waits. */
  taggedKey(userId: string, kind: string, tag: string): number | undefined {
    return this.buffer.queuedKeyOf(scopedTag(userId, kind, tag));
  }

  /**
   * For a write that must not be buffered (`bufferable: false`): throws its 503 now, before the
   * use case reads anything, unless the write could go direct.
   */
  assertCanWriteDirectly(): void {
    if (!this.canWriteDirectly()) throw cannotBuffer();
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
    options: WriteOptions = {},
  ): Promise<WriteOutcome<T, P>> {
    // A kind nobody can replay must fail now, not sit in the buffer until the database is back.
    if (!this.registry.has(op.kind))
      throw new Error(`no handler is registered for operation kind ${op.kind}`);
    ctx.throwIfAborted();
    if (!this.canWriteDirectly()) return this.enqueue(op, options);
    try {
      const { lockKeys } = options;
      const result = lockKeys
        ? await this.database.transaction(ctx, async (manager) => {
            await lockForWrite(manager, lockKeys);
            return direct(manager);
          })
        : await this.database.run(ctx, () => direct(this.database.manager));
      return { mode: 'direct', result };
    } catch (error) {
      // Past its deadline the client has had its 504: no promise to keep, so nothing is queued.
      if (!ctx.aborted && (await this.isDatabaseUnreachable(error)))
        return this.enqueue(op, options);
      throw error;
    }
  }

  /**
   * Queues `op` without trying PostgreSQL: for a write the use case already knows must wait
   * (an update of a task whose create is still in a buffer).
   */
  async enqueue<P>(
    op: BufferedOperation<P>,
    options: WriteOptions = {},
  ): Promise<WriteOutcome<never, P>> {
    if (options.bufferable === false) throw cannotBuffer();
    const stamped = this.registry.stamp(op);
    try {
      const { entry, duplicate } = await this.buffer.add(stamped, {
        ...(options.dedupeKey === undefined
          ? {}
          : { dedupeKey: scopedKey(op.userId, op.kind, options.dedupeKey) }),
        ...(options.tags
          ? { tags: options.tags.map((tag) => scopedTag(op.userId, op.kind, tag)) }
          : {}),
        ...(options.releases
          ? { releases: options.releases.map(({ kind, tag }) => scopedTag(op.userId, kind, tag)) }
          : {}),
      });
      if (!duplicate) this.counters.buffered += 1;
      // A duplicate's original may have been stored by the previous release.
      return {
        mode: 'buffered',
        op: duplicate ? this.registry.upgrade<P>(entry.op) : stamped,
        duplicate,
      };
    } catch (error) {
      if (error instanceof BufferFullError) {
        throw new ServiceUnavailableError(
          'the write buffer is full; try again later',
          BUFFER_FULL_RETRY_AFTER_SECONDS,
        );
      }
      if (error instanceof UserShareExceededError) {
        this.counters.shareRefused += 1;
        throw new RateLimitedError(USER_SHARE_RETRY_AFTER_SECONDS);
      }
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
}

function cannotBuffer(): ServiceUnavailableError {
  return new ServiceUnavailableError(
    'the database is unavailable; try again shortly',
    DATABASE_DOWN_RETRY_AFTER_SECONDS,
  );
}

/** A key only means something for its own user and for one kind of write. */
function scopedKey(userId: string, kind: string, key: string): string {
  return JSON.stringify([userId, kind, key]);
}

/** A tag likewise, in a space of its own: a client's idempotency key can never be taken for one. */
function scopedTag(userId: string, kind: string, tag: string): string {
  return JSON.stringify([userId, kind, '#', tag]);
}
