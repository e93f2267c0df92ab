/**
 * The tasks' writes as operations of the offline buffer: their kinds, their payloads, and the
 * handlers that apply them on replay. Handlers run the repository's apply statements, the same
 * ones a direct write runs, so a change has one code path whether it is applied at once or
 * later. All three kinds are idempotent on their own, as every handler must be: an insert that
 * ignores a conflict, an update guarded by its time, a delete that tolerates a missing row.
 *
 * The owner is always the operation's `userId` (the authenticated caller who made it), never a
 * value from the payload, and every statement filters by it: a buffered change to another
 * user's task matches no row and so can never apply.
 */
import { Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { PermanentOperationError } from '../buffer/buffer.errors.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import type { NewTask, TaskDeletion, TaskPatch, TaskUpdate } from './task.js';
import { TasksRepository } from './tasks.repository.js';

export const TASK_CREATE = 'task.create';
export const TASK_UPDATE = 'task.update';
export const TASK_DELETE = 'task.delete';

/** `task.create`: the complete new task, its final id included. */
export type TaskCreatePayload = NewTask;

/**
 * `task.update`: the fields to set, at the change's time. A buffered update is always guarded
 * by that time, never by a version: a version read before the change was queued may be passed by
 * the time it is applied (by other changes queued ahead of it), while the time still orders it
 * right. Times come from `ChangeClock`, strictly increasing, so two changes never tie.
 */
export interface TaskUpdatePayload {
  id: string;
  changes: TaskPatch;
  updatedAt: string;
}

/** `task.delete`: which task; a buffered delete has no version condition. */
export interface TaskDeletePayload {
  id: string;
}

export function updatePayload(change: TaskUpdate): TaskUpdatePayload {
  return { id: change.id, changes: change.changes, updatedAt: change.updatedAt };
}

export function deletePayload(deletion: TaskDeletion): TaskDeletePayload {
  return { id: deletion.id };
}

/** The create an operation stands for, owned by the operation's user. */
export function taskOf(op: BufferedOperation<TaskCreatePayload>): NewTask {
  return { ...op.payload, userId: op.userId };
}

/** The time-guarded update an operation stands for. */
export function updateOf(op: BufferedOperation<TaskUpdatePayload>): TaskUpdate {
  const { id, changes, updatedAt } = op.payload;
  return { id, userId: op.userId, changes, expectedVersion: null, version: null, updatedAt };
}

export function deletionOf(op: BufferedOperation<TaskDeletePayload>): TaskDeletion {
  return { id: op.payload.id, userId: op.userId, expectedVersion: null };
}

@Injectable()
export class TaskOperations implements OnModuleInit {
  constructor(
    private readonly registry: OperationRegistry,
    private readonly tasks: TasksRepository,
  ) {}

  onModuleInit(): void {
    this.registry.register<TaskCreatePayload>(
      TASK_CREATE,
      async (db, op) => {
        const task = taskOf(op);
        if (!(await this.tasks.insert(db, task))) await this.tasks.recordKeyAliases(db, [task]);
      },
      {
        applyBatch: async (db, ops) => {
          const tasks = ops.map(taskOf);
          if ((await this.tasks.insertMany(db, tasks)) < tasks.length) await this.tasks.recordKeyAliases(db, tasks);
        },
      },
    );
    this.registry.register<TaskUpdatePayload>(
      TASK_UPDATE,
      (db, op) => this.replayUpdate(db, updateOf(op)),
    );
    this.registry.register<TaskDeletePayload>(
      TASK_DELETE,
      async (db, op) => {
        const deletion = deletionOf(op);
        if (await this.tasks.delete(db, deletion)) return;
        const target = await this.tasks.aliasTarget(db, deletion.userId, deletion.id);
        if (target) await this.tasks.delete(db, { ...deletion, id: target });
      },
      {
        applyBatch: async (db, ops) => {
          await this.tasks.deleteMany(db, ops.map(deletionOf));
        },
      },
    );
  }

  /**
   * Applies a buffered update. Matching no row has two meanings: the task carries a change as
   * new or newer (this very update, applied before; or a later change): nothing to do. Or the
   * task is not there (deleted meanwhile, or never the caller's): the update can never apply,
   * and is set aside instead of being dropped in silence. An id recorded as an alias (a create
   * whose key another task held) updates that task.
   */
  async replayUpdate(db: EntityManager, change: TaskUpdate): Promise<void> {
    if (await this.tasks.update(db, change)) return;
    if (await this.tasks.exists(db, change.userId, change.id)) return;
    // The id a create answered with, whose key another task held by its replay: that task.
    const target = await this.tasks.aliasTarget(db, change.userId, change.id);
    if (target) return this.replayUpdate(db, { ...change, id: target });
    throw new PermanentOperationError(
      `task ${change.id} does not exist for user ${change.userId}: it was deleted, or is not theirs`,
    );
  }
}
