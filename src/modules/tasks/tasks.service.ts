/**
 * The task use cases. Each write first reads what it needs (the current task, for `If-Match`
 * and to know what actually changes), then builds the complete change (id, timestamps,
 * resulting version) as plain data and hands it to exactly one apply call of the repository.
 * That seam lets the offline buffer store the same change and apply it later.
 *
 * Concurrency is optimistic: an update or delete is guarded by the version it was computed
 * from. When another request changed the task in between, the use case reads again and
 * recomputes (a specific `If-Match` then fails with 412, as it should).
 */
import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  NotFoundError,
  PreconditionFailedError,
  ServiceUnavailableError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { Clock } from './clock.js';
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
import { TasksRepository } from './tasks.repository.js';

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
  task: Task;
  /** True when the idempotency key had already created this task: nothing new was stored. */
  replayed: boolean;
}

@Injectable()
export class TasksService {
  constructor(
    private readonly tasks: TasksRepository,
    private readonly cursors: TaskCursorCodec,
    private readonly clock: Clock,
  ) {}

  /**
   * Creates a task. With an idempotency key, the first request with that key (per user)
   * creates it and every later one, concurrent or not, gets that same task back.
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
      const inserted = await this.tasks.insertTask(ctx, task);
      if (inserted) return { task: withoutIdempotencyKey(task), replayed: false };
      if (idempotencyKey === undefined) break;
      // Another request with this key got there first: its task is the answer.
      const existing = await this.tasks.findByIdempotencyKey(ctx, userId, idempotencyKey);
      if (existing) return { task: existing, replayed: true };
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
    const rows = await this.tasks.list(ctx, userId, { filter, sort, after, limit: limit + 1 });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    const nextCursor =
      rows.length > limit && last
        ? this.cursors.encode({ key: sortKeyOf(last, sort), id: last.id }, scope)
        : null;
    return { items, nextCursor };
  }

  async get(ctx: RequestContext, id: string): Promise<Task> {
    const task = await this.tasks.findById(ctx, ctx.requireUserId(), id);
    if (!task) throw new NotFoundError('task');
    return task;
  }

  /**
   * Changes the given fields. The version grows by one when something actually changes; a
   * patch that sets every field to the value it already has changes nothing and keeps the
   * version (and so the ETag) as it is.
   */
  async update(
    ctx: RequestContext,
    id: string,
    patch: TaskPatch,
    ifMatch?: VersionCondition,
  ): Promise<Task> {
    const userId = ctx.requireUserId();
    const wanted = normalisedPatch(patch);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const current = await this.tasks.findById(ctx, userId, id);
      if (!current) throw new NotFoundError('task');
      checkPrecondition(ifMatch, current.version);
      const change = this.updateOf(current, wanted);
      if (!change) return current;
      const updated = await this.tasks.applyUpdate(ctx, change);
      if (updated) return updated;
    }
    throw concurrentChanges();
  }

  async delete(ctx: RequestContext, id: string, ifMatch?: VersionCondition): Promise<void> {
    const userId = ctx.requireUserId();
    if (ifMatch === undefined) {
      const deleted = await this.tasks.deleteTask(ctx, { id, userId, expectedVersion: null });
      if (!deleted) throw new NotFoundError('task');
      return;
    }
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const current = await this.tasks.findById(ctx, userId, id);
      if (!current) throw new NotFoundError('task');
      checkPrecondition(ifMatch, current.version);
      const deletion = { id, userId, expectedVersion: current.version };
      if (await this.tasks.deleteTask(ctx, deletion)) return;
    }
    throw concurrentChanges();
  }

  private newTask(userId: string, fields: TaskFields, idempotencyKey: string | null): NewTask {
    const now = this.clock.now().toISOString();
    return {
      id: uuidv7(),
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
      updatedAt: this.nextUpdatedAt(current),
    };
  }

  /**
   * Now, but always after the task's last change: `updated_at` then grows with every change
   * even across instances whose clocks disagree by a little, which keeps the time guard of
   * changes applied without a known version meaningful.
   */
  private nextUpdatedAt(current: Task): string {
    const now = this.clock.now().getTime();
    const floor = Date.parse(current.updatedAt) + 1;
    return new Date(Math.max(now, floor)).toISOString();
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

function withoutIdempotencyKey(task: NewTask): Task {
  const { idempotencyKey: _key, ...stored } = task;
  return stored;
}

function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function concurrentChanges(): ServiceUnavailableError {
  return new ServiceUnavailableError('the task is being changed by other requests; try again', 1);
}
