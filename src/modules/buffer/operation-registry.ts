/**
 * Where feature modules say how their operations are applied. Tasks registers `task.*`, Profile
 * registers `profile.*`; the buffer itself never imports a feature (dependencies point from the
 * features to the buffer, never back).
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { PermanentOperationError } from './buffer.errors.js';
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

/**
 * What replay does with an operation before applying anything: apply it, park it until what it
 * waits for has happened (its task's create, still in another replica's buffer), or set it
 * aside for good (its task does not exist).
 */
export type Triage =
  | { verdict: 'apply' }
  | { verdict: 'park'; reason: string }
  | { verdict: 'set-aside'; reason: string };

/** An operation as triage sees it: with its key in the queue (replay applies keys in order). */
export interface QueuedOperation<P = unknown> {
  op: BufferedOperation<P>;
  key: number;
}

/**
 * Sorts a batch's operations of one kind, one verdict each, in order, with a few statements for
 * the whole batch (never one per operation): a flood of impossible writes must cost little.
 */
export type TriageHandler<P = unknown> = (
  manager: EntityManager,
  ops: readonly QueuedOperation<P>[],
) => Promise<Triage[]>;

/** Told which operations of its kind replay has committed (best effort, after the commit). */
export type AppliedHandler<P = unknown> = (ops: readonly BufferedOperation<P>[]) => Promise<void>;

/** Turns a payload of one version into a payload of the next; `op` is the stored operation. */
export type PayloadUpgrade = (payload: unknown, op: BufferedOperation) => unknown;

export interface OperationKindOptions<P = unknown> {
  applyBatch?: BatchOperationHandler<P>;
  triage?: TriageHandler<P>;
  afterApply?: AppliedHandler<P>;
  /**
   * What the operation writes, as a key shared with every other write of the same thing (direct
   * or replayed, on any replica): replay holds the key's lock (`lockForWrite`) for its
   * transaction, so that such writes apply one after the other.
   */
  lockKey?: (op: BufferedOperation<P>) => string;
  /** The version of the payload shape the handlers take (default 1). */
  version?: number;
  /**
   * For every older version n (1 … version − 1), how a payload of version n becomes one of
   * version n + 1. Applied in turn to an operation stored by an earlier release before any
   * handler, or the write path, sees it.
   */
  upgrades?: Record<number, PayloadUpgrade>;
}

interface Registration {
  handler: OperationHandler;
  applyBatch: BatchOperationHandler | undefined;
  triage: TriageHandler | undefined;
  afterApply: AppliedHandler | undefined;
  lockKey: ((op: BufferedOperation) => string) | undefined;
  version: number;
  upgrades: Record<number, PayloadUpgrade>;
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
    const version = options.version ?? 1;
    const upgrades = options.upgrades ?? {};
    for (let from = 1; from < version; from += 1) {
      if (!upgrades[from])
        throw new Error(`${kind} version ${version} says nothing of how version ${from} upgrades`);
    }
    this.registrations.set(kind, {
      handler: handler as OperationHandler,
      applyBatch: options.applyBatch as BatchOperationHandler | undefined,
      triage: options.triage as TriageHandler | undefined,
      afterApply: options.afterApply as AppliedHandler | undefined,
      lockKey: options.lockKey as ((op: BufferedOperation) => string) | undefined,
      version,
      upgrades,
    });
  }

  /** The write lock `op` must hold while it applies, if its kind names one. */
  lockKeyOf(op: BufferedOperation): string | undefined {
    return this.registrations.get(op.kind)?.lockKey?.(op);
  }

  /** `op` stamped with its kind's current payload version, as it is stored. */
  stamp<P>(op: BufferedOperation<P>): BufferedOperation<P> {
    const registration = this.registrations.get(op.kind);
    return registration ? { ...op, version: registration.version } : op;
  }

  /**
   * `op` with its payload in its kind's current shape. An operation stored by a newer release
   * (a rollback to this one) cannot be read: it is refused for good, and replay sets it aside.
   */
  upgrade<P>(op: BufferedOperation): BufferedOperation<P> {
    const registration = this.registrations.get(op.kind);
    const stored = op.version ?? 1;
    if (!registration || stored === registration.version) return op as BufferedOperation<P>;
    if (stored > registration.version) {
      throw new PermanentOperationError(
        `${op.kind} payload version ${stored} was written by a newer release than this one (version ${registration.version})`,
      );
    }
    let payload = op.payload;
    for (let from = stored; from < registration.version; from += 1)
      payload = registration.upgrades[from]!(payload, op);
    return { ...op, payload, version: registration.version } as BufferedOperation<P>;
  }

  handlerFor(kind: string): OperationHandler | undefined {
    return this.registrations.get(kind)?.handler;
  }

  batchHandlerFor(kind: string): BatchOperationHandler | undefined {
    return this.registrations.get(kind)?.applyBatch;
  }

  triageFor(kind: string): TriageHandler | undefined {
    return this.registrations.get(kind)?.triage;
  }

  afterApplyFor(kind: string): AppliedHandler | undefined {
    return this.registrations.get(kind)?.afterApply;
  }

  has(kind: string): boolean {
    return this.registrations.has(kind);
  }
}
