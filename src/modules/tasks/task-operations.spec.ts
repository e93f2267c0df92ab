/**
 * The task operations as the buffer replays them, against strict mocks of the repository
 * (PostgreSQL) and TaskCoordination (Redis), with the real registry and write path over an
 * in-memory buffer. No I/O.
 *
 * Covered: the registrations (payload version 2, batch handlers, triage, after-apply); payloads
 * of version 1 upgraded to positions (a create's from its createdAt, an update's from its
 * updatedAt, a delete's from its acceptance time); the handlers, always in the operation's
 * owner's name; the triage verdicts (apply, park, set aside) for every case of a missing row;
 * creates applied reported to TaskCoordination.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { EntityManager } from 'typeorm';
import {
  DatabaseStandIn,
  MemoryBuffer,
  strictMock,
  unexpectedCalls,
  type StrictMock,
} from '../../../test/support/unit-stand-ins.js';
import { BufferCounters } from '../buffer/buffer-counters.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry, type QueuedOperation, type Triage } from '../buffer/operation-registry.js';
import { positionAt } from '../buffer/write-order.js';
import { WritePath } from '../buffer/write-path.js';
import type { NewTask, TaskDeletion, TaskUpdate } from './task.js';
import { taskRef, type TaskCoordination } from './task-coordination.js';
import {
  TASK_CREATE,
  TASK_DELETE,
  TASK_UPDATE,
  TaskOperations,
  type TaskCreatePayload,
  type TaskDeletePayload,
  type TaskUpdatePayload,
} from './task-operations.js';
import type { TaskPresence, TasksRepository } from './tasks.repository.js';

const OWNER = '0193a000-0000-7000-8000-000000000001';
const INTRUDER = '0193a000-0000-7000-8000-000000000002';
const TASK_ID = '0193a000-0000-7000-8000-0000000000aa';
const OTHER_ID = '0193a000-0000-7000-8000-0000000000bb';
const TARGET_ID = '0193a000-0000-7000-8000-0000000000cc';
/** The replay transaction's manager. */
const TX = { name: 'the replay transaction' } as unknown as EntityManager;
const ACCEPTED_AT = '2026-02-20T09:15:00.500Z';

/** Positions `micros` microseconds into the second of ACCEPTED_AT (tag 0). */
const position = (micros: number) => positionAt(`2026-02-20T09:15:00.${String(micros).padStart(6, '0')}Z`);
const EARLY = position(100);
const MIDDLE = position(200);
const LATE = position(300);

/** A position computed without `positionAt`: microseconds since the epoch × 1024, tag 0. */
function expectedPosition(isoMillis: string, extraMicros = 0): string {
  return String((BigInt(Date.parse(isoMillis)) * 1_000n + BigInt(extraMicros)) * 1_024n);
}

type Repository = StrictMock<TasksRepository, 'insert' | 'insertMany' | 'merge' | 'deleteMany' | 'recordKeyAliases' | 'presenceOf'>;
type Coordination = StrictMock<TaskCoordination, 'pendingOf' | 'applied'>;

function operation<P>(kind: string, payload: P, overrides: Partial<BufferedOperation<P>> = {}): BufferedOperation<P> {
  return {
    id: `0193a000-0000-7000-8000-${Math.random().toString(16).slice(2, 14).padEnd(12, '0')}`,
    kind,
    userId: OWNER,
    payload,
    acceptedAt: ACCEPTED_AT,
    requestId: 'req-1',
    version: 2,
    ...overrides,
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
    position: EARLY,
    ...overrides,
  };
}

function presence(overrides: Partial<TaskPresence> = {}): TaskPresence {
  return { stored: false, aliasOf: undefined, deleted: false, deletedAt: undefined, ...overrides };
}

describe('task operations', () => {
  let registry: OperationRegistry;
  let repository: Repository;
  let coordination: Coordination;
  let buffer: MemoryBuffer;
  let writes: WritePath;

  beforeEach(() => {
    registry = new OperationRegistry();
    repository = strictMock<TasksRepository, keyof Repository>('repository', [
      'insert',
      'insertMany',
      'merge',
      'deleteMany',
      'recordKeyAliases',
      'presenceOf',
    ]);
    coordination = strictMock<TaskCoordination, keyof Coordination>('coordination', ['pendingOf', 'applied']);
    buffer = new MemoryBuffer();
    writes = new WritePath(new DatabaseStandIn().asDatabase(), buffer.asBuffer(), registry, new BufferCounters());
    new TaskOperations(
      registry,
      repository as unknown as TasksRepository,
      coordination as unknown as TaskCoordination,
      writes,
    ).onModuleInit();
  });

  afterEach(() => {
    expect(unexpectedCalls.splice(0)).toEqual([]);
  });

  describe('registrations', () => {
    it('registers create, update and delete at payload version 2; creates and deletes apply a run at once; updates and deletes are triaged', () => {
      for (const kind of [TASK_CREATE, TASK_UPDATE, TASK_DELETE]) {
        expect(registry.has(kind)).toBe(true);
        expect(registry.stamp(operation(kind, {}, { version: undefined })).version).toBe(2);
      }
      expect(registry.batchHandlerFor(TASK_CREATE)).toBeDefined();
      expect(registry.batchHandlerFor(TASK_DELETE)).toBeDefined();
      expect(registry.batchHandlerFor(TASK_UPDATE)).toBeUndefined();
      expect(registry.triageFor(TASK_UPDATE)).toBeDefined();
      expect(registry.triageFor(TASK_DELETE)).toBeDefined();
      expect(registry.triageFor(TASK_CREATE)).toBeUndefined();
      expect(registry.afterApplyFor(TASK_CREATE)).toBeDefined();
    });

    describe('payloads of version 1 (the release before positions)', () => {
      it('keeps every field of a create, which needs no position (it comes before every write of its task)', () => {
        const { position: _none, ...v1 } = newTask({ createdAt: '2026-02-20T09:15:00.123Z' });
        const stored = operation(TASK_CREATE, v1, { version: undefined });

        const upgraded = registry.upgrade<TaskCreatePayload>(stored);

        expect(upgraded).toEqual({ ...stored, version: 2, payload: { ...v1, position: null } });
      });

      it('positions an update at its updatedAt, microseconds kept', () => {
        const stored = operation(TASK_UPDATE, { id: TASK_ID, changes: { title: 'x' }, updatedAt: '2026-02-20T09:15:00.000001Z' }, { version: 1 });

        const upgraded = registry.upgrade<TaskUpdatePayload>(stored);

        expect(upgraded.payload).toEqual({ id: TASK_ID, changes: { title: 'x' }, position: positionAt('2026-02-20T09:15:00.000001Z') });
        expect(upgraded.payload.position).toBe(expectedPosition('2026-02-20T09:15:00.000Z', 1));
        expect(upgraded.version).toBe(2);
      });

      it('positions a delete at the time it was accepted', () => {
        const stored = operation(TASK_DELETE, { id: TASK_ID }, { version: undefined, acceptedAt: '2026-02-20T09:15:07.250Z' });

        const upgraded = registry.upgrade<TaskDeletePayload>(stored);

        expect(upgraded.payload).toEqual({ id: TASK_ID, position: positionAt('2026-02-20T09:15:07.250Z') });
        expect(upgraded.payload.position).toBe(expectedPosition('2026-02-20T09:15:07.250Z'));
      });

      it('leaves a payload of version 2 as it is', () => {
        const current = operation(TASK_UPDATE, { id: TASK_ID, changes: { title: 'x' }, position: LATE });
        expect(registry.upgrade(current)).toBe(current);
      });
    });
  });

  describe('handlers', () => {
    it("apply a create in the operation's owner's name, whatever the payload says", async () => {
      repository.insert.mockResolvedValueOnce(true);
      await registry.handlerFor(TASK_CREATE)!(TX, operation(TASK_CREATE, newTask({ userId: INTRUDER })));
      expect(repository.insert).toHaveBeenCalledWith(TX, newTask({ userId: OWNER }));
    });

    it('record a create that found its key held by another task as an alias of it, and only then', async () => {
      const keyed = newTask({ idempotencyKey: 'k' });
      repository.insert.mockResolvedValueOnce(true).mockResolvedValueOnce(false);
      repository.recordKeyAliases.mockResolvedValueOnce(1);

      await registry.handlerFor(TASK_CREATE)!(TX, operation(TASK_CREATE, keyed));
      expect(repository.recordKeyAliases).not.toHaveBeenCalled();
      await registry.handlerFor(TASK_CREATE)!(TX, operation(TASK_CREATE, keyed));
      expect(repository.recordKeyAliases).toHaveBeenCalledWith(TX, [keyed]);
    });

    it('apply a run of creates in one statement, in order and in their owners\' names, recording aliases when some did not go in', async () => {
      const ops = ['a', 'b', 'c'].map((title, n) =>
        operation(TASK_CREATE, newTask({ id: `0193a000-0000-7000-8000-00000000000${n}`, title, userId: INTRUDER })),
      );
      repository.insertMany.mockResolvedValueOnce(3).mockResolvedValueOnce(2);
      repository.recordKeyAliases.mockResolvedValueOnce(1);

      await registry.batchHandlerFor(TASK_CREATE)!(TX, ops);
      expect(repository.insertMany).toHaveBeenCalledTimes(1);
      expect(repository.insertMany.mock.calls[0]![1].map((task) => [task.title, task.userId])).toEqual([
        ['a', OWNER],
        ['b', OWNER],
        ['c', OWNER],
      ]);
      expect(repository.recordKeyAliases).not.toHaveBeenCalled();

      await registry.batchHandlerFor(TASK_CREATE)!(TX, ops);
      expect(repository.recordKeyAliases).toHaveBeenCalledWith(TX, repository.insertMany.mock.calls[1]![1]);
    });

    describe('a replayed update', () => {
      const payload: TaskUpdatePayload = { id: TASK_ID, changes: { title: 'new', dueAt: null }, position: MIDDLE };
      const change: TaskUpdate = { id: TASK_ID, userId: OWNER, changes: { title: 'new', dueAt: null }, position: MIDDLE, expectedVersion: null };

      it("is merged at its position, never guarded by a version, in the owner's name (the version grows whenever it is taken)", async () => {
        repository.merge.mockResolvedValueOnce({} as never);
        await registry.handlerFor(TASK_UPDATE)!(TX, operation(TASK_UPDATE, payload, { userId: OWNER }));
        expect(repository.merge).toHaveBeenCalledWith(TX, change);
      });

      it('is a harmless no-op when no row takes it and the id is no alias (superseded, or deleted)', async () => {
        repository.merge.mockResolvedValueOnce(undefined);
        repository.presenceOf.mockResolvedValueOnce([presence({ stored: true })]);

        await expect(registry.handlerFor(TASK_UPDATE)!(TX, operation(TASK_UPDATE, payload))).resolves.toBeUndefined();
        expect(repository.presenceOf).toHaveBeenCalledWith(TX, [{ userId: OWNER, id: TASK_ID }]);
        expect(repository.merge).toHaveBeenCalledTimes(1);
      });

      it('of an id recorded as an alias is merged into the task it stands for', async () => {
        repository.merge.mockResolvedValueOnce(undefined).mockResolvedValueOnce({} as never);
        repository.presenceOf.mockResolvedValueOnce([presence({ stored: true, aliasOf: TARGET_ID })]);

        await registry.handlerFor(TASK_UPDATE)!(TX, operation(TASK_UPDATE, payload));
        expect(repository.merge).toHaveBeenLastCalledWith(TX, { ...change, id: TARGET_ID });
      });
    });

    it("apply deletes in the owner's name, alone or a run of them in one statement", async () => {
      const deletion = (id: string, at: string): TaskDeletion => ({ id, userId: OWNER, position: at, expectedVersion: null });
      repository.deleteMany.mockResolvedValueOnce(0).mockResolvedValueOnce(2);

      await expect(
        registry.handlerFor(TASK_DELETE)!(TX, operation(TASK_DELETE, { id: TASK_ID, position: EARLY })),
      ).resolves.toBeUndefined();
      expect(repository.deleteMany).toHaveBeenCalledWith(TX, [deletion(TASK_ID, EARLY)]);

      await registry.batchHandlerFor(TASK_DELETE)!(TX, [
        operation(TASK_DELETE, { id: TASK_ID, position: EARLY }),
        operation(TASK_DELETE, { id: OTHER_ID, position: LATE }, { userId: OWNER }),
      ]);
      expect(repository.deleteMany).toHaveBeenLastCalledWith(TX, [deletion(TASK_ID, EARLY), deletion(OTHER_ID, LATE)]);
    });

    it('tell TaskCoordination which creates were applied, by their owners and ids', async () => {
      coordination.applied.mockResolvedValueOnce(undefined);
      const ops = [operation(TASK_CREATE, newTask({ id: TASK_ID, userId: INTRUDER })), operation(TASK_CREATE, newTask({ id: OTHER_ID }))];

      await registry.afterApplyFor(TASK_CREATE)!(ops);

      expect(coordination.applied).toHaveBeenCalledWith([
        { userId: OWNER, id: TASK_ID },
        { userId: OWNER, id: OTHER_ID },
      ]);
    });
  });

  describe('triage', () => {
    const CANNOT_SAY = `task ${TASK_ID} has no row, and Redis cannot say whether its create is in another buffer (Redis was down when this write was accepted, or is now)`;
    const update = (id = TASK_ID, at = MIDDLE, userId = OWNER) => operation<TaskUpdatePayload>(TASK_UPDATE, { id, changes: { title: 'x' }, position: at }, { userId });
    const remove = (id = TASK_ID, at = MIDDLE) => operation<TaskDeletePayload>(TASK_DELETE, { id, position: at });

    /** Queues `op` in this replica's buffer as the use cases do; resolves with its queue key. */
    async function queue(op: BufferedOperation<unknown>): Promise<number> {
      const options =
        op.kind === TASK_CREATE ? { tags: [(op.payload as NewTask).id] } : op.kind === TASK_DELETE ? { dedupeKey: (op.payload as TaskDeletePayload).id } : {};
      await writes.enqueue(op, options);
      return buffer.held.find((held) => held.op.id === op.id)!.key;
    }

    async function verdicts(kind: string, items: QueuedOperation<unknown>[]): Promise<Triage[]> {
      return registry.triageFor(kind)!(TX, items);
    }

    /** PostgreSQL and Redis as triage asks them, for one item; `pending` undefined: Redis cannot say. */
    const known = (found: Partial<TaskPresence>, ...pending: [Set<string> | undefined] | []) => {
      coordination.pendingOf.mockResolvedValueOnce(pending.length === 0 ? new Set() : pending[0]);
      repository.presenceOf.mockResolvedValueOnce([presence(found)]);
    };

    it('asks Redis, then PostgreSQL, once for the whole batch, by each operation\'s owner', async () => {
      coordination.pendingOf.mockResolvedValueOnce(new Set());
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true }), presence({ stored: true }), presence({ stored: true })]);

      await expect(
        verdicts(TASK_UPDATE, [
          { op: update(TASK_ID), key: 1 },
          { op: update(OTHER_ID), key: 2 },
          { op: update(TARGET_ID, LATE, INTRUDER), key: 3 },
        ]),
      ).resolves.toEqual([{ verdict: 'apply' }, { verdict: 'apply' }, { verdict: 'apply' }]);
      const refs = [
        { userId: OWNER, id: TASK_ID },
        { userId: OWNER, id: OTHER_ID },
        { userId: INTRUDER, id: TARGET_ID },
      ];
      expect(coordination.pendingOf).toHaveBeenCalledWith(refs);
      expect(repository.presenceOf).toHaveBeenCalledWith(TX, refs);
      expect(coordination.pendingOf.mock.invocationCallOrder[0]).toBeLessThan(repository.presenceOf.mock.invocationCallOrder[0]!);
    });

    it('applies an update or a delete of a task that has a row', async () => {
      known({ stored: true });
      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 1 }])).resolves.toEqual([{ verdict: 'apply' }]);
      known({ stored: true, aliasOf: TARGET_ID });
      await expect(verdicts(TASK_DELETE, [{ op: remove(), key: 1 }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it('sets aside an update positioned after its task\'s tombstone, and applies one positioned before it (a no-op)', async () => {
      coordination.pendingOf.mockResolvedValueOnce(new Set());
      repository.presenceOf.mockResolvedValueOnce([presence({ deleted: true, deletedAt: MIDDLE }), presence({ deleted: true, deletedAt: MIDDLE })]);

      const [after, before] = await verdicts(TASK_UPDATE, [
        { op: update(TASK_ID, LATE), key: 1 },
        { op: update(TASK_ID, EARLY), key: 2 },
      ]);

      expect(after).toEqual({ verdict: 'set-aside', reason: `task ${TASK_ID} was deleted before this update` });
      expect(before).toEqual({ verdict: 'apply' });
    });

    it('applies a delete of a task that has a tombstone already (the later position is kept)', async () => {
      known({ deleted: true, deletedAt: EARLY });
      await expect(verdicts(TASK_DELETE, [{ op: remove(TASK_ID, LATE), key: 1 }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it('sets aside an update behind a delete of its task queued in this replica, even while the row is there', async () => {
      const deleteKey = await queue(remove());
      known({ stored: true });

      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: deleteKey + 1 }])).resolves.toEqual([
        { verdict: 'set-aside', reason: `task ${TASK_ID} was deleted before this update` },
      ]);
    });

    it('applies an update ahead of a queued delete of its task (the delete comes after it)', async () => {
      const updateKey = await queue(update());
      await queue(remove());
      known({ stored: true });

      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: updateKey }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it('applies an update whose create waits ahead of it in this queue (replay applies the create first)', async () => {
      await queue(operation(TASK_CREATE, newTask()));
      known({});

      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 2 }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it('parks an update whose create waits behind it in this queue', async () => {
      const updateKey = await queue(update());
      await queue(operation(TASK_CREATE, newTask()));
      known({});

      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: updateKey }])).resolves.toEqual([
        { verdict: 'park', reason: `task ${TASK_ID} is still being created` },
      ]);
    });

    it("parks an update of a task whose create waits in another replica's buffer; applies a delete of it (its tombstone waits for the create)", async () => {
      known({}, new Set([taskRef(OWNER, TASK_ID)]));
      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 1 }])).resolves.toEqual([
        { verdict: 'park', reason: `task ${TASK_ID} is still being created` },
      ]);
      known({}, new Set([taskRef(OWNER, TASK_ID)]));
      await expect(verdicts(TASK_DELETE, [{ op: remove(), key: 1 }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it("does not take another user's pending create for the owner's", async () => {
      known({}, new Set([taskRef(INTRUDER, TASK_ID)]));
      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 1 }])).resolves.toEqual([
        { verdict: 'set-aside', reason: `task ${TASK_ID} does not exist for user ${OWNER}: never created, or not theirs` },
      ]);
    });

    it('parks an update of a task with no row when Redis cannot say whether its create is pending', async () => {
      known({}, undefined);
      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 1 }])).resolves.toEqual([
        { verdict: 'park', reason: CANNOT_SAY },
      ]);
    });

    it('parks an update positioned without Redis although Redis says its create is pending nowhere (it could not be told then); a delete writes its tombstone', async () => {
      // A replica's own position (tag 7): Redis was down when the write was accepted, so a create
      // buffered elsewhere at that time was never recorded as pending.
      const withoutRedis = String(BigInt(MIDDLE) + 7n);
      known({});
      await expect(verdicts(TASK_UPDATE, [{ op: update(TASK_ID, withoutRedis), key: 1 }])).resolves.toEqual([
        { verdict: 'park', reason: CANNOT_SAY },
      ]);
      known({});
      await expect(verdicts(TASK_DELETE, [{ op: remove(TASK_ID, withoutRedis), key: 1 }])).resolves.toEqual([{ verdict: 'apply' }]);
    });

    it('sets aside an update or a delete of a task that exists nowhere (never created, or not the caller\'s)', async () => {
      known({});
      await expect(verdicts(TASK_UPDATE, [{ op: update(), key: 1 }])).resolves.toEqual([
        { verdict: 'set-aside', reason: `task ${TASK_ID} does not exist for user ${OWNER}: never created, or not theirs` },
      ]);
      known({});
      await expect(verdicts(TASK_DELETE, [{ op: remove(), key: 1 }])).resolves.toEqual([
        { verdict: 'set-aside', reason: `task ${TASK_ID} does not exist for user ${OWNER}: never created, or not theirs` },
      ]);
    });

    it('gives one verdict per operation, in order, for a mixed batch', async () => {
      coordination.pendingOf.mockResolvedValueOnce(new Set([taskRef(OWNER, OTHER_ID)]));
      repository.presenceOf.mockResolvedValueOnce([presence({ stored: true }), presence(), presence()]);

      await expect(
        verdicts(TASK_UPDATE, [
          { op: update(TASK_ID), key: 1 },
          { op: update(OTHER_ID), key: 2 },
          { op: update(TARGET_ID), key: 3 },
        ]),
      ).resolves.toEqual([
        { verdict: 'apply' },
        { verdict: 'park', reason: `task ${OTHER_ID} is still being created` },
        { verdict: 'set-aside', reason: `task ${TARGET_ID} does not exist for user ${OWNER}: never created, or not theirs` },
      ]);
    });
  });
});
