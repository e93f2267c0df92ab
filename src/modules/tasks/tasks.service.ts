/**
 * The task use cases. An update or delete takes its position first (its place in the order of
 * acceptance, across replicas: WriteOrder; a create needs none), builds the complete change as
 * plain data (id, timestamps, position), then hands it to the write path with the one repository call that applies it. The
 * write path applies it at once, or queues it in the offline buffer while PostgreSQL is down; the
 * handlers of `task-operations.ts` apply the same change later, with the same statements. What is
 * stored merges writes by position (docs/design/replicas.md), so a write may be applied before
 * or after writes accepted earlier by other replicas, with the same result.
 *
 * What a write may do while it cannot reach PostgreSQL decides its shape:
 * - create needs no read: the same task is applied now or later (202 with the task as it will
 *   be). An idempotency key is reserved in Redis, so that a retry through any replica answers
 *   the same task; PostgreSQL's unique key stays the authority.
 * - update needs no read either: it is merged field by field. With `If-Match` it must compare
 *   against the stored version, so it is never queued: 503.
 * - delete needs no read without `If-Match` (202 when queued); with it, like update.
 *
 * An update or delete of a task that has no row is accepted (202) when the task's create is
 * still waiting in a buffer (this replica's, or another's as Redis knows it), instead of 404.
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  NotFoundError,
  PreconditionFailedError,
  ServiceUnavailableError,
  UnauthenticatedError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { Clock } from '../../common/time/clock.js';
import { newId } from '../../common/util/ids.js';
import {
  FOREIGN_KEY_VIOLATION,
  sqlState,
} from '../../infrastructure/database/connection-errors.js';
import { createOperation, type BufferedOperation } from '../buffer/operation.js';
import { WriteOrder, timeOfPosition } from '../buffer/write-order.js';
import { WritePath, type WriteOptions } from '../buffer/write-path.js';
import { normaliseIsoInstant } from './iso-time.js';
import {
  DEFAULT_PAGE_SIZE,
  DEFAULT_TASK_SORT,
  sortKeyOf,
  TASK_FIELD_NAMES,
  type NewTask,
  type Task,
  type TaskDeletion,
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
import { TaskCoordination, taskRef, type KeyReservation } from './task-coordination.js';
import { TaskCursorCodec, type CursorScope } from './task-cursor.js';
import {
  deletePayload,
  TASK_CREATE,
  taskLockKey,
  TASK_DELETE,
  TASK_UPDATE,
  updatePayload,
  type TaskCreatePayload,
  type TaskUpdatePayload,
} from './task-operations.js';
import { TasksRepository } from './tasks.repository.js';

/** How often a conditional write reads again after losing a race, before a 503. */
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
  /** True when the create waits in an offline buffer (202), false when PostgreSQL has it (201). */
  buffered: boolean;
}

/** What a buffered update will change: the task's id, the fields it sets, and its time. */
export interface BufferedTaskChange extends TaskPatch {
  id: string;
  /** The time of the update, in milliseconds as the API shows it: the task's `updatedAt` will be this or later. */
  updatedAt: string;
}

export type TaskUpdateOutcome =
  { buffered: false; task: Task } | { buffered: true; change: BufferedTaskChange };

export interface TaskDeleteOutcome {
  buffered: boolean;
}

/** What a direct update or delete found when no row took it. */
type Miss = 'superseded' | 'deleted' | 'unknown';

@Injectable()
export class TasksService {
  constructor(
    private readonly tasks: TasksRepository,
    private readonly cursors: TaskCursorCodec,
    private readonly clock: Clock,
    private readonly order: WriteOrder,
    private readonly coordination: TaskCoordination,
    private readonly writes: WritePath,
  ) {}

  /**
   * Creates a task. With an idempotency key, the first request with that key (per user)
   * creates it and every later one, concurrent or not, through any replica, gets that same task
   * back, buffered or not.
   */
  async create(
    ctx: RequestContext,
    input: CreateTaskInput,
    idempotencyKey?: string,
  ): Promise<CreatedTask> {
    const userId = ctx.requireUserId();
    const fields = creationFields(input);
    const key = idempotencyKey ?? null;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      // No position: a create comes before every other write of its task (see NewTask).
      const task = this.newTask(userId, fields, key);
      const held =
        key === null ? undefined : await this.coordination.reserveKey(userId, key, storedForm(task));
      if (held && held.id !== task.id) {
        const answer = await this.answerReservation(ctx, userId, held);
        if (answer) return answer;
        // Its task is gone (deleted while Redis could not hear of it): the key is free again.
        await this.coordination.release(userId, key!, held.id);
        continue;
      }
      const op = createOperation<TaskCreatePayload>(ctx, TASK_CREATE, task, this.clock.now());
      const outcome = await this.writes.execute(
        ctx,
        op,
        (manager) => this.insertNow(manager, task),
        {
          ...(key === null ? {} : { dedupeKey: key }),
          tags: [task.id],
        },
      );
      if (outcome.mode === 'buffered')
        return this.bufferedCreate(outcome.op, outcome.duplicate, key);
      if (outcome.result) {
        if (key !== null) await this.coordination.confirm(userId, key, task.id);
        return { task: storedForm(task), replayed: false, buffered: false };
      }
      // Another request with this key got there first: its task is the answer, not this one.
      const existing = await this.createdWithKey(ctx, userId, key!);
      if (existing === 'queue-behind') return this.bufferedCreate(op, false, key, true);
      await this.coordination.release(userId, key!, task.id);
      if (existing) return existing;
      // Its task has been deleted since, which frees the key: try again.
    }
    throw new ServiceUnavailableError(
      'the idempotency key is being used by other requests; try again',
      1,
    );
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
   * Changes the given fields, merged by position. Applied directly, the version grows by one
   * when something actually changes: a patch that sets every field to the value it already has
   * changes nothing (the version, and so the ETag, stay).
   */
  async update(
    ctx: RequestContext,
    id: string,
    patch: TaskPatch,
    ifMatch?: VersionCondition,
  ): Promise<TaskUpdateOutcome> {
    const userId = ctx.requireUserId();
    const wanted = normalisedPatch(patch);
    if (ifMatch !== undefined) return this.updateIfMatch(ctx, userId, id, wanted, ifMatch);
    const change: TaskUpdate = {
      id,
      userId,
      changes: wanted,
      position: await this.order.next(userId),
      expectedVersion: null,
    };
    const op = createOperation<TaskUpdatePayload>(
      ctx,
      TASK_UPDATE,
      updatePayload(change),
      this.clock.now(),
    );
    const outcome = await this.writes.execute(ctx, op, (manager) => this.mergeNow(manager, change));
    if (outcome.mode === 'buffered') return { buffered: true, change: bufferedView(change) };
    if (typeof outcome.result === 'object') return { buffered: false, task: outcome.result };
    if (outcome.result === 'superseded') return { buffered: false, task: await this.get(ctx, id) };
    if (outcome.result === 'unknown' && (await this.stillBeingCreated(userId, id))) {
      await this.writes.enqueue(op);
      return { buffered: true, change: bufferedView(change) };
    }
    throw new NotFoundError('task');
  }

  async delete(
    ctx: RequestContext,
    id: string,
    ifMatch?: VersionCondition,
  ): Promise<TaskDeleteOutcome> {
    const userId = ctx.requireUserId();
    if (ifMatch !== undefined) return this.deleteIfMatch(ctx, userId, id, ifMatch);
    const deletion: TaskDeletion = {
      id,
      userId,
      position: await this.coordination.positionDelete(userId, id),
      expectedVersion: null,
    };
    const op = createOperation(ctx, TASK_DELETE, deletePayload(deletion), this.clock.now());
    // Queued under the task's id, so `createdWithKey` can tell at once that the task is going away.
    const outcome = await this.writes.execute(
      ctx,
      op,
      (manager) => this.deleteNow(manager, deletion),
      queuedDelete(id),
    );
    if (outcome.mode === 'buffered') return { buffered: true };
    if (outcome.result === true) return { buffered: false };
    // No row: a task whose create is still on its way gets its tombstone now, and meets it.
    // Under the task's write lock (as replay's creates take it), looking again first: a create
    // being applied right now is waited for and its row removed, instead of a tombstone it
    // would not see. Redis is asked before the lock is taken: its pending record goes only once
    // the create has committed, so the look under the lock then finds the row.
    if (outcome.result === 'unknown') {
      const pending = await this.stillBeingCreated(userId, id);
      const buried = await this.writes.execute(
        ctx,
        op,
        async (manager) => {
          if ((await this.deleteNow(manager, deletion)) === true) return true;
          if (!pending) return false;
          await this.tasks.deleteMany(manager, [deletion]);
          return true;
        },
        { ...queuedDelete(id), lockKeys: [taskLockKey(userId, id)] },
      );
      if (buried.mode === 'buffered' || buried.result)
        return { buffered: buried.mode === 'buffered' };
    }
    throw new NotFoundError('task');
  }

  private async updateIfMatch(
    ctx: RequestContext,
    userId: string,
    id: string,
    wanted: TaskPatch,
    ifMatch: VersionCondition,
  ): Promise<TaskUpdateOutcome> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      this.writes.assertCanWriteDirectly();
      const current = await this.get(ctx, id);
      checkPrecondition(ifMatch, current.version);
      const change: TaskUpdate = {
        id: current.id,
        userId,
        changes: wanted,
        position: await this.order.next(userId),
        // `*` asks only that the task exist: a change that moved the version since the read does
        // not void this one (the merge matches no missing row anyway).
        expectedVersion: ifMatch === '*' ? null : current.version,
      };
      const op = createOperation(ctx, TASK_UPDATE, updatePayload(change), this.clock.now());
      const outcome = await this.writes.execute(
        ctx,
        op,
        (manager) => this.tasks.merge(manager, change, 'when-changed'),
        {
          bufferable: false,
        },
      );
      if (outcome.mode === 'direct' && outcome.result)
        return { buffered: false, task: outcome.result };
      // With `*`, no row took it: every field it sets was written later (or the task is gone).
      if (ifMatch === '*') return { buffered: false, task: await this.get(ctx, id) };
      // The version moved on meanwhile (or every field was written later): read again.
    }
    throw concurrentChanges();
  }

  private async deleteIfMatch(
    ctx: RequestContext,
    userId: string,
    id: string,
    ifMatch: VersionCondition,
  ): Promise<TaskDeleteOutcome> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      this.writes.assertCanWriteDirectly();
      const current = await this.get(ctx, id);
      checkPrecondition(ifMatch, current.version);
      const deletion: TaskDeletion = {
        id: current.id,
        userId,
        position: await this.coordination.positionDelete(userId, current.id),
        expectedVersion: current.version,
      };
      const op = createOperation(ctx, TASK_DELETE, deletePayload(deletion), this.clock.now());
      const outcome = await this.writes.execute(
        ctx,
        op,
        (manager) => this.tasks.delete(manager, deletion),
        {
          bufferable: false,
        },
      );
      if (outcome.mode === 'direct' && outcome.result) return { buffered: false };
    }
    throw concurrentChanges();
  }

  /** Applies a create on `manager`; undefined when its key is taken already. */
  private async insertNow(manager: EntityManager, task: NewTask): Promise<boolean> {
    try {
      return await this.tasks.insert(manager, task);
    } catch (error) {
      // The owner's account is gone while their access token still runs.
      if (sqlState(error) === FOREIGN_KEY_VIOLATION)
        throw new UnauthenticatedError('the account no longer exists');
      throw error;
    }
  }

  /** Applies an update on `manager`: the task as it is now, or why no row took it. */
  private async mergeNow(manager: EntityManager, change: TaskUpdate): Promise<Task | Miss> {
    const merged = await this.tasks.merge(manager, change, 'when-changed');
    if (merged) return merged;
    const [presence] = await this.tasks.presenceOf(manager, [
      { userId: change.userId, id: change.id },
    ]);
    if (presence?.aliasOf)
      return (
        (await this.tasks.merge(manager, { ...change, id: presence.aliasOf }, 'when-changed')) ??
        'superseded'
      );
    return missOf(presence);
  }

  /** Applies a delete on `manager`: true when a row went, otherwise why not. */
  private async deleteNow(manager: EntityManager, deletion: TaskDeletion): Promise<true | Miss> {
    if (await this.tasks.delete(manager, deletion)) return true;
    const [presence] = await this.tasks.presenceOf(manager, [
      { userId: deletion.userId, id: deletion.id },
    ]);
    if (
      presence?.aliasOf &&
      (await this.tasks.delete(manager, { ...deletion, id: presence.aliasOf }))
    )
      return true;
    return missOf(presence);
  }

  /** Whether the task's create is waiting in this replica's buffer or, as Redis knows, another's. */
  private async stillBeingCreated(userId: string, id: string): Promise<boolean> {
    if (this.writes.isTagged(userId, TASK_CREATE, id)) return true;
    const pending = await this.coordination.pendingOf([{ userId, id }]);
    return pending?.has(taskRef(userId, id)) ?? false;
  }

  /**
   * A buffered create's answer: this create, or for a retry the task the key already holds
   * (this replica's queued create, or the reservation another replica made first).
   */
  private async bufferedCreate(
    op: BufferedOperation<TaskCreatePayload>,
    duplicate: boolean,
    key: string | null,
    enqueue = false,
  ): Promise<CreatedTask> {
    if (enqueue) {
      const queued = await this.writes.enqueue(op, {
        ...(key === null ? {} : { dedupeKey: key }),
        tags: [op.payload.id],
      });
      if (queued.mode === 'buffered') ({ op, duplicate } = queued);
    }
    if (duplicate) return { task: storedForm(op.payload), replayed: true, buffered: true };
    const winner = await this.coordination.registerBuffered(op.payload, key);
    if (winner && winner.id !== op.payload.id)
      return { task: publicTask(winner.task), replayed: true, buffered: true };
    return { task: storedForm(op.payload), replayed: false, buffered: true };
  }

  /**
   * The answer for a key another create holds: the stored task once applied, else the task as
   * reserved while its create waits in a buffer; undefined when it is neither (deleted).
   */
  private async answerReservation(ctx: RequestContext, userId: string, held: KeyReservation): Promise<CreatedTask | undefined> {
    if (this.writes.canWriteDirectly()) {
      try {
        const stored = await this.tasks.findById(ctx, userId, held.id);
        if (stored) return { task: stored, replayed: true, buffered: false };
        if (!(await this.stillBeingCreated(userId, held.id))) return undefined;
      } catch (error) {
        if (!(await this.writes.isDatabaseUnreachable(error))) throw error;
      }
    }
    return { task: publicTask(held.task), replayed: true, buffered: true };
  }

  /**
   * The task holding the key, or 'queue-behind' when a delete of that task is still queued here
   * (the key is going free: a create queued behind the delete gets it), or undefined when none.
   */
  private async createdWithKey(
    ctx: RequestContext,
    userId: string,
    key: string,
  ): Promise<CreatedTask | 'queue-behind' | undefined> {
    const existing = await this.tasks.findByIdempotencyKey(ctx, userId, key);
    if (!existing) return undefined;
    if (this.writes.isQueuedUnder(userId, TASK_DELETE, existing.id)) return 'queue-behind';
    return { task: existing, replayed: true, buffered: false };
  }

  private newTask(userId: string, fields: TaskFields, idempotencyKey: string | null): NewTask {
    // Milliseconds, as the API shows them: createdAt is a sort key, and cursors carry it.
    const now = this.clock.now().toISOString();
    return {
      id: newId(),
      userId,
      ...fields,
      createdAt: now,
      updatedAt: now,
      version: 1,
      idempotencyKey,
      position: null,
    };
  }
}

/**
 * How a delete of task `id` is queued: under the task's id (a second delete of it while queued
 * is the same one), setting free the idempotency key of the task's create if that waits here too.
 */
function queuedDelete(id: string): WriteOptions {
  return { dedupeKey: id, releases: [{ kind: TASK_CREATE, tag: id }] };
}

function missOf(presence: { stored: boolean; deleted: boolean } | undefined): Miss {
  if (presence?.stored) return 'superseded';
  return presence?.deleted ? 'deleted' : 'unknown';
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
  const wanted: TaskPatch = {};
  for (const field of TASK_FIELD_NAMES) {
    const value = patch[field];
    if (value === undefined) continue;
    (wanted as Record<string, unknown>)[field] =
      field === 'dueAt' && value !== null ? canonicalDueAt(value as string) : value;
  }
  if (Object.keys(wanted).length === 0) {
    throw ValidationFailedError.forField(
      'body',
      `must set at least one of ${TASK_FIELD_NAMES.join(', ')}`,
    );
  }
  return wanted;
}

/** The due date as stored and served: UTC, milliseconds (the DTO has validated the format). */
function canonicalDueAt(dueAt: string): string {
  const canonical = normaliseIsoInstant(dueAt);
  if (canonical === undefined)
    throw ValidationFailedError.forField('dueAt', 'must be an ISO 8601 date-time');
  return canonical;
}

/** A new task as the API shows it once stored: no idempotency key, no position. */
function storedForm(task: NewTask): Task {
  const { idempotencyKey: _key, position: _position, ...stored } = task;
  return stored;
}

/** A task as a reservation keeps it (it was answered once already), without what is internal. */
function publicTask(task: Task): Task {
  const { idempotencyKey: _key, position: _position, ...stored } = task as Task & Partial<NewTask>;
  return stored;
}

/** What a queued update will change, as its 202 shows it. */
function bufferedView(change: TaskUpdate): BufferedTaskChange {
  return {
    id: change.id,
    ...change.changes,
    updatedAt: new Date(Date.parse(timeOfPosition(change.position))).toISOString(),
  };
}

function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function concurrentChanges(): ServiceUnavailableError {
  return new ServiceUnavailableError('the task is being changed by other requests; try again', 1);
}
