/**
 * Where feature modules say how their operations are applied. Tasks registers `task.*`, Profile
 * registers `profile.*`; the buffer itself never imports a feature (dependencies point from the
 * features to the buffer, never back).
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { isValidKind, type BufferedOperation } from './operation.js';

/**
 * Applies one operation inside the transaction of `manager`: the direct write and every replay
 * run the same code. Replay may hand the same operation to a handler only if its earlier
 * application was rolled back, so a handler need not guard against itself; it must still be
 * correct against the database as it is now (a row deleted meanwhile, a newer version).
 * Throw `PermanentOperationError` when the operation can never apply.
 */
export type OperationHandler<P = unknown> = (
  manager: EntityManager,
  op: BufferedOperation<P>,
) => Promise<void>;

@Injectable()
export class OperationRegistry {
  private readonly handlers = new Map<string, OperationHandler>();

  /** Registers the handler of `kind`; call it from the feature module's `onModuleInit`. */
  register<P>(kind: string, handler: OperationHandler<P>): void {
    if (!isValidKind(kind)) throw new TypeError(`invalid operation kind: ${kind}`);
    if (this.handlers.has(kind)) throw new Error(`a handler for ${kind} is already registered`);
    this.handlers.set(kind, handler as OperationHandler);
  }

  handlerFor(kind: string): OperationHandler | undefined {
    return this.handlers.get(kind);
  }

  has(kind: string): boolean {
    return this.handlers.has(kind);
  }

  kinds(): string[] {
    return [...this.handlers.keys()];
  }
}
