/**
 * The tasks' writes as operations of the offline buffer: their kinds, their payloads (and how an
 * older release's payloads are read), and how replay applies them. Handlers run the repository's
 * apply statements, the same ones a direct write runs, so a change has one code path whether it
 * is applied at once or later; all are idempotent and independent of the order in which buffers
 * drain (docs/design/replicas.md, section 2).
 *
 * Before a batch of updates and deletes is applied, its triage asks Redis which of their tasks
 * are creates still waiting in some replica's buffer, then PostgreSQL which have a row, an alias
 * or a tombstone (in that order: a replayed create commits before its pending record goes, so a
 * task in neither was never created). An update of a task whose create is still on its way is
 * parked until the create lands; a delete of one writes its tombstone at once; a write of a task
 * that never existed (or is not the caller's) is set aside. One Redis round trip and one query
 * for the whole batch.
 *
 * The owner is always the operation's `userId` (the authenticated caller who made it), never a
 * value from the payload, and every statement filters by it: a buffered change to another
 * user's task matches no row and so can never apply.
 */
import { Injectable, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { BufferedOperation } from '../buffer/operation.js';
import {
  OperationRegistry,
  type QueuedOperation,
  type Triage,
} from '../buffer/operation-registry.js';
import { WritePath } from '../buffer/write-path.js';
import { comparePositions, positionAt, positionedWithoutRedis } from '../buffer/write-order.js';
import { TaskCoordination, taskRef } from './task-coordination.js';
import type { NewTask, TaskDeletion, TaskPatch, TaskUpdate } from './task.js';
import { TasksRepository } from './tasks.repository.js';

export const TASK_CREATE = 'task.create';
export const TASK_UPDATE = 'task.update';
export const TASK_DELETE = 'task.delete';

/** The payload versions of this release (2: positions). */
const PAYLOAD_VERSION = 2;

/** `task.create`: the complete new task, its final id included (its position is null: see NewTask). */
export type TaskCreatePayload = NewTask;

/** `task.update`: the fields to set, at the update's position. */
export interface TaskUpdatePayload {
  id: string;
  changes: TaskPatch;
  position: string;
}

/** `task.delete`: which task, at the delete's position; a buffered delete has no version condition. */
export interface TaskDeletePayload {
  id: string;
  position: string;
}

/** Payloads of version 1, stored by the release before positions: ordered by their times. */
type CreatePayloadV1 = Omit<NewTask, 'position'>;
interface UpdatePayloadV1 {
  id: string;
  changes: TaskPatch;
  updatedAt: string;
}
interface DeletePayloadV1 {
  id: string;
}

export const TASK_UPGRADES = {
  [TASK_CREATE]: (payload: unknown): TaskCreatePayload => {
    const v1 = payload as CreatePayloadV1;
    return { ...v1, position: null };
  },
  [TASK_UPDATE]: (payload: unknown): TaskUpdatePayload => {
    const { id, changes, updatedAt } = payload as UpdatePayloadV1;
    return { id, changes, position: positionAt(updatedAt) };
  },
  [TASK_DELETE]: (payload: unknown, op: BufferedOperation): TaskDeletePayload => ({
    id: (payload as DeletePayloadV1).id,
    position: positionAt(op.acceptedAt),
  }),
};

export function updatePayload(change: TaskUpdate): TaskUpdatePayload {
  return { id: change.id, changes: change.changes, position: change.position };
}

export function deletePayload(deletion: TaskDeletion): TaskDeletePayload {
  return { id: deletion.id, position: deletion.position };
}

/** The create an operation stands for, owned by the operation's user. */
export function taskOf(op: BufferedOperation<TaskCreatePayload>): NewTask {
  return { ...op.payload, userId: op.userId };
}

/** The update an operation stands for (never conditional on a version). */
export function updateOf(op: BufferedOperation<TaskUpdatePayload>): TaskUpdate {
  const { id, changes, position } = op.payload;
  return { id, userId: op.userId, changes, position, expectedVersion: null };
}

/**
 * The write lock of a task: its create and the deletes that may write its tombstone before its
 * row is visible hold it, so neither misses the other (infrastructure/database/write-locks.ts).
 */
export function taskLockKey(userId: string, id: string): string {
  return `task:${userId}:${id.toLowerCase()}`;
}

export function deletionOf(op: BufferedOperation<TaskDeletePayload>): TaskDeletion {
  return {
    id: op.payload.id,
    userId: op.userId,
    position: op.payload.position,
    expectedVersion: null,
  };
}

@Injectable()
export class TaskOperations implements OnModuleInit, OnApplicationBootstrap {
  constructor(
    private readonly registry: OperationRegistry,
    private readonly tasks: TasksRepository,
    private readonly coordination: TaskCoordination,
    private readonly writes: WritePath,
  ) {}

  /**
   * The creates this process finds in its buffer may never have been recorded as pending (Redis
   * was down when they were buffered, before a restart): they are recorded once Redis answers.
   */
  onApplicationBootstrap(): void {
    this.coordination.recordLater(
      this.writes.queuedOf(TASK_CREATE).map((op) => {
        const { id, createdAt } = op.payload as Pick<NewTask, 'id' | 'createdAt'>;
        return { userId: op.userId, id, createdAt };
      }),
    );
  }

  onModuleInit(): void {
    this.registry.register<TaskCreatePayload>(
      TASK_CREATE,
      (manager, op) => this.applyCreates(manager, [taskOf(op)]),
      {
        version: PAYLOAD_VERSION,
        upgrades: { 1: TASK_UPGRADES[TASK_CREATE] },
        applyBatch: (manager, ops) => this.applyCreates(manager, ops.map(taskOf)),
        lockKey: (op) => taskLockKey(op.userId, op.payload.id),
        afterApply: (ops) =>
          this.coordination.applied(ops.map((op) => ({ userId: op.userId, id: op.payload.id }))),
      },
    );
    this.registry.register<TaskUpdatePayload>(
      TASK_UPDATE,
      (manager, op) => this.replayUpdate(manager, updateOf(op)),
      {
        version: PAYLOAD_VERSION,
        upgrades: { 1: TASK_UPGRADES[TASK_UPDATE] },
        triage: (manager, ops) => this.triage(manager, ops, 'update'),
      },
    );
    this.registry.register<TaskDeletePayload>(
      TASK_DELETE,
      async (manager, op) => {
        await this.tasks.deleteMany(manager, [deletionOf(op)]);
      },
      {
        version: PAYLOAD_VERSION,
        upgrades: { 1: TASK_UPGRADES[TASK_DELETE] },
        applyBatch: async (manager, ops) => {
          await this.tasks.deleteMany(manager, ops.map(deletionOf));
        },
        lockKey: (op) => taskLockKey(op.userId, op.payload.id),
        triage: (manager, ops) => this.triage(manager, ops, 'delete'),
      },
    );
  }

  /**
   * Applies creates in order; those that found their idempotency key held by another task of
   * the same user (the same client intent, applied first elsewhere) become aliases of it.
   */
  async applyCreates(manager: EntityManager, tasks: readonly NewTask[]): Promise<void> {
    const inserted =
      tasks.length === 1
        ? Number(await this.tasks.insert(manager, tasks[0]!))
        : await this.tasks.insertMany(manager, tasks);
    if (inserted < tasks.length) await this.tasks.recordKeyAliases(manager, tasks);
  }

  /**
   * Applies a buffered update. No row taking it means the task carries later writes of every
   * field it sets, or was deleted (its tombstone): either way nothing is left to do. An id
   * recorded as an alias updates the task it stands for.
   */
  async replayUpdate(manager: EntityManager, change: TaskUpdate): Promise<void> {
    if (await this.tasks.merge(manager, change)) return;
    const [presence] = await this.tasks.presenceOf(manager, [
      { userId: change.userId, id: change.id },
    ]);
    if (presence?.aliasOf) await this.tasks.merge(manager, { ...change, id: presence.aliasOf });
  }

  private async triage(
    manager: EntityManager,
    items: readonly QueuedOperation<TaskUpdatePayload | TaskDeletePayload>[],
    kind: 'update' | 'delete',
  ): Promise<Triage[]> {
    const refs = items.map(({ op }) => ({ userId: op.userId, id: op.payload.id }));
    // Redis first, then PostgreSQL (see the header).
    const pending = await this.coordination.pendingOf(refs);
    const presence = await this.tasks.presenceOf(manager, refs);
    return items.map(({ key, op }, index): Triage => {
      const known = presence[index]!;
      const { userId, id } = refs[index]!;
      if (kind === 'update') {
        // A delete of the task waits ahead of it in this queue: applied first, it leaves nothing to update.
        const deleteKey = this.writes.queuedKeyUnder(userId, TASK_DELETE, id);
        if (deleteKey !== undefined && deleteKey < key) {
          return { verdict: 'set-aside', reason: `task ${id} was deleted before this update` };
        }
      }
      if (known.stored) return { verdict: 'apply' };
      if (known.deleted) {
        // Written before the delete: overtaken by it, nothing left to do (applying is a no-op).
        // Written after it: the task is gone for good; an update of it can never apply.
        const after =
          known.deletedAt !== undefined &&
          comparePositions(op.payload.position, known.deletedAt) > 0;
        return kind === 'update' && after
          ? { verdict: 'set-aside', reason: `task ${op.payload.id} was deleted before this update` }
          : { verdict: 'apply' };
      }
      // Its create waits in this very queue ahead of it: replay applies it first.
      const createKey = this.writes.taggedKey(userId, TASK_CREATE, id);
      if (createKey !== undefined && createKey < key) return { verdict: 'apply' };
      const queuedHere = createKey !== undefined;
      // Redis's "pending nowhere" is only an answer for a write accepted while Redis answered: a
      // create buffered while Redis was down was never recorded, and neither could this write
      // have been told of it.
      const elsewhere =
        pending === undefined || positionedWithoutRedis(op.payload.position)
          ? undefined
          : pending.has(taskRef(userId, id));
      if (!queuedHere && elsewhere === false) {
        return {
          verdict: 'set-aside',
          reason: `task ${id} does not exist for user ${userId}: never created, or not theirs`,
        };
      }
      // A delete of a task still on its way writes its tombstone now: the create will meet it.
      if (kind === 'delete') return { verdict: 'apply' };
      return {
        verdict: 'park',
        reason:
          queuedHere || elsewhere
            ? `task ${id} is still being created`
            : `task ${id} has no row, and Redis cannot say whether its create is in another buffer (Redis was down when this write was accepted, or is now)`,
      };
    });
  }
}
