/**
 * The task use cases (create, update, delete, list, get) against strict mocks of their I/O
 * boundaries: the repository (PostgreSQL), WriteOrder and TaskCoordination (Redis). A call the
 * test did not expect fails it. The real `WritePath` decides, over stand-ins of PostgreSQL's
 * state and of the buffer (`test/support/unit-stand-ins.ts`). No I/O.
 *
 * Covered: positions taken before anything is applied or queued; creates (direct, buffered,
 * a key held in Redis or in PostgreSQL, a lost race for a key); updates merged in one statement
 * without a read (superseded, aliases, a task still being created here or elsewhere), and with
 * `If-Match` (read, 412, a guarded merge, 503 while PostgreSQL is down); deletes (tombstones,
 * aliases, a pending create, If-Match); list and get; validation.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import {
  NotFoundError,
  PreconditionFailedError,
  RateLimitedError,
  ServiceUnavailableError,
  UnauthenticatedError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import type { Clock } from '../../common/time/clock.js';
import {
  DatabaseStandIn,
  MemoryBuffer,
  POOL,
  strictMock,
  unexpectedCalls,
  type StrictMock,
} from '../../../test/support/unit-stand-ins.js';
import { BufferCounters } from '../buffer/buffer-counters.js';
import { UserShareExceededError } from '../buffer/buffer.errors.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { positionAt, type WriteOrder } from '../buffer/write-order.js';
import { WritePath } from '../buffer/write-path.js';
import type { NewTask, Task, TaskDeletion, TaskUpdate } from './task.js';
import { taskRef, type KeyReservation, type TaskCoordination } from './task-coordination.js';
import { TaskCursorCodec } from './task-cursor.js';
import { TaskOperations, taskLockKey, type TaskDeletePayload, type TaskUpdatePayload } from './task-operations.js';
import type { TaskPresence, TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const TASK_ID = '0193a000-0000-7000-8000-0000000000aa';
const ALIAS_ID = '0193a000-0000-7000-8000-0000000000bb';
const OTHER_REPLICAS_TASK = '0193a000-0000-7000-8000-0000000000cc';
const NOW = new Date('2026-02-20T09:15:00.000Z');
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A position as Redis hands it out (tag 0), `micros` microseconds into NOW's second. */
function position(micros: number): string {
  return positionAt(`2026-02-20T09:15:00.${String(micros).padStart(6, '0')}Z`);
}

const P1 = position(1_250);
const P2 = position(2_500);
const P3 = position(3_750);

type Repository = StrictMock<
  TasksRepository,
  'findById' | 'findByIdempotencyKey' | 'list' | 'insert' | 'insertMany' | 'merge' | 'delete' | 'deleteMany' | 'recordKeyAliases' | 'presenceOf'
>;
type Coordination = StrictMock<
  TaskCoordination,
  'reserveKey' | 'positionDelete' | 'registerBuffered' | 'pendingOf' | 'applied' | 'release' | 'confirm'
>;
type Order = StrictMock<WriteOrder, 'next'>;

function storedTask(overrides: Partial<Task> = {}): Task {
  return {
    id: TASK_ID,
    userId: USER,
    title: 'Write the report',
    description: null,
    status: 'todo',
    priority: 'medium',
    dueAt: null,
    createdAt: '2026-02-01T08:00:00.000Z',
    updatedAt: '2026-02-01T08:00:00.000Z',
    version: 3,
    ...overrides,
  };
}

function presence(overrides: Partial<TaskPresence> = {}): TaskPresence {
  return { stored: false, aliasOf: undefined, deleted: false, deletedAt: undefined, ...overrides };
}

function contextFor(userId: string | undefined): RequestContext {
  const ctx = RequestContext.start('test-request', 10_000);
  ctx.userId = userId;
  ctx.release();
  return ctx;
}

describe('TasksService', () => {
  let repository: Repository;
  let coordination: Coordination;
  let order: Order;
  let database: DatabaseStandIn;
  let buffer: MemoryBuffer;
  let counters: BufferCounters;
  let service: TasksService;
  let ctx: RequestContext;
  const clock: Clock = { now: () => new Date(NOW) };

  beforeEach(() => {
    repository = strictMock<TasksRepository, keyof Repository>('repository', [
      'findById',
      'findByIdempotencyKey',
      'list',
      'insert',
      'insertMany',
      'merge',
      'delete',
      'deleteMany',
      'recordKeyAliases',
      'presenceOf',
    ]);
    coordination = strictMock<TaskCoordination, keyof Coordination>('coordination', [
      'reserveKey',
      'positionDelete',
      'registerBuffered',
      'pendingOf',
      'applied',
      'release',
      'confirm',
    ]);
    order = strictMock<WriteOrder, 'next'>('order', ['next']);
    database = new DatabaseStandIn();
    buffer = new MemoryBuffer();
    counters = new BufferCounters();
    const registry = new OperationRegistry();
    const writes = new WritePath(database.asDatabase(), buffer.asBuffer(), registry, counters);
    new TaskOperations(
      registry,
      repository as unknown as TasksRepository,
      coordination as unknown as TaskCoordination,
      writes,
    ).onModuleInit();
    service = new TasksService(
      repository as unknown as TasksRepository,
      new TaskCursorCodec(Buffer.alloc(32, 7)),
      clock,
      order as unknown as WriteOrder,
      coordination as unknown as TaskCoordination,
      writes,
    );
    ctx = contextFor(USER);
  });

  afterEach(() => {
    expect(unexpectedCalls.splice(0)).toEqual([]);
  });

  /** Redis reserves the key of each of the next `creates` keyed creates: none held it. */
  const reservesKey = (creates = 1) => {
    for (let n = 0; n < creates; n += 1) coordination.reserveKey.mockResolvedValueOnce(undefined);
  };

  describe('create', () => {
    it('builds the complete task (UUIDv7 id, defaults, timestamps, version 1, no position) and inserts it once, on the pool, without a word to Redis', async () => {
      repository.insert.mockResolvedValueOnce(true);

      const { task, replayed, buffered } = await service.create(ctx, { title: 'Write the report' });

      expect({ replayed, buffered }).toEqual({ replayed: false, buffered: false });
      expect(coordination.reserveKey).not.toHaveBeenCalled();
      expect(repository.insert).toHaveBeenCalledTimes(1);
      const [manager, inserted] = repository.insert.mock.calls[0]!;
      expect(manager).toBe(POOL);
      expect(inserted).toEqual({
        id: expect.stringMatching(UUID_V7),
        userId: USER,
        title: 'Write the report',
        description: null,
        status: 'todo',
        priority: 'medium',
        dueAt: null,
        createdAt: NOW.toISOString(),
        updatedAt: NOW.toISOString(),
        version: 1,
        idempotencyKey: null,
        position: null,
      });
      // The answer is the task as stored: no key, no position.
      const { idempotencyKey: _key, position: _position, ...shown } = inserted;
      expect(task).toEqual(shown);
      expect(database.run).toHaveBeenCalledWith(ctx, expect.any(Function));
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('stores the given fields, the due date in canonical UTC form, and the idempotency key', async () => {
      reservesKey();
      repository.insert.mockResolvedValueOnce(true);
      coordination.confirm.mockResolvedValueOnce(undefined);

      const { task } = await service.create(
        ctx,
        { title: 'Call Ada', description: 'about the engine', status: 'in_progress', priority: 'high', dueAt: '2026-03-01T18:30:00+01:00' },
        'key-1',
      );

      // The key reserved for this very task (its id and body as answered), should none hold it.
      const [, , reserved] = coordination.reserveKey.mock.calls[0]!;
      expect(coordination.reserveKey).toHaveBeenCalledWith(USER, 'key-1', expect.objectContaining({ title: 'Call Ada' }));
      expect(reserved!.id).toBe(repository.insert.mock.calls[0]![1].id);
      // Confirmed once in PostgreSQL: from now on a retry anywhere answers this task.
      expect(coordination.confirm).toHaveBeenCalledWith(USER, 'key-1', reserved!.id);
      expect(repository.insert.mock.calls[0]![1]).toMatchObject({ idempotencyKey: 'key-1', dueAt: '2026-03-01T17:30:00.000Z' });
      expect(task).toMatchObject({
        title: 'Call Ada',
        description: 'about the engine',
        status: 'in_progress',
        priority: 'high',
        dueAt: '2026-03-01T17:30:00.000Z',
      });
    });

    it('gives each task its own id', async () => {
      repository.insert.mockResolvedValue(true);
      const first = await service.create(ctx, { title: 'a' });
      const second = await service.create(ctx, { title: 'b' });
      expect(first.task.id).not.toBe(second.task.id);
      expect(repository.insert.mock.calls.map(([, task]) => task.position)).toEqual([null, null]);
    });

    it('refuses a due date that is not an ISO 8601 date-time, before any I/O', async () => {
      await expect(service.create(ctx, { title: 'x', dueAt: '2025-02-30T00:00:00Z' })).rejects.toBeInstanceOf(ValidationFailedError);
      expect(coordination.reserveKey).not.toHaveBeenCalled();
    });

    it('refuses an unauthenticated context before any I/O', async () => {
      await expect(service.create(contextFor(undefined), { title: 'x' })).rejects.toBeInstanceOf(UnauthenticatedError);
      expect(coordination.reserveKey).not.toHaveBeenCalled();
    });

    it('answers UNAUTHENTICATED when the account is gone (foreign key violation)', async () => {
      repository.insert.mockRejectedValueOnce(Object.assign(new Error('violates foreign key constraint'), { code: '23503' }));
      await expect(service.create(ctx, { title: 'x' })).rejects.toBeInstanceOf(UnauthenticatedError);
      expect(buffer.add).not.toHaveBeenCalled();
    });

    describe('a key another create has reserved in Redis', () => {
      /** The reservation as Redis keeps it: the task as it was answered, key and position included. */
      const reservation = (): KeyReservation => ({
        id: TASK_ID,
        task: { ...storedTask({ version: 1, title: 'first' }), idempotencyKey: 'key-1', position: P1 } as Task,
      });
      const asReserved = storedTask({ version: 1, title: 'first' });

      beforeEach(() => {
        coordination.reserveKey.mockResolvedValueOnce(reservation());
      });

      it('answers the stored task (201, replayed) once PostgreSQL has it, creating nothing', async () => {
        const stored = storedTask({ version: 2, title: 'first, edited' });
        repository.findById.mockResolvedValueOnce(stored);

        await expect(service.create(ctx, { title: 'second' }, 'key-1')).resolves.toEqual({ task: stored, replayed: true, buffered: false });
        expect(repository.findById).toHaveBeenCalledWith(ctx, USER, TASK_ID);
        expect(buffer.add).not.toHaveBeenCalled();
      });

      it('answers the task as reserved (202, replayed) while its create still waits in a buffer', async () => {
        repository.findById.mockResolvedValueOnce(undefined);
        coordination.pendingOf.mockResolvedValueOnce(new Set([taskRef(USER, TASK_ID)]));

        await expect(service.create(ctx, { title: 'second' }, 'key-1')).resolves.toEqual({ task: asReserved, replayed: true, buffered: true });
        expect(buffer.add).not.toHaveBeenCalled();
      });

      it('takes the key over when its task is neither stored nor waiting anywhere (deleted while Redis could not hear of it)', async () => {
        repository.findById.mockResolvedValueOnce(undefined);
        coordination.pendingOf.mockResolvedValueOnce(new Set());
        coordination.release.mockResolvedValueOnce(undefined);
        reservesKey();
        repository.insert.mockResolvedValueOnce(true);
        coordination.confirm.mockResolvedValueOnce(undefined);

        const { task, replayed, buffered } = await service.create(ctx, { title: 'second' }, 'key-1');
        expect({ title: task.title, replayed, buffered }).toEqual({ title: 'second', replayed: false, buffered: false });
        expect(coordination.release).toHaveBeenCalledWith(USER, 'key-1', TASK_ID);
        expect(repository.insert.mock.calls[0]![1]).toMatchObject({ idempotencyKey: 'key-1', position: null });
      });

      it('answers the task as reserved without reading while PostgreSQL is down', async () => {
        database.up = false;

        await expect(service.create(ctx, { title: 'second' }, 'key-1')).resolves.toEqual({ task: asReserved, replayed: true, buffered: true });
        expect(repository.findById).not.toHaveBeenCalled();
        expect(buffer.add).not.toHaveBeenCalled();
      });

      it('answers the task as reserved when the read finds PostgreSQL gone, and lets any other failure through', async () => {
        repository.findById.mockImplementationOnce(async () => {
          throw database.connectionLost();
        });
        await expect(service.create(ctx, { title: 'second' }, 'key-1')).resolves.toEqual({ task: asReserved, replayed: true, buffered: true });

        database.up = true;
        const broken = new Error('relation "tasks" does not exist');
        coordination.reserveKey.mockResolvedValueOnce(reservation());
        repository.findById.mockRejectedValueOnce(broken);
        await expect(service.create(ctx, { title: 'third' }, 'key-1')).rejects.toBe(broken);
      });
    });

    describe('a key PostgreSQL already holds', () => {
      it('answers the task holding it (replayed), storing nothing new, and drops the reservation it made for itself', async () => {
        const existing = storedTask({ title: 'first' });
        reservesKey();
        repository.insert.mockResolvedValueOnce(false);
        coordination.release.mockResolvedValue(undefined);
        repository.findByIdempotencyKey.mockResolvedValueOnce(existing);

        await expect(service.create(ctx, { title: 'second' }, 'key-1')).resolves.toEqual({ task: existing, replayed: true, buffered: false });
        expect(repository.findByIdempotencyKey).toHaveBeenCalledWith(ctx, USER, 'key-1');
        expect(coordination.release).toHaveBeenCalledWith(USER, 'key-1', repository.insert.mock.calls[0]![1].id);
        expect(buffer.add).not.toHaveBeenCalled();
      });

      it('tries again, as a new task, when the task holding it was deleted in between', async () => {
        reservesKey(2);
        coordination.release.mockResolvedValue(undefined);
        coordination.confirm.mockResolvedValue(undefined);
        repository.insert.mockResolvedValueOnce(false).mockResolvedValueOnce(true);
        repository.findByIdempotencyKey.mockResolvedValueOnce(undefined);

        const { task, replayed } = await service.create(ctx, { title: 'x' }, 'key-1');

        expect(replayed).toBe(false);
        expect(new Set(repository.insert.mock.calls.map(([, inserted]) => inserted.id)).size).toBe(2);
        expect(task.id).toBe(repository.insert.mock.calls[1]![1].id);
      });

      it('gives up with a retryable 503 when the key keeps changing hands', async () => {
        reservesKey(3);
        coordination.release.mockResolvedValue(undefined);
        repository.insert.mockResolvedValue(false);
        repository.findByIdempotencyKey.mockResolvedValue(undefined);

        await expect(service.create(ctx, { title: 'x' }, 'key-1')).rejects.toMatchObject({
          code: 'SERVICE_UNAVAILABLE',
          retryAfterSeconds: 1,
        });
        expect(repository.insert).toHaveBeenCalledTimes(3);
      });

      it('queues the create behind a delete of the task holding the key that is still queued here, so that it gets the key once freed', async () => {
        const doomed = storedTask({ title: 'created with key-2' });
        database.up = false;
        coordination.positionDelete.mockResolvedValueOnce(P1);
        await expect(service.delete(ctx, doomed.id)).resolves.toEqual({ buffered: true });
        database.up = true;
        reservesKey();
        repository.insert.mockResolvedValueOnce(false);
        repository.findByIdempotencyKey.mockResolvedValueOnce(doomed);
        coordination.registerBuffered.mockResolvedValueOnce(undefined);

        const created = await service.create(ctx, { title: 'again' }, 'key-2');

        expect(created).toMatchObject({ task: { title: 'again' }, buffered: true, replayed: false });
        expect(buffer.ops().map((op) => op.kind)).toEqual(['task.delete', 'task.create']);
        const [queued] = buffer.ops<NewTask>('task.create');
        expect(queued!.payload).toMatchObject({ id: created.task.id, title: 'again', idempotencyKey: 'key-2', position: null });
        expect(coordination.registerBuffered).toHaveBeenCalledWith(queued!.payload, 'key-2');
      });
    });

    describe('while PostgreSQL is down', () => {
      beforeEach(() => {
        database.up = false;
      });

      it('queues the complete task, records it as pending in Redis, and answers it as it will be stored', async () => {
        coordination.registerBuffered.mockResolvedValueOnce(undefined);

        const { task, replayed, buffered } = await service.create(ctx, { title: 'Offline', dueAt: '2026-03-01T18:30:00+01:00' });

        expect({ replayed, buffered }).toEqual({ replayed: false, buffered: true });
        const [op] = buffer.ops<NewTask>('task.create');
        expect(op).toMatchObject({ kind: 'task.create', userId: USER, acceptedAt: NOW.toISOString(), version: 2 });
        expect(op!.payload).toEqual({ ...task, idempotencyKey: null, position: null });
        expect(task).toEqual({
          id: expect.stringMatching(UUID_V7),
          userId: USER,
          title: 'Offline',
          description: null,
          status: 'todo',
          priority: 'medium',
          dueAt: '2026-03-01T17:30:00.000Z',
          createdAt: NOW.toISOString(),
          updatedAt: NOW.toISOString(),
          version: 1,
        });
        expect(coordination.registerBuffered).toHaveBeenCalledWith(op!.payload, null);
        expect(repository.insert).not.toHaveBeenCalled();
      });

      it('is found by its id under its kind while it waits (for updates and deletes of it)', async () => {
        coordination.registerBuffered.mockResolvedValueOnce(undefined);
        const { task } = await service.create(ctx, { title: 'Offline' });
        const writes = new WritePath(database.asDatabase(), buffer.asBuffer(), new OperationRegistry(), counters);

        expect(writes.isTagged(USER, 'task.create', task.id)).toBe(true);
        expect(writes.isTagged(USER, 'task.update', task.id)).toBe(false);
      });

      it('answers the task another replica reserved the key for first (a lost race), replayed', async () => {
        reservesKey();
        const winner = { ...storedTask({ id: OTHER_REPLICAS_TASK, title: 'through the other replica', version: 1 }), idempotencyKey: 'key-1', position: P2 };
        coordination.registerBuffered.mockResolvedValueOnce({ id: OTHER_REPLICAS_TASK, task: winner });

        const created = await service.create(ctx, { title: 'through this one' }, 'key-1');

        const { idempotencyKey: _key, position: _position, ...shown } = winner;
        expect(created).toEqual({ task: shown, replayed: true, buffered: true });
        expect(buffer.ops('task.create')).toHaveLength(1);
      });

      it('answers its own task when the reservation Redis returns is its own', async () => {
        reservesKey();
        coordination.registerBuffered.mockImplementationOnce(async (task) => ({ id: task.id, task }));

        await expect(service.create(ctx, { title: 'mine' }, 'key-1')).resolves.toMatchObject({ task: { title: 'mine' }, replayed: false, buffered: true });
      });

      it('answers a retry with the same key with the queued task, queueing and recording nothing more (Redis down too)', async () => {
        reservesKey(3);
        coordination.registerBuffered.mockResolvedValue(undefined);

        const first = await service.create(ctx, { title: 'once' }, 'key-1');
        const retry = await service.create(ctx, { title: 'whatever the body' }, 'key-1');
        const otherKey = await service.create(ctx, { title: 'another' }, 'key-2');

        expect(first).toMatchObject({ buffered: true, replayed: false });
        expect(retry).toEqual({ task: first.task, buffered: true, replayed: true });
        expect(otherKey.task.id).not.toBe(first.task.id);
        expect(buffer.ops()).toHaveLength(2);
        expect(coordination.registerBuffered).toHaveBeenCalledTimes(2);
        expect(counters.buffered).toBe(2);
      });

      it("answers 429 when the user's share of the buffer is used up", async () => {
        buffer.refuseNext = new UserShareExceededError();

        await expect(service.create(ctx, { title: 'one too many' })).rejects.toBeInstanceOf(RateLimitedError);
        expect(buffer.ops()).toEqual([]);
      });
    });

    it('queues the task when the insert loses the connection (it may have committed: its replay is harmless)', async () => {
      repository.insert.mockImplementationOnce(async () => {
        throw database.connectionLost();
      });
      coordination.registerBuffered.mockResolvedValueOnce(undefined);

      const { task, buffered } = await service.create(ctx, { title: 'x' });

      expect(buffered).toBe(true);
      expect(buffer.ops<NewTask>('task.create')[0]!.payload).toMatchObject({ id: task.id, position: null });
      expect(repository.insert).toHaveBeenCalledTimes(1);
    });

    it('inserts directly while older writes are still queued: positions, not arrival, decide what is stored', async () => {
      database.up = false;
      order.next.mockResolvedValueOnce(P1);
      await service.update(ctx, TASK_ID, { title: 'queued earlier' });
      database.up = true;
      repository.insert.mockResolvedValueOnce(true);

      await expect(service.create(ctx, { title: 'now' })).resolves.toMatchObject({ buffered: false });
      expect(buffer.ops()).toHaveLength(1);
    });
  });

  describe('update', () => {
    const merged = (overrides: Partial<TaskUpdate> = {}): TaskUpdate => ({
      id: TASK_ID,
      userId: USER,
      changes: { title: 'new' },
      position: P1,
      expectedVersion: null,
      ...overrides,
    });

    it('merges the patch in one statement at its position, without reading first, and answers the task as stored', async () => {
      order.next.mockResolvedValueOnce(P1);
      const after = storedTask({ title: 'new', version: 4 });
      repository.merge.mockResolvedValueOnce(after);

      await expect(service.update(ctx, TASK_ID, { title: 'new' })).resolves.toEqual({ buffered: false, task: after });
      expect(order.next).toHaveBeenCalledWith(USER);
      expect(repository.merge).toHaveBeenCalledTimes(1);
      expect(repository.merge).toHaveBeenCalledWith(POOL, merged(), 'when-changed');
    });

    it('sends only the known fields, the due date in canonical form and a null kept as such', async () => {
      order.next.mockResolvedValueOnce(P1);
      repository.merge.mockResolvedValueOnce(storedTask());

      await service.update(ctx, TASK_ID, { description: null, dueAt: '2026-05-01T02:00:00+02:00', extra: 'ignored' } as never);

      expect(repository.merge.mock.calls[0]![1].changes).toEqual({ description: null, dueAt: '2026-05-01T00:00:00.000Z' });
    });

    it('refuses a patch that sets nothing, or an invalid due date, before any I/O', async () => {
      await expect(service.update(ctx, TASK_ID, {})).rejects.toBeInstanceOf(ValidationFailedError);
      await expect(service.update(ctx, TASK_ID, { unknown: 1 } as never)).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'body', message: expect.stringContaining('title, description, status, priority, dueAt') }],
      });
      await expect(service.update(ctx, TASK_ID, { dueAt: 'tomorrow' })).rejects.toBeInstanceOf(ValidationFailedError);
      expect(order.next).not.toHaveBeenCalled();
    });

    it('answers the task as stored when every field it sets was written at a later position (superseded)', async () => {
      order.next.mockResolvedValueOnce(P1);
      const current = storedTask({ title: 'written later elsewhere' });
      repository.merge.mockResolvedValueOnce(undefined);
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true })]);
      repository.findById.mockResolvedValueOnce(current);

      await expect(service.update(ctx, TASK_ID, { title: 'older' })).resolves.toEqual({ buffered: false, task: current });
      expect(repository.presenceOf).toHaveBeenCalledWith(POOL, [{ userId: USER, id: TASK_ID }]);
    });

    it('merges into the task an alias stands for (the id a replica answered for a merged create)', async () => {
      order.next.mockResolvedValueOnce(P1);
      const target = storedTask({ title: 'new', version: 4 });
      repository.merge.mockResolvedValueOnce(undefined).mockResolvedValueOnce(target);
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true, aliasOf: TASK_ID })]);

      await expect(service.update(ctx, ALIAS_ID, { title: 'new' })).resolves.toEqual({ buffered: false, task: target });
      expect(repository.merge.mock.calls.map(([, change]) => change.id)).toEqual([ALIAS_ID, TASK_ID]);
      expect(repository.merge).toHaveBeenLastCalledWith(POOL, merged({ id: TASK_ID }), 'when-changed');
    });

    it('answers the aliased task as stored when the merge into it is superseded', async () => {
      order.next.mockResolvedValueOnce(P1);
      const target = storedTask();
      repository.merge.mockResolvedValue(undefined);
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true, aliasOf: TASK_ID })]);
      repository.findById.mockResolvedValueOnce(target);

      await expect(service.update(ctx, ALIAS_ID, { title: 'older' })).resolves.toEqual({ buffered: false, task: target });
      expect(repository.findById).toHaveBeenCalledWith(ctx, USER, ALIAS_ID);
    });

    it('answers NOT_FOUND for a deleted task, without asking Redis', async () => {
      order.next.mockResolvedValueOnce(P1);
      repository.merge.mockResolvedValueOnce(undefined);
      repository.presenceOf.mockResolvedValueOnce([presence({ deleted: true, deletedAt: P2 })]);

      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('answers NOT_FOUND for a task that exists nowhere, nor as a pending create, nor when Redis cannot say', async () => {
      order.next.mockResolvedValue(P1);
      repository.merge.mockResolvedValue(undefined);
      repository.presenceOf.mockResolvedValue([presence()]);
      coordination.pendingOf.mockResolvedValueOnce(new Set()).mockResolvedValueOnce(undefined);

      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(NotFoundError);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(NotFoundError);
      expect(coordination.pendingOf).toHaveBeenCalledWith([{ userId: USER, id: TASK_ID }]);
      expect(buffer.ops()).toEqual([]);
    });

    it("queues (202) an update of a task whose create waits in another replica's buffer", async () => {
      order.next.mockResolvedValueOnce(P1);
      repository.merge.mockResolvedValueOnce(undefined);
      repository.presenceOf.mockResolvedValueOnce([presence()]);
      coordination.pendingOf.mockResolvedValueOnce(new Set([taskRef(USER, OTHER_REPLICAS_TASK)]));

      await expect(service.update(ctx, OTHER_REPLICAS_TASK, { status: 'done' })).resolves.toEqual({
        buffered: true,
        change: { id: OTHER_REPLICAS_TASK, status: 'done', updatedAt: '2026-02-20T09:15:00.001Z' },
      });
      expect(buffer.ops<TaskUpdatePayload>('task.update').map((op) => op.payload)).toEqual([
        { id: OTHER_REPLICAS_TASK, changes: { status: 'done' }, position: P1 },
      ]);
    });

    it("queues (202) an update of a task whose create waits in this replica's buffer, without asking Redis", async () => {
      database.up = false;
      coordination.registerBuffered.mockResolvedValueOnce(undefined);
      const { task } = await service.create(ctx, { title: 'created offline' });
      database.up = true;
      order.next.mockResolvedValueOnce(P2);
      repository.merge.mockResolvedValueOnce(undefined);
      repository.presenceOf.mockResolvedValueOnce([presence()]);

      await expect(service.update(ctx, task.id, { status: 'done' })).resolves.toMatchObject({ buffered: true, change: { id: task.id, status: 'done' } });
      expect(buffer.ops().map((op) => op.kind)).toEqual(['task.create', 'task.update']);
    });

    describe('while PostgreSQL is down', () => {
      beforeEach(() => {
        database.up = false;
      });

      it('queues the patch at its position, reading nothing: 202 with the id, the fields and the time of the position', async () => {
        order.next.mockResolvedValueOnce(P1);

        const result = await service.update(ctx, TASK_ID, { title: 'offline', description: null, dueAt: '2026-05-01T02:00:00+02:00' });

        expect(result).toEqual({
          buffered: true,
          change: { id: TASK_ID, title: 'offline', description: null, dueAt: '2026-05-01T00:00:00.000Z', updatedAt: '2026-02-20T09:15:00.001Z' },
        });
        const [op] = buffer.ops<TaskUpdatePayload>('task.update');
        expect(op).toMatchObject({ userId: USER, acceptedAt: NOW.toISOString(), version: 2 });
        expect(op!.payload).toEqual({
          id: TASK_ID,
          changes: { title: 'offline', description: null, dueAt: '2026-05-01T00:00:00.000Z' },
          position: P1,
        });
      });

      it('queues every update, each at its own position (none is taken for a retry of another)', async () => {
        order.next.mockResolvedValueOnce(P1).mockResolvedValueOnce(P2);
        await service.update(ctx, TASK_ID, { title: 'one' });
        await service.update(ctx, TASK_ID, { title: 'one' });
        expect(buffer.ops<TaskUpdatePayload>('task.update').map((op) => op.payload.position)).toEqual([P1, P2]);
      });

      it("answers 429 when the user's share of the buffer is used up", async () => {
        order.next.mockResolvedValueOnce(P1);
        buffer.refuseNext = new UserShareExceededError();
        await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 30 });
        expect(counters.shareRefused).toBe(1);
      });
    });

    it('queues the patch when the merge loses the connection', async () => {
      order.next.mockResolvedValueOnce(P1);
      repository.merge.mockImplementationOnce(async () => {
        throw database.connectionLost();
      });

      await expect(service.update(ctx, TASK_ID, { title: 'x' })).resolves.toMatchObject({ buffered: true });
      expect(buffer.ops<TaskUpdatePayload>('task.update')[0]!.payload).toEqual({ id: TASK_ID, changes: { title: 'x' }, position: P1 });
    });

    describe('with If-Match', () => {
      it('reads the task, then merges at a position taken after the read, guarded by the version read', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        order.next.mockResolvedValueOnce(P1);
        const after = storedTask({ title: 'x', version: 4 });
        repository.merge.mockResolvedValueOnce(after);

        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [1, 3])).resolves.toEqual({ buffered: false, task: after });
        expect(repository.merge).toHaveBeenCalledWith(POOL, merged({ changes: { title: 'x' }, expectedVersion: 3 }), 'when-changed');
        expect(repository.findById.mock.invocationCallOrder[0]).toBeLessThan(order.next.mock.invocationCallOrder[0]!);
      });

      it('merges into the task an alias reads as, by its own id', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ id: TASK_ID, version: 3 }));
        order.next.mockResolvedValueOnce(P1);
        repository.merge.mockResolvedValueOnce(storedTask({ version: 4 }));

        await service.update(ctx, ALIAS_ID, { title: 'x' }, [3]);
        expect(repository.findById).toHaveBeenCalledWith(ctx, USER, ALIAS_ID);
        expect(repository.merge.mock.calls[0]![1].id).toBe(TASK_ID);
      });

      it('answers PRECONDITION_FAILED when it names another version, taking no position and applying nothing', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [2])).rejects.toBeInstanceOf(PreconditionFailedError);
        expect(order.next).not.toHaveBeenCalled();
        expect(repository.merge).not.toHaveBeenCalled();
      });

      it('answers NOT_FOUND for a missing task', async () => {
        repository.findById.mockResolvedValueOnce(undefined);
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, '*')).rejects.toBeInstanceOf(NotFoundError);
      });

      it('answers 412 when the version it names changed between the read and the merge', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 })).mockResolvedValueOnce(storedTask({ version: 4 }));
        order.next.mockResolvedValueOnce(P1);
        repository.merge.mockResolvedValueOnce(undefined);

        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toBeInstanceOf(PreconditionFailedError);
        expect(repository.merge).toHaveBeenCalledTimes(1);
      });

      it('with *, applies whatever the version: a change that won the race in between does not drop this one', async () => {
        // Another change moves the task from version 3 to 4 between this update's read and its merge.
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 })).mockResolvedValue(storedTask({ version: 4 }));
        order.next.mockResolvedValue(P2);
        const after = storedTask({ title: 'mine', version: 5 });
        repository.merge.mockImplementation(async (_manager, change) =>
          change.expectedVersion === null || change.expectedVersion === 4 ? after : undefined,
        );

        await expect(service.update(ctx, TASK_ID, { title: 'mine' }, '*')).resolves.toEqual({ buffered: false, task: after });
        expect(repository.merge).toHaveBeenLastCalledWith(POOL, expect.objectContaining({ changes: { title: 'mine' }, position: P2 }), 'when-changed');
      });

      it('with *, answers the task as stored when every field it sets was written at a later position', async () => {
        const current = storedTask({ title: 'written later', version: 4 });
        repository.findById.mockResolvedValueOnce(storedTask({ version: 4 })).mockResolvedValueOnce(current);
        order.next.mockResolvedValueOnce(P1);
        repository.merge.mockResolvedValueOnce(undefined);

        await expect(service.update(ctx, TASK_ID, { title: 'older' }, '*')).resolves.toEqual({ buffered: false, task: current });
      });

      it('gives up with a retryable 503 after losing the race three times', async () => {
        repository.findById.mockResolvedValue(storedTask({ version: 3 }));
        order.next.mockResolvedValue(P1);
        repository.merge.mockResolvedValue(undefined);

        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: 1 });
        expect(repository.merge).toHaveBeenCalledTimes(3);
        expect(repository.merge.mock.calls.every(([, change]) => change.expectedVersion === 3)).toBe(true);
      });

      it('answers 503 with a Retry-After while PostgreSQL is down, reading, positioning and queueing nothing', async () => {
        database.up = false;
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toMatchObject({
          code: 'SERVICE_UNAVAILABLE',
          retryAfterSeconds: 5,
        });
        expect(buffer.ops()).toEqual([]);
      });

      it('answers 503 rather than queueing when the merge loses the connection', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        order.next.mockResolvedValueOnce(P1);
        repository.merge.mockImplementationOnce(async () => {
          throw database.connectionLost();
        });

        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toBeInstanceOf(ServiceUnavailableError);
        expect(buffer.ops()).toEqual([]);
      });

      it('goes direct while older writes are still queued (no more 503 while the buffer drains)', async () => {
        database.up = false;
        order.next.mockResolvedValueOnce(P1);
        await service.update(ctx, TASK_ID, { title: 'queued' });
        database.up = true;
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        order.next.mockResolvedValueOnce(P2);
        repository.merge.mockResolvedValueOnce(storedTask({ version: 4 }));

        await expect(service.update(ctx, TASK_ID, { status: 'done' }, [3])).resolves.toMatchObject({ buffered: false });
      });
    });
  });

  describe('delete', () => {
    const deletion = (overrides: Partial<TaskDeletion> = {}): TaskDeletion => ({
      id: TASK_ID,
      userId: USER,
      position: P1,
      expectedVersion: null,
      ...overrides,
    });

    it("removes the row and writes its tombstone in one owner-filtered statement, at the position that frees the task's key", async () => {
      coordination.positionDelete.mockResolvedValueOnce(P1);
      repository.delete.mockResolvedValueOnce(true);

      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: false });
      expect(coordination.positionDelete).toHaveBeenCalledWith(USER, TASK_ID);
      expect(repository.delete).toHaveBeenCalledWith(POOL, deletion());
    });

    it('deletes the task an alias stands for', async () => {
      coordination.positionDelete.mockResolvedValueOnce(P1);
      repository.delete.mockResolvedValueOnce(false).mockResolvedValueOnce(true);
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true, aliasOf: TASK_ID })]);

      await expect(service.delete(ctx, ALIAS_ID)).resolves.toEqual({ buffered: false });
      expect(repository.delete.mock.calls.map(([, gone]) => gone)).toEqual([deletion({ id: ALIAS_ID }), deletion()]);
    });

    it("writes the tombstone directly (204) for a task whose create waits in another replica's buffer: the create will meet it", async () => {
      coordination.positionDelete.mockResolvedValueOnce(P1);
      repository.delete.mockResolvedValue(false);
      repository.presenceOf.mockResolvedValue([presence()]);
      coordination.pendingOf.mockResolvedValueOnce(new Set([taskRef(USER, OTHER_REPLICAS_TASK)]));
      repository.deleteMany.mockResolvedValueOnce(0);

      await expect(service.delete(ctx, OTHER_REPLICAS_TASK)).resolves.toEqual({ buffered: false });
      // Looked at again and buried under the task's write lock, which its create's replay takes too.
      expect(database.tx.locked).toEqual([[taskLockKey(USER, OTHER_REPLICAS_TASK)]]);
      expect(repository.delete).toHaveBeenLastCalledWith(database.tx.manager, deletion({ id: OTHER_REPLICAS_TASK }));
      expect(repository.deleteMany).toHaveBeenCalledWith(database.tx.manager, [deletion({ id: OTHER_REPLICAS_TASK })]);
      expect(buffer.ops()).toEqual([]);
    });

    it('deletes the row, with no tombstone of its own, when the create lands between the first look and the lock', async () => {
      coordination.positionDelete.mockResolvedValueOnce(P1);
      repository.delete.mockResolvedValueOnce(false).mockResolvedValueOnce(true);
      repository.presenceOf.mockResolvedValueOnce([presence()]);
      coordination.pendingOf.mockResolvedValueOnce(new Set());

      await expect(service.delete(ctx, OTHER_REPLICAS_TASK)).resolves.toEqual({ buffered: false });
      expect(repository.delete).toHaveBeenLastCalledWith(database.tx.manager, deletion({ id: OTHER_REPLICAS_TASK }));
      expect(repository.deleteMany).not.toHaveBeenCalled();
    });

    it("writes the tombstone directly for a task whose create waits in this replica's buffer, without asking Redis", async () => {
      database.up = false;
      coordination.registerBuffered.mockResolvedValueOnce(undefined);
      const { task } = await service.create(ctx, { title: 'created offline' });
      database.up = true;
      coordination.positionDelete.mockResolvedValueOnce(P2);
      repository.delete.mockResolvedValue(false);
      repository.presenceOf.mockResolvedValue([presence()]);
      repository.deleteMany.mockResolvedValueOnce(0);

      await expect(service.delete(ctx, task.id)).resolves.toEqual({ buffered: false });
      expect(repository.deleteMany).toHaveBeenCalledWith(database.tx.manager, [deletion({ id: task.id, position: P2 })]);
    });

    it('answers NOT_FOUND for a task that exists nowhere, or was deleted already', async () => {
      coordination.positionDelete.mockResolvedValue(P1);
      repository.delete.mockResolvedValue(false);
      repository.presenceOf
        .mockResolvedValueOnce([presence()])
        .mockResolvedValueOnce([presence()])
        .mockResolvedValueOnce([presence({ deleted: true, deletedAt: P1 })]);
      coordination.pendingOf.mockResolvedValueOnce(new Set());

      await expect(service.delete(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
      await expect(service.delete(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
      expect(coordination.pendingOf).toHaveBeenCalledTimes(1);
      expect(repository.deleteMany).not.toHaveBeenCalled();
    });

    it('queues the delete at its position while PostgreSQL is down (202); a second delete of the same task while queued is that one', async () => {
      database.up = false;
      coordination.positionDelete.mockResolvedValueOnce(P1).mockResolvedValueOnce(P2).mockResolvedValueOnce(P3);

      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      await expect(service.delete(ctx, ALIAS_ID)).resolves.toEqual({ buffered: true });

      const queued = buffer.ops<TaskDeletePayload>('task.delete');
      expect(queued.map((op) => op.payload)).toEqual([
        { id: TASK_ID, position: P1 },
        { id: ALIAS_ID, position: P3 },
      ]);
      expect(queued.every((op) => op.userId === USER && op.version === 2)).toBe(true);
    });

    it('queues the delete when it loses the connection', async () => {
      coordination.positionDelete.mockResolvedValueOnce(P1);
      repository.delete.mockImplementationOnce(async () => {
        throw database.connectionLost();
      });
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      expect(buffer.ops<TaskDeletePayload>('task.delete').map((op) => op.payload)).toEqual([{ id: TASK_ID, position: P1 }]);
    });

    describe('with If-Match', () => {
      it('reads the task, then deletes only the version read, at a position taken after the read', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        coordination.positionDelete.mockResolvedValueOnce(P1);
        repository.delete.mockResolvedValueOnce(true);

        await expect(service.delete(ctx, TASK_ID, [3])).resolves.toEqual({ buffered: false });
        expect(repository.delete).toHaveBeenCalledWith(POOL, deletion({ expectedVersion: 3 }));
      });

      it('deletes the task an alias reads as, by its own id', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ id: TASK_ID, version: 3 }));
        coordination.positionDelete.mockResolvedValueOnce(P1);
        repository.delete.mockResolvedValueOnce(true);

        await service.delete(ctx, ALIAS_ID, '*');
        expect(coordination.positionDelete).toHaveBeenCalledWith(USER, TASK_ID);
        expect(repository.delete).toHaveBeenCalledWith(POOL, deletion({ expectedVersion: 3 }));
      });

      it('answers 412 for a stale version and NOT_FOUND for a missing task, deleting nothing', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 })).mockResolvedValueOnce(undefined);
        await expect(service.delete(ctx, TASK_ID, [2])).rejects.toBeInstanceOf(PreconditionFailedError);
        await expect(service.delete(ctx, TASK_ID, '*')).rejects.toBeInstanceOf(NotFoundError);
        expect(coordination.positionDelete).not.toHaveBeenCalled();
      });

      it('answers 412 when the version changed between the read and the delete', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 })).mockResolvedValueOnce(storedTask({ version: 4 }));
        coordination.positionDelete.mockResolvedValueOnce(P1);
        repository.delete.mockResolvedValueOnce(false);

        await expect(service.delete(ctx, TASK_ID, [3])).rejects.toBeInstanceOf(PreconditionFailedError);
      });

      it('answers 503 while PostgreSQL is down, reading and queueing nothing', async () => {
        database.up = false;
        await expect(service.delete(ctx, TASK_ID, [3])).rejects.toBeInstanceOf(ServiceUnavailableError);
        expect(buffer.ops()).toEqual([]);
      });

      it('answers 503 rather than queueing when the delete loses the connection', async () => {
        repository.findById.mockResolvedValueOnce(storedTask({ version: 3 }));
        coordination.positionDelete.mockResolvedValueOnce(P1);
        repository.delete.mockImplementationOnce(async () => {
          throw database.connectionLost();
        });

        await expect(service.delete(ctx, TASK_ID, [3])).rejects.toBeInstanceOf(ServiceUnavailableError);
        expect(buffer.ops()).toEqual([]);
      });
    });
  });

  describe('get', () => {
    it("answers the user's task, and NOT_FOUND when there is none", async () => {
      const task = storedTask();
      repository.findById.mockResolvedValueOnce(task).mockResolvedValueOnce(undefined);
      await expect(service.get(ctx, TASK_ID)).resolves.toBe(task);
      await expect(service.get(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
      expect(repository.findById).toHaveBeenCalledWith(ctx, USER, TASK_ID);
    });
  });

  describe('list', () => {
    const tasks = (count: number) =>
      Array.from({ length: count }, (_, i) => storedTask({ id: `0193a000-0000-7000-8000-${String(i).padStart(12, '0')}`, priority: 'high' }));

    it('asks for one row more than the page and returns no cursor on the last page', async () => {
      repository.list.mockResolvedValueOnce({ tasks: tasks(3), resumeAfter: null });

      await expect(service.list(ctx, { limit: 5 })).resolves.toEqual({ items: tasks(3), nextCursor: null });
      expect(repository.list).toHaveBeenCalledWith(ctx, USER, { filter: {}, sort: '-createdAt', after: null, limit: 6 });
    });

    it('defaults to 20 per page, newest first', async () => {
      repository.list.mockResolvedValueOnce({ tasks: [], resumeAfter: null });
      await service.list(ctx, {});
      expect(repository.list).toHaveBeenCalledWith(ctx, USER, expect.objectContaining({ sort: '-createdAt', limit: 21 }));
    });

    it('returns a cursor that continues after the last task of the page, with the same query', async () => {
      repository.list.mockResolvedValueOnce({ tasks: tasks(3), resumeAfter: null });
      const query = { sort: '-priority' as const, limit: 2, status: 'todo' as const, q: '50%' };

      const first = await service.list(ctx, query);

      expect(first.items).toHaveLength(2);
      expect(first.nextCursor).toEqual(expect.any(String));
      repository.list.mockResolvedValueOnce({ tasks: [], resumeAfter: null });
      await service.list(ctx, { ...query, cursor: first.nextCursor! });
      expect(repository.list).toHaveBeenLastCalledWith(ctx, USER, {
        filter: { status: 'todo', q: '50%' },
        sort: '-priority',
        after: { key: 3, id: tasks(2)[1]!.id },
        limit: 3,
      });
    });

    it('continues where a bounded scan stopped when it found less than a page', async () => {
      const stoppedAt = { key: '2026-01-01T00:00:00.000Z', id: tasks(9)[8]!.id };
      repository.list.mockResolvedValueOnce({ tasks: tasks(1), resumeAfter: stoppedAt });
      const query = { limit: 5, q: 'ab' };

      const first = await service.list(ctx, query);

      expect(first.items).toEqual(tasks(1));
      expect(first.nextCursor).toEqual(expect.any(String));
      repository.list.mockResolvedValueOnce({ tasks: [], resumeAfter: null });
      const last = await service.list(ctx, { ...query, cursor: first.nextCursor! });
      expect(repository.list).toHaveBeenLastCalledWith(ctx, USER, {
        filter: { q: 'ab' },
        sort: '-createdAt',
        after: stoppedAt,
        limit: 6,
      });
      expect(last).toEqual({ items: [], nextCursor: null });
    });

    it('refuses a cursor used with other filters, or a malformed one, before any I/O', async () => {
      repository.list.mockResolvedValueOnce({ tasks: tasks(3), resumeAfter: null });
      const first = await service.list(ctx, { limit: 2, status: 'todo' });

      await expect(service.list(ctx, { limit: 2, status: 'done', cursor: first.nextCursor! })).rejects.toBeInstanceOf(ValidationFailedError);
      await expect(service.list(ctx, { cursor: 'not-a-cursor' })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'cursor', message: expect.any(String) }],
      });
      expect(repository.list).toHaveBeenCalledTimes(1);
    });
  });
});
