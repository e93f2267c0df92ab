/**
 * The task use cases against a strict mock of the repository: a call the test did not expect
 * fails it. No I/O.
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
import type { Clock } from './clock.js';
import type { Task, TaskUpdate } from './task.js';
import { TaskCursorCodec } from './task-cursor.js';
import type { TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const TASK_ID = '0193a000-0000-7000-8000-0000000000aa';
const NOW = new Date('2026-02-20T09:15:00.000Z');
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

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
    insertTask: unexpected('insertTask'),
    applyUpdate: unexpected('applyUpdate'),
    deleteTask: unexpected('deleteTask'),
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

describe('TasksService', () => {
  let repository: RepositoryMock;
  let cursors: TaskCursorCodec;
  let service: TasksService;
  let ctx: RequestContext;
  const clock: Clock = { now: () => new Date(NOW) };

  beforeEach(() => {
    repository = strictRepository();
    cursors = new TaskCursorCodec(Buffer.alloc(32, 7));
    service = new TasksService(repository as unknown as TasksRepository, cursors, clock);
    ctx = contextFor(USER);
  });

  describe('create', () => {
    it('builds the complete task (UUIDv7 id, defaults, timestamps, version 1) and applies it once', async () => {
      repository.insertTask.mockResolvedValue(true);

      const { task, replayed } = await service.create(ctx, { title: 'Write the report' });

      expect(replayed).toBe(false);
      expect(repository.insertTask).toHaveBeenCalledTimes(1);
      const inserted = repository.insertTask.mock.calls[0]![1];
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
    });

    it('stores the given fields and the due date in canonical UTC form', async () => {
      repository.insertTask.mockResolvedValue(true);

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
      repository.insertTask.mockResolvedValue(true);
      const first = await service.create(ctx, { title: 'a' });
      const second = await service.create(ctx, { title: 'b' });
      expect(first.task.id).not.toBe(second.task.id);
    });

    it('stores the idempotency key with the task', async () => {
      repository.insertTask.mockResolvedValue(true);

      const { replayed } = await service.create(ctx, { title: 'x' }, 'key-1');

      expect(replayed).toBe(false);
      expect(repository.insertTask.mock.calls[0]![1]).toMatchObject({
        idempotencyKey: 'key-1',
        userId: USER,
      });
    });

    it('answers with the task the key already created, storing nothing new', async () => {
      const existing = storedTask({ title: 'first' });
      repository.insertTask.mockResolvedValue(false);
      repository.findByIdempotencyKey.mockResolvedValue(existing);

      const result = await service.create(ctx, { title: 'second' }, 'key-1');

      expect(result).toEqual({ task: existing, replayed: true });
      expect(repository.findByIdempotencyKey).toHaveBeenCalledWith(ctx, USER, 'key-1');
      expect(repository.insertTask).toHaveBeenCalledTimes(1);
    });

    it('tries again when the task holding the key was deleted in between', async () => {
      repository.insertTask.mockResolvedValueOnce(false).mockResolvedValueOnce(true);
      repository.findByIdempotencyKey.mockResolvedValue(undefined);

      const { task, replayed } = await service.create(ctx, { title: 'x' }, 'key-1');

      expect(replayed).toBe(false);
      expect(repository.insertTask).toHaveBeenCalledTimes(2);
      expect(task.id).toBe(repository.insertTask.mock.calls[1]![1].id);
    });

    it('fails (500) rather than pretend when an insert without a key matches an existing row', async () => {
      repository.insertTask.mockResolvedValue(false);
      await expect(service.create(ctx, { title: 'x' })).rejects.toThrow(/not inserted/);
      expect(repository.insertTask).toHaveBeenCalledTimes(1);
    });

    it('refuses an unauthenticated context before any I/O', async () => {
      await expect(service.create(contextFor(undefined), { title: 'x' })).rejects.toBeInstanceOf(
        UnauthenticatedError,
      );
      expect(repository.insertTask).not.toHaveBeenCalled();
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
      repository.applyUpdate.mockResolvedValue(updated);

      const result = await service.update(ctx, TASK_ID, { status: 'done', priority: 'medium' });

      expect(result).toBe(updated);
      expect(repository.applyUpdate).toHaveBeenCalledTimes(1);
      const change = repository.applyUpdate.mock.calls[0]![1];
      const expected: TaskUpdate = {
        id: TASK_ID,
        userId: USER,
        changes: { status: 'done' },
        expectedVersion: 3,
        version: 4,
        updatedAt: NOW.toISOString(),
      };
      expect(change).toEqual(expected);
      expect(JSON.parse(JSON.stringify(change))).toEqual(change);
    });

    it('clears description and dueAt with null and normalises a new due date', async () => {
      repository.findById.mockResolvedValue(
        storedTask({ description: 'old', dueAt: '2026-01-01T00:00:00.000Z' }),
      );
      repository.applyUpdate.mockResolvedValue(storedTask({ version: 4 }));

      await service.update(ctx, TASK_ID, { description: null, dueAt: '2026-05-01' });

      expect(repository.applyUpdate.mock.calls[0]![1].changes).toEqual({
        description: null,
        dueAt: '2026-05-01T00:00:00.000Z',
      });
    });

    it('keeps updatedAt after the last change even when this clock lags behind', async () => {
      repository.findById.mockResolvedValue(storedTask({ updatedAt: '2026-02-20T09:15:05.000Z' }));
      repository.applyUpdate.mockResolvedValue(storedTask({ version: 4 }));

      await service.update(ctx, TASK_ID, { title: 'new' });

      expect(repository.applyUpdate.mock.calls[0]![1].updatedAt).toBe('2026-02-20T09:15:05.001Z');
    });

    it('changes nothing, not even the version, when every value is already as asked', async () => {
      const current = storedTask({ title: 'same', dueAt: '2026-03-01T17:00:00.000Z' });
      repository.findById.mockResolvedValue(current);

      const result = await service.update(ctx, TASK_ID, {
        title: 'same',
        dueAt: '2026-03-01T18:00:00+01:00',
      });

      expect(result).toBe(current);
      expect(repository.applyUpdate).not.toHaveBeenCalled();
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
      expect(repository.applyUpdate).not.toHaveBeenCalled();
    });

    it('applies when If-Match names the current version, or is *', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      repository.applyUpdate.mockResolvedValue(storedTask({ version: 4 }));
      await service.update(ctx, TASK_ID, { title: 'x' }, [1, 3]);
      await service.update(ctx, TASK_ID, { title: 'y' }, '*');
      expect(repository.applyUpdate).toHaveBeenCalledTimes(2);
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
      repository.applyUpdate
        .mockResolvedValueOnce(undefined)
        .mockResolvedValueOnce(storedTask({ version: 5 }));

      await service.update(ctx, TASK_ID, { title: 'mine' });

      expect(repository.applyUpdate.mock.calls.map((call) => call[1].expectedVersion)).toEqual([
        3, 4,
      ]);
      expect(repository.applyUpdate.mock.calls[1]![1].version).toBe(5);
    });

    it('fails with 412 when the version If-Match named changed between read and write', async () => {
      repository.findById
        .mockResolvedValueOnce(storedTask({ version: 3 }))
        .mockResolvedValueOnce(storedTask({ version: 4 }));
      repository.applyUpdate.mockResolvedValueOnce(undefined);

      await expect(service.update(ctx, TASK_ID, { title: 'x' }, [3])).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
    });

    it('answers NOT_FOUND when the task was deleted between read and write', async () => {
      repository.findById.mockResolvedValueOnce(storedTask()).mockResolvedValueOnce(undefined);
      repository.applyUpdate.mockResolvedValueOnce(undefined);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it('gives up with a retryable 503 after losing the race three times', async () => {
      repository.findById.mockResolvedValue(storedTask());
      repository.applyUpdate.mockResolvedValue(undefined);
      await expect(service.update(ctx, TASK_ID, { title: 'x' })).rejects.toBeInstanceOf(
        ServiceUnavailableError,
      );
      expect(repository.applyUpdate).toHaveBeenCalledTimes(3);
    });
  });

  describe('delete', () => {
    it('applies one owner-filtered delete without a read when there is no If-Match', async () => {
      repository.deleteTask.mockResolvedValue(true);
      await service.delete(ctx, TASK_ID);
      expect(repository.deleteTask).toHaveBeenCalledWith(ctx, {
        id: TASK_ID,
        userId: USER,
        expectedVersion: null,
      });
    });

    it('answers NOT_FOUND when nothing was deleted', async () => {
      repository.deleteTask.mockResolvedValue(false);
      await expect(service.delete(ctx, TASK_ID)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('with If-Match, deletes only that version', async () => {
      repository.findById.mockResolvedValue(storedTask({ version: 3 }));
      repository.deleteTask.mockResolvedValue(true);
      await service.delete(ctx, TASK_ID, [3]);
      expect(repository.deleteTask).toHaveBeenCalledWith(ctx, {
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
      expect(repository.deleteTask).not.toHaveBeenCalled();
    });

    it('with If-Match on a missing task, answers NOT_FOUND', async () => {
      repository.findById.mockResolvedValue(undefined);
      await expect(service.delete(ctx, TASK_ID, '*')).rejects.toBeInstanceOf(NotFoundError);
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
      repository.list.mockResolvedValue(tasks(3));

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
      repository.list.mockResolvedValue([]);
      await service.list(ctx, {});
      expect(repository.list).toHaveBeenCalledWith(
        ctx,
        USER,
        expect.objectContaining({ sort: '-createdAt', limit: 21 }),
      );
    });

    it('returns a cursor that continues after the last task of the page, with the same query', async () => {
      repository.list.mockResolvedValueOnce(tasks(3));
      const query = { sort: '-priority' as const, limit: 2, status: 'todo' as const, q: '50%' };

      const first = await service.list(ctx, query);

      expect(first.items).toHaveLength(2);
      expect(first.nextCursor).toEqual(expect.any(String));
      repository.list.mockResolvedValueOnce([]);
      await service.list(ctx, { ...query, cursor: first.nextCursor! });
      expect(repository.list).toHaveBeenLastCalledWith(ctx, USER, {
        filter: { status: 'todo', q: '50%' },
        sort: '-priority',
        after: { key: 3, id: tasks(2)[1]!.id },
        limit: 3,
      });
    });

    it('refuses a cursor used with other filters, before any I/O', async () => {
      repository.list.mockResolvedValueOnce(tasks(3));
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
