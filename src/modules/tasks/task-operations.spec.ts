/**
 * How the buffer applies the task operations it replays: always in the operation's owner's
 * name, updates guarded by their time, and an update of a task that is gone set aside.
 */
import { describe, expect, it, jest } from '@jest/globals';
import type { EntityManager } from 'typeorm';
import { PermanentOperationError } from '../buffer/buffer.errors.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import type { NewTask, Task, TaskDeletion, TaskUpdate } from './task.js';
import { TaskOperations, type TaskUpdatePayload } from './task-operations.js';
import type { TasksRepository } from './tasks.repository.js';

const OWNER = '0193a000-0000-7000-8000-000000000001';
const INTRUDER = '0193a000-0000-7000-8000-000000000002';
const TASK_ID = '0193a000-0000-7000-8000-0000000000aa';
const TX = { query: async () => [] } as unknown as EntityManager;

function operation<P>(kind: string, payload: P): BufferedOperation<P> {
  return {
    id: '0193a000-0000-7000-8000-00000000f00d',
    kind,
    userId: OWNER,
    payload,
    acceptedAt: '2026-02-20T09:15:00.000Z',
    requestId: 'req-1',
  };
}

function newTask(overrides: Partial<NewTask> = {}): NewTask {
  return {
    id: TASK_ID,
    userId: OWNER,
    title: 'Offline',
    description: null,
    status: 'todo',
    priority: 'medium',
    dueAt: null,
    createdAt: '2026-02-20T09:15:00.000Z',
    updatedAt: '2026-02-20T09:15:00.000Z',
    version: 1,
    idempotencyKey: null,
    ...overrides,
  };
}

function setup() {
  const repository = {
    insert: jest.fn(async (_db: EntityManager, _task: NewTask) => true),
    insertMany: jest.fn(async (_db: EntityManager, tasks: readonly NewTask[]) => tasks.length),
    update: jest.fn(
      async (_db: EntityManager, _change: TaskUpdate): Promise<Task | undefined> => undefined,
    ),
    exists: jest.fn(async (_db: EntityManager, _userId: string, _id: string) => true),
    delete: jest.fn(async (_db: EntityManager, _deletion: TaskDeletion) => true),
    deleteMany: jest.fn(
      async (_db: EntityManager, deletions: readonly TaskDeletion[]) => deletions.length,
    ),
    recordKeyAliases: jest.fn(async (_db: EntityManager, _tasks: readonly NewTask[]) => 0),
    aliasTarget: jest.fn(
      async (_db: EntityManager, _userId: string, _id: string): Promise<string | undefined> => undefined,
    ),
  };
  const registry = new OperationRegistry();
  new TaskOperations(registry, repository as unknown as TasksRepository).onModuleInit();
  return { registry, repository };
}

describe('task operations', () => {
  it('registers create, update and delete; creates and deletes apply a run at once', () => {
    const { registry } = setup();
    for (const kind of ['task.create', 'task.delete', 'task.update']) expect(registry.has(kind)).toBe(true);
    expect(registry.batchHandlerFor('task.create')).toBeDefined();
    expect(registry.batchHandlerFor('task.delete')).toBeDefined();
    expect(registry.batchHandlerFor('task.update')).toBeUndefined();
  });

  it("applies a create in the operation's owner's name, whatever the payload says", async () => {
    const { registry, repository } = setup();
    await registry.handlerFor('task.create')!(
      TX,
      operation('task.create', newTask({ userId: INTRUDER })),
    );
    expect(repository.insert).toHaveBeenCalledWith(TX, newTask({ userId: OWNER }));
  });

  it('applies a run of creates in one call, in order', async () => {
    const { registry, repository } = setup();
    const ops = ['a', 'b', 'c'].map((title, n) =>
      operation('task.create', newTask({ id: `0193a000-0000-7000-8000-00000000000${n}`, title })),
    );
    await registry.batchHandlerFor('task.create')!(TX, ops);
    expect(repository.insertMany).toHaveBeenCalledTimes(1);
    expect(repository.insertMany.mock.calls[0]![1].map((task) => task.title)).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  it('records creates that found their key held by another task as aliases of it, and only then', async () => {
    const { registry, repository } = setup();
    const keyed = newTask({ idempotencyKey: 'k' });
    await registry.handlerFor('task.create')!(TX, operation('task.create', keyed));
    expect(repository.recordKeyAliases).not.toHaveBeenCalled();

    repository.insert.mockResolvedValueOnce(false);
    await registry.handlerFor('task.create')!(TX, operation('task.create', keyed));
    expect(repository.recordKeyAliases).toHaveBeenCalledWith(TX, [keyed]);

    repository.insertMany.mockResolvedValueOnce(0);
    await registry.batchHandlerFor('task.create')!(TX, [operation('task.create', keyed)]);
    expect(repository.recordKeyAliases).toHaveBeenCalledTimes(2);
  });

  describe('a replayed update', () => {
    const payload: TaskUpdatePayload = {
      id: TASK_ID,
      changes: { title: 'new', dueAt: null },
      updatedAt: '2026-02-20T09:15:00.000001Z',
    };

    it("is guarded by its time, never a version, in the owner's name", async () => {
      const { registry, repository } = setup();
      repository.update.mockResolvedValueOnce({} as Task);
      await registry.handlerFor('task.update')!(TX, operation('task.update', payload));
      expect(repository.update).toHaveBeenCalledWith(TX, {
        id: TASK_ID,
        userId: OWNER,
        changes: { title: 'new', dueAt: null },
        expectedVersion: null,
        version: null,
        updatedAt: payload.updatedAt,
      });
      expect(repository.exists).not.toHaveBeenCalled();
    });

    it('is a harmless no-op when the task carries a change as new or newer (applied already, or superseded)', async () => {
      const { registry, repository } = setup();
      repository.exists.mockResolvedValueOnce(true);
      await expect(
        registry.handlerFor('task.update')!(TX, operation('task.update', payload)),
      ).resolves.toBeUndefined();
      expect(repository.exists).toHaveBeenCalledWith(TX, OWNER, TASK_ID);
    });

    it('of an id recorded as an alias applies to the task it stands for', async () => {
      const { registry, repository } = setup();
      const target = '0193a000-0000-7000-8000-0000000000cc';
      repository.exists.mockResolvedValueOnce(false);
      repository.aliasTarget.mockResolvedValueOnce(target);
      repository.update.mockResolvedValueOnce(undefined).mockResolvedValueOnce({} as Task);
      await registry.handlerFor('task.update')!(TX, operation('task.update', payload));
      expect(repository.aliasTarget).toHaveBeenCalledWith(TX, OWNER, TASK_ID);
      expect(repository.update).toHaveBeenLastCalledWith(TX, expect.objectContaining({ id: target, userId: OWNER }));
    });

    it("can never apply when the owner has no such task (deleted meanwhile, or someone else's): set aside", async () => {
      const { registry, repository } = setup();
      repository.exists.mockResolvedValueOnce(false);
      await expect(
        registry.handlerFor('task.update')!(TX, operation('task.update', payload)),
      ).rejects.toBeInstanceOf(PermanentOperationError);
    });
  });

  it("applies a delete in the owner's name, a missing task being no error, and a run of them at once", async () => {
    const { registry, repository } = setup();
    repository.delete.mockResolvedValueOnce(false);
    await expect(
      registry.handlerFor('task.delete')!(TX, operation('task.delete', { id: TASK_ID })),
    ).resolves.toBeUndefined();
    expect(repository.delete).toHaveBeenCalledWith(TX, {
      id: TASK_ID,
      userId: OWNER,
      expectedVersion: null,
    });

    // An id recorded as an alias deletes the task it stands for.
    const target = '0193a000-0000-7000-8000-0000000000cc';
    repository.delete.mockResolvedValueOnce(false);
    repository.aliasTarget.mockResolvedValueOnce(target);
    await registry.handlerFor('task.delete')!(TX, operation('task.delete', { id: TASK_ID }));
    expect(repository.delete).toHaveBeenLastCalledWith(TX, { id: target, userId: OWNER, expectedVersion: null });

    await registry.batchHandlerFor('task.delete')!(TX, [
      operation('task.delete', { id: TASK_ID }),
      operation('task.delete', { id: '0193a000-0000-7000-8000-0000000000bb' }),
    ]);
    expect(repository.deleteMany).toHaveBeenCalledWith(TX, [
      { id: TASK_ID, userId: OWNER, expectedVersion: null },
      { id: '0193a000-0000-7000-8000-0000000000bb', userId: OWNER, expectedVersion: null },
    ]);
  });
});
