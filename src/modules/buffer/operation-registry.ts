/**
 * Where feature modules say how their operations are applied. Tasks registers `task.*`, Profile
 * registers `profile.*`; the buffer itself never imports a feature (dependencies point from the
 * features to the buffer, never back).
 */
import { Injectable } from '@nestjs/common';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import { isValidKind, type BufferedOperation } from './operation.js';

/**
 * Applies one operation through `db`: during replay, the batch's transaction, which also holds
 * the operation's exactly-once claim. Replay may hand the same operation to a handler only if its
 * earlier application was rolled back, so a handler need not guard against itself; it must still
 * be correct against the database as it is now (a row deleted meanwhile, a newer version).
 * Throw `PermanentOperationError` when the operation can never apply.
 */
export type OperationHandler<P = unknown> = (
  db: SqlExecutor,
  op: BufferedOperation<P>,
) => Promise<void>;

/**
 * Applies a run of consecutive operations of one kind, in their order, with the same effect as
 * the kind's handler applied to each in turn, but in fewer statements (a multi-row INSERT, say).
 * Replay uses it for every run of two or more; when it throws, replay narrows the run down to
 * the failing operation with smaller runs and, in the end, the single-operation handler.
 */
export type BatchOperationHandler<P = unknown> = (
  db: SqlExecutor,
  ops: readonly BufferedOperation<P>[],
) => Promise<void>;

export interface OperationKindOptions<P = unknown> {
  /**
   * The handler is idempotent on its own: applying an operation a second time has no further
   * effect (an INSERT … ON CONFLICT DO NOTHING, an update guarded by the version or time it was
   * computed from, a delete that tolerates a missing row). A direct write of such a kind then
   * runs as plain statements, without a transaction and without recording its id in the
   * exactly-once ledger: should the connection die after the commit, the write is buffered and
   * its replay finds nothing left to do. Replay itself always records ids, since it must not
   * re-apply a batch it committed just before a crash.
   */
  idempotent?: boolean;
  applyBatch?: BatchOperationHandler<P>;
}

interface Registration {
  handler: OperationHandler;
  idempotent: boolean;
  applyBatch: BatchOperationHandler | undefined;
}

@Injectable()
export class OperationRegistry {
  private readonly registrations = new Map<string, Registration>();

  /** Registers the handler of `kind`; call it from the feature module's `onModuleInit`. */
  register<P>(
    kind: string,
    handler: OperationHandler<P>,
    options: OperationKindOptions<P> = {},
  ): void {
    if (!isValidKind(kind)) throw new TypeError(`invalid operation kind: ${kind}`);
    if (this.registrations.has(kind))
      throw new Error(`a handler for ${kind} is already registered`);
    this.registrations.set(kind, {
      handler: handler as OperationHandler,
      idempotent: options.idempotent ?? false,
      applyBatch: options.applyBatch as BatchOperationHandler | undefined,
    });
  }

  handlerFor(kind: string): OperationHandler | undefined {
    return this.registrations.get(kind)?.handler;
  }

  batchHandlerFor(kind: string): BatchOperationHandler | undefined {
    return this.registrations.get(kind)?.applyBatch;
  }

  isIdempotent(kind: string): boolean {
    return this.registrations.get(kind)?.idempotent ?? false;
  }

  has(kind: string): boolean {
    return this.registrations.has(kind);
  }

  kinds(): string[] {
    return [...this.registrations.keys()];
  }
}
