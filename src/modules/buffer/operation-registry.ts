/**
 * Where feature modules say how their operations are applied. Tasks registers `task.*`, Profile
 * registers `profile.*`; the buffer itself never imports a feature (dependencies point from the
 * features to the buffer, never back).
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { isValidKind, type BufferedOperation } from './operation.js';

/**
 * Applies one operation through `manager`: for a direct write the pool's (each statement on its
 * own), during replay the batch's transaction, which also holds the operation's exactly-once
 * claim. A handler must be idempotent on its own: applied a second time (a direct write whose
 * answer was lost to a dropped connection, then buffered and replayed) it has no further effect.
 * It must be correct against the database as it is now (a row deleted meanwhile, a newer
 * change). Throw `PermanentOperationError` when the operation can never apply.
 */
export type OperationHandler<P = unknown> = (
  manager: EntityManager,
  op: BufferedOperation<P>,
) => Promise<void>;

/**
 * Applies a run of consecutive operations of one kind, in their order, with the same effect as
 * the kind's handler applied to each in turn, but in fewer statements (a multi-row INSERT, say).
 * Replay uses it for every run of two or more; when it throws, replay narrows the run down to
 * the failing operation with smaller runs and, in the end, the single-operation handler.
 */
export type BatchOperationHandler<P = unknown> = (
  manager: EntityManager,
  ops: readonly BufferedOperation<P>[],
) => Promise<void>;

export interface OperationKindOptions<P = unknown> {
  applyBatch?: BatchOperationHandler<P>;
}

interface Registration {
  handler: OperationHandler;
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
      applyBatch: options.applyBatch as BatchOperationHandler | undefined,
    });
  }

  handlerFor(kind: string): OperationHandler | undefined {
    return this.registrations.get(kind)?.handler;
  }

  batchHandlerFor(kind: string): BatchOperationHandler | undefined {
    return this.registrations.get(kind)?.applyBatch;
  }

  has(kind: string): boolean {
    return this.registrations.has(kind);
  }
}
