/**
 * The task use cases against strict mocks of the repository (a call the test did not expect
 * fails it) and of the write path's I/O: the real `WritePath` decides, over a PostgreSQL that
 * is up or down and a buffer that is empty or not, both stand-ins. No I/O.
 */
import { beforeEach, describe, expect, it, jest } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import {
  NotFoundError,
  PreconditionFailedError,
  ServiceUnavailableError,
  UnauthenticatedError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { ChangeClock, microsOf } from '../../common/time/change-clock.js';
import type { Clock } from '../../common/time/clock.js';
import type { DatabaseService } from '../../infrastructure/database/database.service.js';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import type { AppliedOperations } from '../buffer/applied-operations.js';
import { BufferCounters } from '../buffer/buffer-counters.js';
import type { AddResult, LmdbBuffer } from '../buffer/lmdb-buffer.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { WritePath } from '../buffer/write-path.js';
import type { NewTask, Task, TaskUpdate } from './task.js';
import { TaskCursorCodec } from './task-cursor.js';
import { TaskOperations, type TaskUpdatePayload } from './task-operations.js';
import type { TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const TASK_ID = '0193a000-0000-7000-8000-0000000000aa';
const OTHER_TASK_ID = '0193a000-0000-7000-8000-0000000000bb';
const NOW = new Date('2026-02-20T09:15:00.000Z');
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** What the write path hands a direct write of an idempotent kind: the pool. */
const POOL: SqlExecutor = {
  query: async () => {
    throw new Error('unexpected SQL: the repository is mocked');
  },
};

type RepositoryMock = { [K in keyof TasksRepository]: jest.Mock<TasksRepository[K]> };

function strictRepository(): RepositoryMock {
  const unexpected = (name: string) =>
    jest.fn(() => {
      throw new Error(`unexpected call: repository.${name}`);
    });
  return {
    findById: unexpected('findById'),
    findByIdempotencyKey: unexpected('findByIdempotencyKey'),
    list: unexpected('list'),
    insert: unexpected('insert'),
    insertMany: unexpected('insertMany'),
    update: unexpected('update'),
    delete: unexpected('delete'),
    deleteMany: unexpected('deleteMany'),
    exists: unexpected('exists'),
  } as unknown as RepositoryMock;
}

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

function contextFor(userId: string | undefined): RequestContext {
  const ctx = RequestContext.start('test-request', 10_000);
  ctx.userId = userId;
  ctx.release();
  return ctx;
}

function databaseDown(): ServiceUnavailableError {
  return new ServiceUnavailableError('the database is unavailable; try again shortly');
}

/**
 * PostgreSQL's state as the write path sees it, and a buffer that keeps what is added in order,
 * deduplicating by key while an entry is queued, as `LmdbBuffer` does.
 */
class Surroundings {
  up = true;
  readonly queue: Array<{ op: BufferedOperation; dedupeKey?: string }> = [];
  readonly database = {
    isUp: () => this.up,
    executor: jest.fn((_ctx: RequestContext) => POOL),
    transaction: jest.fn(async () => {
      throw new Error('unexpected transaction: every task kind is idempotent');
    }),
  };
  readonly buffer = {
    isEmpty: () => this.queue.length === 0,
    isQueuedUnder: (key: string) => this.queue.some((entry) => entry.dedupeKey === key),
    add: jest.fn(
      async (op: BufferedOperation, options: { dedupeKey?: string } = {}): Promise<AddResult> => {
        const queued = this.queue.find(
          (entry) => options.dedupeKey !== undefined && entry.dedupeKey === options.dedupeKey,
        );
        const entry = queued ?? { op, dedupeKey: options.dedupeKey };
        if (!queued) this.queue.push(entry);
        return {
          duplicate: queued !== undefined,
          entry: { key: this.queue.indexOf(entry) + 1, op: entry.op, enqueuedAt: 0, bytes: 1 },
        };
      },
    ),
  };

  /** A connection error, as DatabaseService reports it: the breaker opens, then 503. */
  connectionLost(): ServiceUnavailableError {
    this.up = false;
    return databaseDown();
  }

  ops<P>(kind: string): BufferedOperation<P>[] {
    return this.queue
      .map((entry) => entry.op)
      .filter((op) => op.kind === kind) as BufferedOperation<P>[];
  }
}

describe('TasksService', () => {
  let repository: RepositoryMock;
  let around: Surroundings;
  let service: TasksService;
  let ctx: RequestContext;
  let now: Date;
  const clock: Clock = { now: () => new Date(now) };

  beforeEach(() => {
    now = new Date(NOW);
    repository = strictRepository();
    around = new Surroundings();
    const registry = new OperationRegistry();
    new TaskOperations(registry, repository as unknown as TasksRepository).onModuleInit();
    const writePath = new WritePath(
      around.database as unknown as DatabaseService,
      around.buffer as unknown as LmdbBuffer,
      registry,
      {} as AppliedOperations,
      new BufferCounters(),
    );
    service = new TasksService(
      repository as unknown as TasksRepository,
      new TaskCursorCodec(Buffer.alloc(32, 7)),
      clock,
      new ChangeClock(clock),
      writePath,
    );
    ctx = contextFor(USER);
  });

  describe('create', () => {
    it('builds the complete task (UUIDv7 id, defaults, timestamps, version 1) and applies it once, on the pool', async () => {
      repository.insert.mockResolvedValue(true);

      const { task, replayed, buffered } = await service.create(ctx, { title: 'Write the report' });

      expect({ replayed, buffered }).toEqual({ replayed: false, buffered: false });
      expect(repository.insert).toHaveBeenCalledTimes(1);
      const [db, inserted] = repository.insert.mock.calls[0]!;
      expect(db).toBe(POOL);
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
      });
      // The change is plain data: it survives a JSON round trip unchanged (the buffer stores it so).
      expect(JSON.parse(JSON.stringify(inserted))).toEqual(inserted);
      const { idempotencyKey: _key, ...expected } = inserted;
      expect(task).toEqual(expected);
      expect(around.database.transaction).not.toHaveBeenCalled();
      expect(around.buffer.add).not.toHaveBeenCalled();
    });

    it('stores the given fields and the due date in canonical UTC form', async () => {
      repository.insert.mockResolvedValue(true);

      const { task } = await service.create(ctx, {
        title: 'Call Ada',
        description: 'about the engine',
        status: 'in_progress',
        priority: 'high',
        dueAt: '2026-03-01T18:30:00+01:00',
      });

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
    });

    it('stores the idempotency key with the task', async () => {
      repository.insert.mockResolvedValue(true);

      const { replayed } = await service.create(ctx, { title: 'x' }, 'key-1');

      expect(replayed).toBe(false);
      expect(repository.insert.mock.calls[0]![1]).toMatchObject({
        idempotencyKey: 'key-1',
        userId: USER,
      });
    });

    it('answers with the task the key already created, storing nothing new', async () => {
      const existing = storedTask({ title: 'first' });
      repository.insert.mockResolvedValue(false);
      repository.findByIdempotencyKey.mockResolvedValue(existing);
      repository.findById.mockResolvedValue(existing);

      const result = await service.create(ctx, { title: 'second' }, 'key-1');

      expect(result).toEqual({ task: existing, replayed: true, buffered: false });
      expect(repository.findByIdempotencyKey).toHaveBeenCalledWith(ctx, USER, 'key-1');
      expect(repository.insert).toHaveBeenCalledTimes(1);
    });

    it('tries again when the task holding the key was deleted in between', async () => {
      repository.insert.mockResolvedValueOnce(false).mockResolvedValueOnce(true);
      repository.findByIdempotencyKey.mockResolvedValue(undefined);

      const { task, replayed } = await service.create(ctx, { title: 'x' }, 'key-1');

      expect(replayed).toBe(false);
      expect(repository.insert).toHaveBeenCalledTimes(2);
      expect(task.id).toBe(repository.insert.mock.calls[1]![1].id);
    });

    it('fails (500) rather than pretend when an insert without a key matches an existing row', async () => {
      repository.insert.mockResolvedValue(false);
      await expect(service.create(ctx, { title: 'x' })).rejects.toThrow(/not inserted/);
      expect(repository.insert).toHaveBeenCalledTimes(1);
    });

    it('answers UNAUTHENTICATED when the account is gone (foreign key violation)', async () => {
      repository.insert.mockRejectedValue(
        Object.assign(new Error('violates foreign key constraint'), { code: '23503' }),
      );
      await expect(service.create(ctx, { title: 'x' })).rejects.toBeInstanceOf(
        UnauthenticatedError,
      );
    });

    it('refuses an unauthenticated context before any I/O', async () => {
      await expect(service.create(contextFor(undefined), { title: 'x' })).rejects.toBeInstanceOf(
        UnauthenticatedError,
      );
      expect(repository.insert).not.toHaveBeenCalled();
      expect(around.buffer.add).not.toHaveBeenCalled();
    });

    describe('while PostgreSQL is down', () => {
      beforeEach(() => {
        around.up = false;
      });

      it('queues the complete task and answers it as it will be stored, without touching PostgreSQL', async () => {
        const { task, replayed, buffered } = await service.create(ctx, {
          title: 'Offline',
          dueAt: '2026-03-01T18:30:00+01:00',
        });

        expect({ replayed, buffered }).toEqual({ replayed: false, buffered: true });
        const [op] = around.ops<NewTask>('task.create');
        expect(op).toMatchObject({
          kind: 'task.create',
          userId: USER,
          acceptedAt: NOW.toISOString(),
        });
        expect(op!.payload).toEqual({ ...task, userId: USER, idempotencyKey: null });
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
        expect(repository.insert).not.toHaveBeenCalled();
      });

      it('answers a retry with the same key with the same queued task, queueing nothing more', async () => {
        const first = await service.create(ctx, { title: 'once' }, 'key-1');
        const retry = await service.create(ctx, { title: 'whatever the body' }, 'key-1');
        const otherKey = await service.create(ctx, { title: 'another' }, 'key-2');

        expect(first).toMatchObject({ buffered: true, replayed: false });
        expect(retry).toEqual({ task: first.task, buffered: true, replayed: true });
        expect(otherKey.task.id).not.toBe(first.task.id);
        expect(around.queue).toHaveLength(2);
      });
    });

    it('queues the task when the insert loses the connection (it may have committed: its replay is harmless)', async () => {
      repository.insert.mockImplementation(async () => {
        throw around.connectionLost();
      });

      const { task, buffered } = await service.create(ctx, { title: 'x' });

      expect(buffered).toBe(true);
      expect(around.ops<NewTask>('task.create')[0]!.payload.id).toBe(task.id);
      expect(repository.insert).toHaveBeenCalledTimes(1);
    });

    describe('while older writes are still queued (PostgreSQL up)', () => {
      beforeEach(async () => {
        around.up = false;
        await service.create(ctx, { title: 'queued earlier' });
        around.up = true;
      });

      it('queues behind them, never inserting ahead', async () => {
        const { buffered } = await service.create(ctx, { title: 'behind' });
        expect(buffered).toBe(true);
        expect(around.queue).toHaveLength(2);
        expect(repository.insert).not.toHaveBeenCalled();
      });

      it('answers a key whose task was replayed already with that task, instead of queueing a create the database would ignore', async () => {
        const replayedEarlier = storedTask({ title: 'created with key-1' });
        repository.findByIdempotencyKey.mockResolvedValue(replayedEarlier);
        repository.findById.mockResolvedValue(replayedEarlier);

        await expect(service.create(ctx, { title: 'retry' }, 'key-1')).resolves.toEqual({
          task: replayedEarlier,
          replayed: true,
          buffered: false,
        });
        expect(around.queue).toHaveLength(1);
      });

      it('queues a create with a key whose task has a delete queued, instead of answering with the task going away', async () => {
        const doomed = storedTask({ title: 'created with key-2' });
        repository.findByIdempotencyKey.mockResolvedValue(doomed);
        await expect(service.delete(ctx, doomed.id)).resolves.toEqual({ buffered: true });

        await expect(service.create(ctx, { title: 'again' }, 'key-2')).resolves.toMatchObject({
          task: { title: 'again' },
          buffered: true,
          replayed: false,
        });
        // Replayed in order: the delete frees the key, then the new task takes it.
        expect(around.queue.map((entry) => entry.op.kind)).toEqual(['task.create', 'task.delete', 'task.create']);
        expect(around.ops<NewTask>('task.create')[1]!.payload).toMatchObject({ title: 'again', idempotencyKey: 'key-2' });
      });

      it('queues a create whose key was freed by a delete replayed between its two reads', async () => {
        repository.findByIdempotencyKey.mockResolvedValue(storedTask({ title: 'deleted meanwhile' }));
        repository.findById.mockResolvedValue(undefined);
        await expect(service.create(ctx, { title: 'again' }, 'key-3')).resolves.toMatchObject({
          task: { title: 'again' },
          buffered: true,
        });
      });

      it('queues a create with a key nobody has used', async () => {
        repository.findByIdempotencyKey.mockResolvedValue(undefined);
        await expect(service.create(ctx, { title: 'new' }, 'key-9')).resolves.toMatchObject({
          buffered: true,
          replayed: false,
        });
        expect(around.queue).toHaveLength(2);
      });
    });
  });

  describe('get', () => {
    it('reads by id within the caller', async () => {
      const task = storedTask();
      repository.findById.mockResolvedValue(task);
      await expect(service.get(ctx, TASK_ID)).resolves.toBe(task);
      expect(repository.findById).toHaveBeenCalledWith(ctx, USER, TASK_ID);
    });

    it('answers NOT_FOUND for a missing task (or one of someone else)', async () => {
      repository.findById.mockResolvedValue(undefined);
      await expect(service.get(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  describe('update', () => {
    it('applies only what differs, from the current version to the next, with a new updatedAt', async () => {
      repository.findById.mockResolvedValue(storedTask({ status: 'todo', priority: 'medium' }));
      const updated = storedTask({ status: 'done', version: 4 });
      repository.update.mockResolvedValue(updated);

      const result = await service.update(ctx, TASK_ID, { status: 'done', priority: 'medium' });

      expect(result).toEqual({ buffered: false, task: updated });
      expect(repository.update).toHaveBeenCalledTimes(1);
      const [db, change] = repository.update.mock.calls[0]!;
      expect(db).toBe(POOL);
      const expected: TaskUpdate = {
        id: TASK_ID,
        userId: USER,
        changes: { status: 'done' },
        expectedVersion: 3,
        version: 4,
        updatedAt: '2026-02-20T09:15:00.000000Z',
      };
      expect(change).toEqual(expected);
      expect(JSON.parse(JSON.stringify(change))).toEqual(change);
    });

    it('clears description and dueAt with null and normalises a new due date', async () => {
      repository.findById.mockResolvedValue(
        storedTask({ description: 'old', dueAt: '2026-01-01T00:00:00.000Z' }),
      );
      repository.update.mockResolvedValue(storedTask({ version: 4 }));

      await service.update(ctx, TASK_ID, { description: null, dueAt: '2026-05-01' });

      expect(repository.update.mock.calls[0]![1].changes).toEqual({
        description: null,
        dueAt: '2026-05-01T00:00:00.000Z',
      });
    });

    it('keeps updatedAt after the last change even when this clock lags behind', async () => {
      repository.findById.mockResolvedValue(storedTask({ updatedAt: '2026-02-20T09:15:05.000Z' }));
      repository.update.mockResolvedValue(storedTask({ version: 4 }));

      await service.update(ctx, TASK_ID, { title: 'new' });

      // After the whole millisecond shown: the stored time may carry microseconds within it.
      expect(repository.update.mock.calls[0]![1].updatedAt).toBe('2026-02-20T09:15:05.001000Z');
    });

    it('changes nothing, not even the version, when every value is already as asked', async () => {
      const current = storedTask({ title: 'same', dueAt: '2026-03-01T17:00:00.000Z' });
      repository.findById.mockResolvedValue(current);

      const result = await service.update(ctx, TASK_ID, {
        title: 'same',
        dueAt: '2026-03-01T18:00:00+01:00',
      });

      expect(result).toEqual({ buffered: false, task: current });
      expect(repository.update).not.toHaveBeenCalled();
    });

    it('refuses an empty patch', async () => {
      await expect(service.update(ctx, TASK_ID, {})).rejects.toBeInstanceOf(ValidationFailedError);
    });

    it('answers NOT_FOUND for a missing task', async () => {
      repository.findById.mockResolvedValue(undefined);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it('answers PRECONDITION_FAILED when If-Match names another version, applying nothing', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      await expect(service.update(ctx, TASK_ID, { title: 'x' }, [2])).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect(repository.update).not.toHaveBeenCalled();
    });

    it('applies when If-Match names the current version, or is *', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      repository.update.mockResolvedValue(storedTask({ version: 4 }));
      await service.update(ctx, TASK_ID, { title: 'x' }, [1, 3]);
      await service.update(ctx, TASK_ID, { title: 'y' }, '*');
      expect(repository.update).toHaveBeenCalledTimes(2);
    });

    it('still checks If-Match when nothing would change', async () => {
      repository.findById.mockResolvedValue(storedTask({ title: 'same', version: 3 }));
      await expect(service.update(ctx, TASK_ID, { title: 'same' }, [2])).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
    });

    it('recomputes from the new version when another change won the race', async () => {
      repository.findById
        .mockResolvedValueOnce(storedTask({ version: 3 }))
        .mockResolvedValueOnce(storedTask({ version: 4, priority: 'high' }));
      repository.update
        .mockResolvedValueOnce(undefined)
        .mockResolvedValueOnce(storedTask({ version: 5 }));

      await service.update(ctx, TASK_ID, { title: 'mine' });

      expect(repository.update.mock.calls.map((call) => call[1].expectedVersion)).toEqual([3, 4]);
      expect(repository.update.mock.calls[1]![1].version).toBe(5);
    });

    it('fails with 412 when the version If-Match named changed between read and write', async () => {
      repository.findById
        .mockResolvedValueOnce(storedTask({ version: 3 }))
        .mockResolvedValueOnce(storedTask({ version: 4 }));
      repository.update.mockResolvedValueOnce(undefined);

      await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
    });

    it('answers NOT_FOUND when the task was deleted between read and write', async () => {
      repository.findById.mockResolvedValueOnce(storedTask()).mockResolvedValueOnce(undefined);
      repository.update.mockResolvedValueOnce(undefined);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it('gives up with a retryable 503 after losing the race three times', async () => {
      repository.findById.mockResolvedValue(storedTask());
      repository.update.mockResolvedValue(undefined);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(
        ServiceUnavailableError,
      );
      expect(repository.update).toHaveBeenCalledTimes(3);
    });

    describe('when the task cannot be read first', () => {
      const queuedUpdates = () =>
        around.ops<TaskUpdatePayload>('task.update').map((op) => op.payload);

      it('queues the whole patch, guarded by its time, while PostgreSQL is down: no read, 202 with the id, the fields and updatedAt', async () => {
        around.up = false;

        const result = await service.update(ctx, TASK_ID, {
          title: 'offline',
          description: null,
          dueAt: '2026-05-01T02:00:00+02:00',
        });

        expect(result).toEqual({
          buffered: true,
          change: {
            id: TASK_ID,
            title: 'offline',
            description: null,
            dueAt: '2026-05-01T00:00:00.000Z',
            updatedAt: NOW.toISOString(),
          },
        });
        expect(queuedUpdates()).toEqual([
          {
            id: TASK_ID,
            changes: { title: 'offline', description: null, dueAt: '2026-05-01T00:00:00.000Z' },
            updatedAt: '2026-02-20T09:15:00.000000Z',
          },
        ]);
        expect(around.ops('task.update')[0]!.userId).toBe(USER);
        expect(repository.findById).not.toHaveBeenCalled();
      });

      it('queues behind older buffered writes without reading, so a task that is itself still queued can be changed', async () => {
        around.up = false;
        const { task } = await service.create(ctx, { title: 'created offline' });
        around.up = true;

        const result = await service.update(ctx, task.id, { status: 'done' });

        expect(result).toMatchObject({ buffered: true, change: { id: task.id, status: 'done' } });
        expect(around.queue.map((entry) => entry.op.kind)).toEqual(['task.create', 'task.update']);
        expect(repository.findById).not.toHaveBeenCalled();
        // Strictly after the create, although both happened within the same millisecond.
        expect(microsOf(queuedUpdates()[0]!.updatedAt)).toBeGreaterThan(microsOf(task.updatedAt));
      });

      it('gives changes within one millisecond strictly increasing times, so none is taken for an older one', async () => {
        around.up = false;
        await service.update(ctx, TASK_ID, { title: 'one' });
        await service.update(ctx, TASK_ID, { title: 'two' });
        await service.update(ctx, TASK_ID, { title: 'three' });

        expect(queuedUpdates().map((payload) => payload.updatedAt)).toEqual([
          '2026-02-20T09:15:00.000000Z',
          '2026-02-20T09:15:00.000001Z',
          '2026-02-20T09:15:00.000002Z',
        ]);
      });

      it('queues the patch when the read finds PostgreSQL gone', async () => {
        repository.findById.mockImplementation(async () => {
          throw around.connectionLost();
        });

        await expect(service.update(ctx, TASK_ID, { title: 'x' })).resolves.toMatchObject({
          buffered: true,
        });
        expect(queuedUpdates()).toHaveLength(1);
        expect(repository.update).not.toHaveBeenCalled();
      });

      it('queues a computed change guarded by its time, not its version, when the write itself loses the connection', async () => {
        repository.findById.mockResolvedValue(storedTask({ title: 'old', version: 3 }));
        repository.update.mockImplementation(async () => {
          throw around.connectionLost();
        });

        await expect(
          service.update(ctx, TASK_ID, { title: 'new', status: 'todo' }),
        ).resolves.toEqual({
          buffered: true,
          change: { id: TASK_ID, title: 'new', updatedAt: NOW.toISOString() },
        });
        expect(queuedUpdates()).toEqual([
          { id: TASK_ID, changes: { title: 'new' }, updatedAt: '2026-02-20T09:15:00.000000Z' },
        ]);
      });

      it('answers 503 to If-Match while PostgreSQL is down or older writes are queued, reading and queueing nothing', async () => {
        around.up = false;
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toMatchObject({
          code: 'SERVICE_UNAVAILABLE',
          retryAfterSeconds: expect.any(Number),
        });
        await service.create(ctx, { title: 'queued' });
        around.up = true;
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, '*')).rejects.toBeInstanceOf(
          ServiceUnavailableError,
        );
        expect(repository.findById).not.toHaveBeenCalled();
        expect(queuedUpdates()).toEqual([]);
      });

      it('answers 503 to If-Match when the read finds PostgreSQL gone', async () => {
        repository.findById.mockImplementation(async () => {
          throw around.connectionLost();
        });
        await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toBeInstanceOf(
          ServiceUnavailableError,
        );
        expect(around.queue).toEqual([]);
      });
    });
  });

  describe('delete', () => {
    it('applies one owner-filtered delete on the pool without a read when there is no If-Match', async () => {
      repository.delete.mockResolvedValue(true);
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: false });
      expect(repository.delete).toHaveBeenCalledWith(POOL, {
        id: TASK_ID,
        userId: USER,
        expectedVersion: null,
      });
    });

    it('answers NOT_FOUND when nothing was deleted', async () => {
      repository.delete.mockResolvedValue(false);
      await expect(service.delete(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('with If-Match, deletes only that version', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      repository.delete.mockResolvedValue(true);
      await service.delete(ctx, TASK_ID, [3]);
      expect(repository.delete).toHaveBeenCalledWith(POOL, {
        id: TASK_ID,
        userId: USER,
        expectedVersion: 3,
      });
    });

    it('with a stale If-Match, answers 412 and deletes nothing', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      await expect(service.delete(ctx, TASK_ID, [2])).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect(repository.delete).not.toHaveBeenCalled();
    });

    it('with If-Match on a missing task, answers NOT_FOUND', async () => {
      repository.findById.mockResolvedValue(undefined);
      await expect(service.delete(ctx, TASK_ID, '*')).rejects.toBeInstanceOf(NotFoundError);
    });

    it('queues the delete while PostgreSQL is down (202, no body), and after older queued writes', async () => {
      around.up = false;
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      around.up = true;
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      await expect(service.delete(ctx, OTHER_TASK_ID)).resolves.toEqual({ buffered: true });

      // The second delete of the same task, while the first waits, is that one.
      const queued = around.ops('task.delete');
      expect(queued.map((op) => op.payload)).toEqual([{ id: TASK_ID }, { id: OTHER_TASK_ID }]);
      expect(queued.every((op) => op.userId === USER)).toBe(true);
      expect(repository.delete).not.toHaveBeenCalled();
    });

    it('queues the delete when it loses the connection', async () => {
      repository.delete.mockImplementation(async () => {
        throw around.connectionLost();
      });
      await expect(service.delete(ctx, TASK_ID)).resolves.toEqual({ buffered: true });
      expect(around.ops('task.delete')).toHaveLength(1);
    });

    it('answers 503 to a delete with If-Match while PostgreSQL is down, reading and queueing nothing', async () => {
      around.up = false;
      await expect(service.delete(ctx, TASK_ID, [3])).rejects.toBeInstanceOf(
        ServiceUnavailableError,
      );
      expect(repository.findById).not.toHaveBeenCalled();
      expect(around.queue).toEqual([]);
    });
  });

  describe('list', () => {
    const tasks = (count: number) =>
      Array.from({ length: count }, (_, i) =>
        storedTask({
          id: `0193a000-0000-7000-8000-${String(i).padStart(12, '0')}`,
          priority: 'high',
        }),
      );

    it('asks for one row more than the page and returns no cursor on the last page', async () => {
      repository.list.mockResolvedValue({ tasks: tasks(3), resumeAfter: null });

      const page = await service.list(ctx, { limit: 5 });

      expect(page).toEqual({ items: tasks(3), nextCursor: null });
      expect(repository.list).toHaveBeenCalledWith(ctx, USER, {
        filter: {},
        sort: '-createdAt',
        after: null,
        limit: 6,
      });
    });

    it('defaults to 20 per page, newest first', async () => {
      repository.list.mockResolvedValue({ tasks: [], resumeAfter: null });
      await service.list(ctx, {});
      expect(repository.list).toHaveBeenCalledWith(
        ctx,
        USER,
        expect.objectContaining({ sort: '-createdAt', limit: 21 }),
      );
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

    it('refuses a cursor used with other filters, before any I/O', async () => {
      repository.list.mockResolvedValueOnce({ tasks: tasks(3), resumeAfter: null });
      const first = await service.list(ctx, { limit: 2, status: 'todo' });

      await expect(
        service.list(ctx, { limit: 2, status: 'done', cursor: first.nextCursor! }),
      ).rejects.toBeInstanceOf(ValidationFailedError);
      expect(repository.list).toHaveBeenCalledTimes(1);
    });

    it('refuses a malformed cursor with VALIDATION_FAILED', async () => {
      await expect(service.list(ctx, { cursor: 'not-a-cursor' })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'cursor', message: expect.any(String) }],
      });
    });
  });
});
