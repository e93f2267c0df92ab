/**
 * The task use cases. A write builds the complete change first (id, timestamps, resulting
 * version) as plain data, then hands it to the write path with the one repository call that
 * applies it. The write path applies it at once, or queues it in the offline buffer while
 * PostgreSQL is down or older writes are still queued; the handlers of `task-operations.ts` then
 * apply the same change later, with the same statements.
 *
 * What a write may do while it cannot reach PostgreSQL decides its shape:
 * - create needs no read: the same task is applied now or later (202 with the task as it will
 *   be). An idempotency key deduplicates retries while queued and, once replayed, the row's
 *   unique key answers them.
 * - update reads the current task when it can (for the version to guard with, and to change
 *   only what differs); when it cannot, it queues the patch guarded by its time instead (202).
 *   With `If-Match` it must compare against the stored version, so it is never queued: 503.
 * - delete needs no read without `If-Match` (202 when queued); with it, like update.
 *
 * Concurrency is optimistic: a direct update or delete is guarded by the version it was
 * computed from. When another request changed the task in between, the use case reads again
 * and recomputes (a specific `If-Match` then fails with 412, as it should).
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  NotFoundError,
  PreconditionFailedError,
  ServiceUnavailableError,
  UnauthenticatedError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { ChangeClock, toMillisecondIso } from '../../common/time/change-clock.js';
import { Clock } from '../../common/time/clock.js';
import {
  FOREIGN_KEY_VIOLATION,
  sqlState,
} from '../../infrastructure/database/connection-errors.js';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import { createOperation } from '../buffer/operation.js';
import { WritePath } from '../buffer/write-path.js';
import { normaliseIsoInstant } from './iso-time.js';
import {
  DEFAULT_PAGE_SIZE,
  DEFAULT_TASK_SORT,
  sortKeyOf,
  type NewTask,
  type Task,
  type TaskFields,
  type TaskFilter,
  type TaskPage,
  type TaskPatch,
  type TaskPriority,
  type TaskSort,
  type TaskStatus,
  type TaskUpdate,
  type VersionCondition,
} from './task.js';
import { TaskCursorCodec, type CursorScope } from './task-cursor.js';
import {
  deletePayload,
  TASK_CREATE,
  TASK_DELETE,
  TASK_UPDATE,
  updatePayload,
  type TaskCreatePayload,
} from './task-operations.js';
import { TasksRepository } from './tasks.repository.js';
import { newId } from '../../common/util/ids.js';

/** How often a write recomputes after losing a race before it gives up with a 503. */
const MAX_ATTEMPTS = 3;

export interface CreateTaskInput {
  title: string;
  description?: string | null;
  status?: TaskStatus;
  priority?: TaskPriority;
  dueAt?: string | null;
}

export interface ListTasksInput extends TaskFilter {
  sort?: TaskSort;
  limit?: number;
  cursor?: string;
}

export interface CreatedTask {
  /** The task as stored, or, when buffered, as it will be stored. */
  task: Task;
  /** True when the idempotency key had already created (or queued) this task: nothing new was stored. */
  replayed: boolean;
  /** True when the create waits in the offline buffer (202), false when PostgreSQL has it (201). */
  buffered: boolean;
}

/** What a buffered update will change: the task's id, the fields it sets, and its time. */
export interface BufferedTaskChange extends TaskPatch {
  id: string;
  /** The task's `updatedAt` once applied, in milliseconds as the API shows it. */
  updatedAt: string;
}

export type TaskUpdateOutcome =
  { buffered: false; task: Task } | { buffered: true; change: BufferedTaskChange };

export interface TaskDeleteOutcome {
  buffered: boolean;
}

@Injectable()
export class TasksService {
  constructor(
    private readonly tasks: TasksRepository,
    private readonly cursors: TaskCursorCodec,
    private readonly clock: Clock,
    private readonly changes: ChangeClock,
    private readonly writes: WritePath,
  ) {}

  /**
   * Creates a task. With an idempotency key, the first request with that key (per user)
   * creates it and every later one, concurrent or not, gets that same task back, buffered or not.
   */
  async create(
    ctx: RequestContext,
    input: CreateTaskInput,
    idempotencyKey?: string,
  ): Promise<CreatedTask> {
    const userId = ctx.requireUserId();
    const fields = creationFields(input);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const task = this.newTask(userId, fields, idempotencyKey ?? null);
      const op = createOperation<TaskCreatePayload>(ctx, TASK_CREATE, task, this.clock.now());
      const outcome = await this.writes.execute(
        ctx,
        op,
        (db) => this.insertNow(db, task, op.id),
        idempotencyKey === undefined
          ? {}
          : {
              dedupeKey: idempotencyKey,
              findExisting: () => this.createdWithKey(ctx, userId, idempotencyKey),
            },
      );
      if (outcome.mode === 'buffered') {
        return {
          task: storedForm(outcome.op.payload),
          replayed: outcome.duplicate,
          buffered: true,
        };
      }
      if (outcome.result) return outcome.result;
      if (idempotencyKey === undefined) break;
      // Another request with this key got there first: its task is the answer.
      const existing = await this.createdWithKey(ctx, userId, idempotencyKey);
      if (existing) return existing;
      // Its task has been deleted since, which frees the key: try again.
    }
    throw new Error('the new task was not inserted and no task holds its idempotency key');
  }

  async list(ctx: RequestContext, input: ListTasksInput): Promise<TaskPage> {
    const userId = ctx.requireUserId();
    const sort = input.sort ?? DEFAULT_TASK_SORT;
    const limit = input.limit ?? DEFAULT_PAGE_SIZE;
    const filter = definedOnly({ status: input.status, priority: input.priority, q: input.q });
    const scope: CursorScope = { userId, sort, ...filter };
    const after = input.cursor === undefined ? null : this.cursors.decode(input.cursor, scope);
    // One row more than asked tells whether another page follows.
    const { tasks: rows, resumeAfter } = await this.tasks.list(ctx, userId, {
      filter,
      sort,
      after,
      limit: limit + 1,
    });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    const next =
      rows.length > limit && last ? { key: sortKeyOf(last, sort), id: last.id } : resumeAfter;
    return { items, nextCursor: next ? this.cursors.encode(next, scope) : null };
  }

  async get(ctx: RequestContext, id: string): Promise<Task> {
    const task = await this.tasks.findById(ctx, ctx.requireUserId(), id);
    if (!task) throw new NotFoundError('task');
    return task;
  }

  /**
   * Changes the given fields. Applied directly, the version grows by one when something actually
   * changes, and a patch that sets every field to the value it already has changes nothing (the
   * version, and so the ETag, stay). Buffered, the patch is applied as it is when replayed.
   */
  async update(
    ctx: RequestContext,
    id: string,
    patch: TaskPatch,
    ifMatch?: VersionCondition,
  ): Promise<TaskUpdateOutcome> {
    const userId = ctx.requireUserId();
    const wanted = normalisedPatch(patch);
    const conditional = ifMatch !== undefined;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      if (conditional) this.writes.assertCanWriteDirectly();
      else if (!this.writes.canWriteDirectly()) {
        // Nothing to read: the task may itself still be queued, and its version with it.
        const outcome = await this.updateBlind(ctx, userId, id, wanted);
        if (outcome) return outcome;
        continue;
      }
      const current = await this.readForUpdate(ctx, userId, id, conditional);
      if (current === 'unreachable') {
        const outcome = await this.updateBlind(ctx, userId, id, wanted);
        if (outcome) return outcome;
        continue;
      }
      if (!current) throw new NotFoundError('task');
      checkPrecondition(ifMatch, current.version);
      const change = this.updateOf(current, wanted);
      if (!change) return { buffered: false, task: current };
      const op = createOperation(ctx, TASK_UPDATE, updatePayload(change), this.clock.now());
      const outcome = await this.writes.execute(ctx, op, (db) => this.tasks.update(db, change), {
        bufferable: !conditional,
      });
      if (outcome.mode === 'buffered') return { buffered: true, change: bufferedView(change) };
      if (outcome.result) return { buffered: false, task: outcome.result };
    }
    throw concurrentChanges();
  }

  async delete(
    ctx: RequestContext,
    id: string,
    ifMatch?: VersionCondition,
  ): Promise<TaskDeleteOutcome> {
    const userId = ctx.requireUserId();
    if (ifMatch === undefined) {
      const deletion = { id, userId, expectedVersion: null };
      const op = createOperation(ctx, TASK_DELETE, deletePayload(deletion), this.clock.now());
      // Queued under the task's id: a second delete of it while queued is the same one, and
      // `createdWithKey` can tell at once that the task is going away.
      const outcome = await this.writes.execute(ctx, op, (db) => this.tasks.delete(db, deletion), {
        dedupeKey: id,
      });
      if (outcome.mode === 'buffered') return { buffered: true };
      if (!outcome.result) throw new NotFoundError('task');
      return { buffered: false };
    }
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      this.writes.assertCanWriteDirectly();
      const current = await this.tasks.findById(ctx, userId, id);
      if (!current) throw new NotFoundError('task');
      checkPrecondition(ifMatch, current.version);
      const deletion = { id, userId, expectedVersion: current.version };
      const op = createOperation(ctx, TASK_DELETE, deletePayload(deletion), this.clock.now());
      const outcome = await this.writes.execute(ctx, op, (db) => this.tasks.delete(db, deletion), {
        bufferable: false,
      });
      if (outcome.mode === 'direct' && outcome.result) return { buffered: false };
    }
    throw concurrentChanges();
  }

  /** Applies a create on `db`; the answer, or undefined when its id or key is taken already. */
  private async insertNow(db: SqlExecutor, task: NewTask, operationId: string): Promise<CreatedTask | undefined> {
    try {
      const inserted = await this.tasks.insert(db, task, operationId);
      return inserted ? { task: storedForm(task), replayed: false, buffered: false } : undefined;
    } catch (error) {
      // The owner's account is gone while their access token still runs.
      if (sqlState(error) === FOREIGN_KEY_VIOLATION) {
        throw new UnauthenticatedError('the account no longer exists');
      }
      throw error;
    }
  }

  private async createdWithKey(
    ctx: RequestContext,
    userId: string,
    key: string,
  ): Promise<CreatedTask | undefined> {
    const existing = await this.tasks.findByIdempotencyKey(ctx, userId, key);
    if (!existing) return undefined;
    // A delete of that task still queued frees the key once replayed: the key is not taken by
    // a task that is going away, and a create queued behind the delete will get it.
    if (this.writes.isQueuedUnder(userId, TASK_DELETE, existing.id)) return undefined;
    // Read again: the delete may have been replayed, and left the queue, since the first read.
    const current = await this.tasks.findById(ctx, userId, existing.id);
    return current && { task: current, replayed: true, buffered: false };
  }

  /**
   * The current task, for a direct update; 'unreachable' when PostgreSQL cannot be reached and
   * the update may go to the buffer instead (never a conditional one: its 503 propagates).
   */
  private async readForUpdate(
    ctx: RequestContext,
    userId: string,
    id: string,
    conditional: boolean,
  ): Promise<Task | undefined | 'unreachable'> {
    try {
      return await this.tasks.findById(ctx, userId, id);
    } catch (error) {
      if (!conditional && this.writes.isDatabaseUnreachable(error)) return 'unreachable';
      throw error;
    }
  }

  /**
   * An update computed without reading the task: the whole patch, guarded by its time. Queued
   * as a rule; should the buffer have drained meanwhile it is applied directly, and when that
   * matches no row (the task is gone, or changed at a later time) resolves undefined for the
   * caller to read and decide.
   */
  private async updateBlind(
    ctx: RequestContext,
    userId: string,
    id: string,
    wanted: TaskPatch,
  ): Promise<TaskUpdateOutcome | undefined> {
    const change: TaskUpdate = {
      id,
      userId,
      changes: wanted,
      expectedVersion: null,
      version: null,
      updatedAt: this.changes.next(),
    };
    const op = createOperation(ctx, TASK_UPDATE, updatePayload(change), this.clock.now());
    const outcome = await this.writes.execute(ctx, op, (db) => this.tasks.update(db, change));
    if (outcome.mode === 'buffered') return { buffered: true, change: bufferedView(change) };
    return outcome.result && { buffered: false, task: outcome.result };
  }

  private newTask(userId: string, fields: TaskFields, idempotencyKey: string | null): NewTask {
    // Milliseconds, as the API shows them: createdAt is a sort key, and cursors carry it.
    const now = this.clock.now().toISOString();
    this.changes.observe(now);
    return {
      id: newId(),
      userId,
      ...fields,
      createdAt: now,
      updatedAt: now,
      version: 1,
      idempotencyKey,
    };
  }

  /** The change that brings `current` to `wanted`, or undefined when nothing differs. */
  private updateOf(current: Task, wanted: TaskPatch): TaskUpdate | undefined {
    const changes: TaskPatch = {};
    if (wanted.title !== undefined && wanted.title !== current.title) changes.title = wanted.title;
    if (wanted.description !== undefined && wanted.description !== current.description) {
      changes.description = wanted.description;
    }
    if (wanted.status !== undefined && wanted.status !== current.status) {
      changes.status = wanted.status;
    }
    if (wanted.priority !== undefined && wanted.priority !== current.priority) {
      changes.priority = wanted.priority;
    }
    if (wanted.dueAt !== undefined && wanted.dueAt !== current.dueAt) changes.dueAt = wanted.dueAt;
    if (Object.keys(changes).length === 0) return undefined;
    return {
      id: current.id,
      userId: current.userId,
      changes,
      expectedVersion: current.version,
      version: current.version + 1,
      // After the task's last change even when this clock lags behind another instance's, so
      // that the time guard of a replay keeps its meaning.
      updatedAt: this.changes.next(current.updatedAt),
    };
  }
}

function checkPrecondition(ifMatch: VersionCondition | undefined, version: number): void {
  if (ifMatch === undefined || ifMatch === '*' || ifMatch.includes(version)) return;
  throw new PreconditionFailedError(
    `If-Match does not match the current version of the task ("${version}")`,
  );
}

function creationFields(input: CreateTaskInput): TaskFields {
  return {
    title: input.title,
    description: input.description ?? null,
    status: input.status ?? 'todo',
    priority: input.priority ?? 'medium',
    dueAt: input.dueAt == null ? null : canonicalDueAt(input.dueAt),
  };
}

/** The known fields of a patch, due date in canonical form; at least one must be given. */
function normalisedPatch(patch: TaskPatch): TaskPatch {
  const wanted: TaskPatch = definedOnly({
    title: patch.title,
    description: patch.description,
    status: patch.status,
    priority: patch.priority,
    dueAt: patch.dueAt == null ? patch.dueAt : canonicalDueAt(patch.dueAt),
  });
  if (Object.keys(wanted).length === 0) {
    throw ValidationFailedError.forField(
      'body',
      'must set at least one of title, description, status, priority, dueAt',
    );
  }
  return wanted;
}

/** The due date as stored and served: UTC, milliseconds (the DTO has validated the format). */
function canonicalDueAt(dueAt: string): string {
  const canonical = normaliseIsoInstant(dueAt);
  if (canonical === undefined) {
    throw ValidationFailedError.forField('dueAt', 'must be an ISO 8601 date-time');
  }
  return canonical;
}

/** A new task as the API shows it once stored: no idempotency key, times in milliseconds. */
function storedForm(task: NewTask): Task {
  const { idempotencyKey: _key, ...stored } = task;
  return {
    ...stored,
    createdAt: toMillisecondIso(stored.createdAt),
    updatedAt: toMillisecondIso(stored.updatedAt),
  };
}

/** What a queued update will change, as its 202 shows it. */
function bufferedView(change: TaskUpdate): BufferedTaskChange {
  return { id: change.id, ...change.changes, updatedAt: toMillisecondIso(change.updatedAt) };
}

function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function concurrentChanges(): ServiceUnavailableError {
  return new ServiceUnavailableError('the task is being changed by other requests; try again', 1);
}
