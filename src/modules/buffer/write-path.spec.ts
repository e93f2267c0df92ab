/**
 * The write path's decisions, with PostgreSQL and the buffer as stand-ins (no I/O): when a write
 * goes direct (also while the buffer still holds older writes: positions, not arrival, decide
 * what is stored), when it is buffered, what propagates; 503 for a full buffer and for a write
 * that must not wait, 429 past a user's share; deduplicated retries; the look-ups by dedupe key
 * and by tag, scoped per user and kind; the operation stamped with its payload version.
 */
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { EntityManager } from 'typeorm';
import { RequestContext } from '../../common/context/request-context.js';
import { RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { isConnectionError } from '../../infrastructure/database/connection-errors.js';
import { DatabaseUnavailableError, type Database } from '../../infrastructure/database/database.js';
import { MemoryBuffer } from '../../../test/support/unit-stand-ins.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferFullError, UserShareExceededError } from './buffer.errors.js';
import { createOperation, type BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';
import {
  BUFFER_FULL_RETRY_AFTER_SECONDS,
  DATABASE_DOWN_RETRY_AFTER_SECONDS,
  USER_SHARE_RETRY_AFTER_SECONDS,
  WritePath,
} from './write-path.js';

const USER = '0190c0de-0000-7000-8000-0000000000aa';
const OTHER_USER = '0190c0de-0000-7000-8000-0000000000bb';
/** The pool's manager: a direct write's statements run on it, each on its own. */
const POOL = { name: 'the pool manager' } as unknown as EntityManager;

function connectionRefused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
}

function uniqueViolation(): Error {
  return Object.assign(new Error('duplicate key value violates unique constraint'), { driverError: { code: '23505' } });
}

function setup(options: { up?: boolean; probeFindsUp?: boolean } = {}) {
  let up = options.up ?? true;
  // As Database does: a connection failure becomes DatabaseUnavailableError, and the probe then
  // decides whether PostgreSQL is down (the breaker opens) or one connection dropped.
  const database = {
    isUp: jest.fn(() => up),
    manager: POOL,
    run: jest.fn(async (_ctx: RequestContext, work: () => Promise<unknown>) => {
      try {
        return await work();
      } catch (error) {
        if (!isConnectionError(error)) throw error;
        if (!options.probeFindsUp) up = false;
        throw new DatabaseUnavailableError();
      }
    }),
    confirmedDown: jest.fn(async () => !up),
  };
  const buffer = new MemoryBuffer();
  const registry = new OperationRegistry();
  registry.register('task.create', async () => undefined);
  registry.register('profile.rename', async () => undefined);
  // A kind at payload version 2: version 1 carried `text`, version 2 carries `words`.
  registry.register('test.versioned', async () => undefined, {
    version: 2,
    upgrades: { 1: (payload) => ({ words: (payload as { text: string }).text.split(' ') }) },
  });
  const counters = new BufferCounters();
  const writePath = new WritePath(database as unknown as Database, buffer.asBuffer(), registry, counters);
  return { writePath, database, buffer, counters };
}

describe('WritePath', () => {
  let ctx: RequestContext;

  beforeEach(() => {
    ctx = RequestContext.start('req-1', 10_000);
    ctx.userId = USER;
  });

  afterEach(() => ctx.release());

  const operation = (kind = 'task.create', on = ctx): BufferedOperation =>
    createOperation(on, kind, { id: 'task-1', title: 'write the report' });
  const never = jest.fn(async () => 'never');

  beforeEach(() => {
    never.mockClear();
  });

  describe('direct', () => {
    it('applies the write on the pool under the request context when PostgreSQL is up', async () => {
      const { writePath, database, buffer, counters } = setup();
      const direct = jest.fn(async (manager: EntityManager) => {
        expect(manager).toBe(POOL);
        return { id: 'task-1', version: 1 };
      });

      await expect(writePath.execute(ctx, operation(), direct)).resolves.toEqual({ mode: 'direct', result: { id: 'task-1', version: 1 } });
      expect(database.run).toHaveBeenCalledTimes(1);
      expect(database.run.mock.calls[0]![0]).toBe(ctx);
      expect(buffer.add).not.toHaveBeenCalled();
      expect(counters.buffered).toBe(0);
    });

    it('goes direct while the buffer still holds older writes (what is stored merges by position)', async () => {
      const { writePath, database, buffer } = setup();
      await writePath.enqueue(operation());

      await expect(writePath.execute(ctx, operation(), async () => 'direct')).resolves.toEqual({ mode: 'direct', result: 'direct' });
      expect(database.run).toHaveBeenCalledTimes(1);
      expect(buffer.ops()).toHaveLength(1);
      expect(writePath.canWriteDirectly()).toBe(true);
      expect(() => writePath.assertCanWriteDirectly()).not.toThrow();
    });

    it('lets a constraint violation, or a 503 of another dependency, propagate and buffers nothing', async () => {
      const { writePath, buffer, counters } = setup();
      const violation = uniqueViolation();
      const sessionsDown = new ServiceUnavailableError('sessions are unavailable');

      await expect(writePath.execute(ctx, operation(), async () => Promise.reject(violation))).rejects.toBe(violation);
      await expect(writePath.execute(ctx, operation(), async () => Promise.reject(sessionsDown))).rejects.toBe(sessionsDown);
      expect(buffer.add).not.toHaveBeenCalled();
      expect(counters.buffered).toBe(0);
    });

    it('refuses an operation of a kind no module can replay, before touching anything', async () => {
      const { writePath, database, buffer } = setup({ up: false });
      await expect(writePath.execute(ctx, createOperation(ctx, 'nobody.handles', {}), never)).rejects.toThrow('nobody.handles');
      expect(buffer.add).not.toHaveBeenCalled();
      expect(database.run).not.toHaveBeenCalled();
    });
  });

  describe('buffered', () => {
    it('queues the operation stamped with its payload version, without trying PostgreSQL, while the breaker is open', async () => {
      const { writePath, database, buffer, counters } = setup({ up: false });
      const op = operation();

      await expect(writePath.execute(ctx, op, never)).resolves.toEqual({ mode: 'buffered', op: { ...op, version: 1 }, duplicate: false });
      expect(buffer.add).toHaveBeenCalledWith({ ...op, version: 1 }, {});
      expect(database.run).not.toHaveBeenCalled();
      expect(never).not.toHaveBeenCalled();
      expect(counters.buffered).toBe(1);
    });

    it("returns the operation as stored, stamped with its kind's current version", async () => {
      const { writePath, buffer } = setup({ up: false });
      const op = createOperation(ctx, 'test.versioned', { words: ['a', 'b'] });

      const outcome = await writePath.execute(ctx, op, never);

      expect(outcome).toMatchObject({ mode: 'buffered', op: { ...op, version: 2 } });
      expect(buffer.ops()[0]).toEqual({ ...op, version: 2 });
    });

    it('queues the write when the direct attempt fails with a connection error the probe confirms', async () => {
      const { writePath, buffer, counters } = setup();
      const op = operation();
      const direct = jest.fn(async () => {
        throw connectionRefused();
      });

      await expect(writePath.execute(ctx, op, direct)).resolves.toEqual({ mode: 'buffered', op: { ...op, version: 1 }, duplicate: false });
      expect(direct).toHaveBeenCalledTimes(1);
      expect(buffer.ops()).toEqual([{ ...op, version: 1 }]);
      expect(counters.buffered).toBe(1);
    });

    it('answers 503 instead of buffering when the probe finds PostgreSQL up after a connection error (one connection dropped)', async () => {
      const { writePath, buffer, database } = setup({ probeFindsUp: true });
      await expect(writePath.execute(ctx, operation(), async () => Promise.reject(connectionRefused()))).rejects.toBeInstanceOf(DatabaseUnavailableError);
      expect(database.confirmedDown).toHaveBeenCalledTimes(1);
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('buffers nothing for a request past its deadline, even on a connection error', async () => {
      const { writePath, buffer } = setup();
      const direct = jest.fn(async () => {
        ctx.abort('deadline');
        throw connectionRefused();
      });
      await expect(writePath.execute(ctx, operation(), direct)).rejects.toBeInstanceOf(DatabaseUnavailableError);
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('answers 503 SERVICE_UNAVAILABLE with a Retry-After when the buffer is full', async () => {
      const { writePath, buffer, counters } = setup({ up: false });
      buffer.refuseNext = new BufferFullError('entries');

      const failure = writePath.execute(ctx, operation(), never);
      await expect(failure).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(failure).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: BUFFER_FULL_RETRY_AFTER_SECONDS });
      expect(counters).toMatchObject({ buffered: 0, shareRefused: 0 });
    });

    it("answers 429 RATE_LIMITED with a Retry-After when the user's share is used up, and counts it", async () => {
      const { writePath, buffer, counters } = setup({ up: false });
      buffer.refuseNext = new UserShareExceededError();

      const failure = writePath.execute(ctx, operation(), never);
      await expect(failure).rejects.toBeInstanceOf(RateLimitedError);
      await expect(failure).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: USER_SHARE_RETRY_AFTER_SECONDS });
      expect(counters).toMatchObject({ buffered: 0, shareRefused: 1 });

      // The next write (another user's) is taken as usual.
      const other = RequestContext.start('req-2', 10_000);
      other.userId = OTHER_USER;
      try {
        await expect(writePath.execute(other, operation('task.create', other), never)).resolves.toMatchObject({ mode: 'buffered' });
      } finally {
        other.release();
      }
      expect(counters).toMatchObject({ buffered: 1, shareRefused: 1 });
    });

    it('lets any other buffer failure propagate as it is', async () => {
      const { writePath, buffer } = setup({ up: false });
      const closed = new Error('Database is closed');
      buffer.refuseNext = closed;
      await expect(writePath.execute(ctx, operation(), never)).rejects.toBe(closed);
    });
  });

  describe('deduplicated retries', () => {
    it('returns the first operation for a retry with the same key while it is queued, counted once', async () => {
      const { writePath, buffer, counters } = setup({ up: false });
      const first = operation();
      const retry = operation();

      await expect(writePath.execute(ctx, first, never, { dedupeKey: 'idem-1' })).resolves.toEqual({ mode: 'buffered', op: { ...first, version: 1 }, duplicate: false });
      await expect(writePath.execute(ctx, retry, never, { dedupeKey: 'idem-1' })).resolves.toEqual({ mode: 'buffered', op: { ...first, version: 1 }, duplicate: true });
      expect(buffer.ops()).toHaveLength(1);
      expect(counters.buffered).toBe(1);
    });

    it('returns a first operation stored by the previous release in the current shape', async () => {
      const { writePath, buffer } = setup({ up: false });
      const { version: _none, ...stored } = createOperation(ctx, 'test.versioned', { text: 'from the old release' });
      await buffer.add(stored, { dedupeKey: JSON.stringify([USER, 'test.versioned', 'idem-2']) });

      const outcome = await writePath.execute(ctx, createOperation(ctx, 'test.versioned', { words: ['retry'] }), never, { dedupeKey: 'idem-2' });

      expect(outcome).toEqual({ mode: 'buffered', duplicate: true, op: { ...stored, version: 2, payload: { words: ['from', 'the', 'old', 'release'] } } });
    });

    it('scopes keys to the user and the kind of write', async () => {
      const { writePath, buffer } = setup({ up: false });
      const other = RequestContext.start('req-2', 10_000);
      other.userId = OTHER_USER;
      try {
        await writePath.execute(ctx, operation('task.create'), never, { dedupeKey: 'same' });
        await writePath.execute(other, operation('task.create', other), never, { dedupeKey: 'same' });
        await writePath.execute(ctx, operation('profile.rename'), never, { dedupeKey: 'same' });
      } finally {
        other.release();
      }
      expect(buffer.ops()).toHaveLength(3);
      const keys = buffer.add.mock.calls.map(([, options]) => options?.dedupeKey);
      expect(new Set(keys).size).toBe(3);
      expect(keys).not.toContain('same');
    });
  });

  describe('enqueue', () => {
    it('queues without trying PostgreSQL, even while it is up, with the same keys and tags as execute', async () => {
      const { writePath, database, buffer, counters } = setup();
      const op = operation();

      await expect(writePath.enqueue(op, { dedupeKey: 'k', tags: ['task-1'] })).resolves.toEqual({ mode: 'buffered', op: { ...op, version: 1 }, duplicate: false });
      await expect(writePath.enqueue(operation(), { dedupeKey: 'k' })).resolves.toMatchObject({ duplicate: true, op: { id: op.id } });
      expect(database.run).not.toHaveBeenCalled();
      expect(buffer.ops()).toHaveLength(1);
      expect(writePath.isTagged(USER, 'task.create', 'task-1')).toBe(true);
      expect(counters.buffered).toBe(1);
    });

    it('refuses a write that must not be buffered (503), queueing nothing', async () => {
      const { writePath, buffer } = setup();
      await expect(writePath.enqueue(operation(), { bufferable: false })).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        retryAfterSeconds: DATABASE_DOWN_RETRY_AFTER_SECONDS,
      });
      expect(buffer.add).not.toHaveBeenCalled();
    });
  });

  describe('look-ups of queued writes', () => {
    it('finds an operation by its tags and by its dedupe key, each only as what it is, for its own user and kind', async () => {
      const { writePath, buffer } = setup({ up: false });
      await writePath.execute(ctx, operation('task.create'), never, { dedupeKey: 'the-key', tags: ['the-tag'] });
      const [held] = buffer.held;

      expect(writePath.isTagged(USER, 'task.create', 'the-tag')).toBe(true);
      expect(writePath.taggedKey(USER, 'task.create', 'the-tag')).toBe(held!.key);
      expect(writePath.isQueuedUnder(USER, 'task.create', 'the-key')).toBe(true);
      expect(writePath.queuedKeyUnder(USER, 'task.create', 'the-key')).toBe(held!.key);

      // A tag is not a dedupe key, nor the other way round: a client's idempotency key named like
      // a task id never passes for a tag.
      expect(writePath.isQueuedUnder(USER, 'task.create', 'the-tag')).toBe(false);
      expect(writePath.queuedKeyUnder(USER, 'task.create', 'the-tag')).toBeUndefined();
      expect(writePath.isTagged(USER, 'task.create', 'the-key')).toBe(false);
      expect(writePath.taggedKey(USER, 'task.create', 'the-key')).toBeUndefined();

      // Another user's, or another kind's, is not this one.
      expect(writePath.isTagged(OTHER_USER, 'task.create', 'the-tag')).toBe(false);
      expect(writePath.isTagged(USER, 'task.update', 'the-tag')).toBe(false);
      expect(writePath.isQueuedUnder(OTHER_USER, 'task.create', 'the-key')).toBe(false);
      expect(writePath.queuedKeyUnder(USER, 'profile.rename', 'the-key')).toBeUndefined();

      buffer.remove(held!.key);
      expect(writePath.isTagged(USER, 'task.create', 'the-tag')).toBe(false);
      expect(writePath.isQueuedUnder(USER, 'task.create', 'the-key')).toBe(false);
    });

    it('lists the operations of one kind waiting in the buffer, in their order', async () => {
      const { writePath } = setup({ up: false });
      const [first, other, second] = [operation('task.create'), operation('profile.rename'), operation('task.create')];
      for (const op of [first, other, second]) await writePath.enqueue(op);

      expect(writePath.queuedOf('task.create').map((op) => op.id)).toEqual([first.id, second.id]);
      expect(writePath.queuedOf('task.update')).toEqual([]);
    });

    it("does not take a retry whose idempotency key reads like another create's tag for that create", async () => {
      const { writePath } = setup({ up: false });
      const first = await writePath.execute(ctx, operation(), never, { tags: ['0190c0de-task'] });
      const retry = await writePath.execute(ctx, operation(), never, { dedupeKey: '0190c0de-task' });
      expect(retry).toMatchObject({ duplicate: false });
      expect(retry).not.toEqual(first);
    });
  });

  describe('a write that must not be buffered (If-Match)', () => {
    it('answers 503 with the database Retry-After while the breaker is open, trying nothing', async () => {
      const { writePath, database, buffer } = setup({ up: false });

      const failure = writePath.execute(ctx, operation(), never, { bufferable: false });
      await expect(failure).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(failure).rejects.toMatchObject({ retryAfterSeconds: DATABASE_DOWN_RETRY_AFTER_SECONDS });
      expect(never).not.toHaveBeenCalled();
      expect(database.run).not.toHaveBeenCalled();
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('answers 503 rather than buffering when its direct attempt loses the connection', async () => {
      const { writePath, buffer } = setup();
      await expect(
        writePath.execute(ctx, operation(), async () => Promise.reject(connectionRefused()), { bufferable: false }),
      ).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('can be refused before the use case reads anything, by PostgreSQL\'s state alone', () => {
      expect(() => setup({ up: false }).writePath.assertCanWriteDirectly()).toThrow(ServiceUnavailableError);
      expect(setup({ up: false }).writePath.canWriteDirectly()).toBe(false);
      expect(setup().writePath.canWriteDirectly()).toBe(true);
    });
  });

  it('takes an error for PostgreSQL being unreachable only once the probe has confirmed it', async () => {
    const down = setup({ up: false });
    const up = setup();
    await expect(down.writePath.isDatabaseUnreachable(new DatabaseUnavailableError())).resolves.toBe(true);
    await expect(up.writePath.isDatabaseUnreachable(new DatabaseUnavailableError())).resolves.toBe(false);
    await expect(down.writePath.isDatabaseUnreachable(new ServiceUnavailableError())).resolves.toBe(false);
    await expect(down.writePath.isDatabaseUnreachable(connectionRefused())).resolves.toBe(false);
  });
});

describe('createOperation', () => {
  it('builds a UUIDv7-identified operation for the caller, with a JSON-normalised payload', () => {
    const ctx = RequestContext.start('req-9', 1_000);
    ctx.userId = USER;
    try {
      const at = new Date('2031-01-02T03:04:05.678Z');
      const op = createOperation(ctx, 'task.create', { dueAt: at, tags: undefined, n: 1 }, at);
      expect(op).toEqual({
        id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
        kind: 'task.create',
        userId: USER,
        payload: { dueAt: '2031-01-02T03:04:05.678Z', n: 1 },
        acceptedAt: '2031-01-02T03:04:05.678Z',
        requestId: 'req-9',
      });
      expect(() => createOperation(ctx, 'task.create', { big: 1n })).toThrow(TypeError);
      expect(() => createOperation(ctx, 'Task Create', {})).toThrow('invalid operation kind');
    } finally {
      ctx.release();
    }
  });

  it('needs an authenticated caller', () => {
    const ctx = RequestContext.start('req-10', 1_000);
    try {
      expect(() => createOperation(ctx, 'task.create', {})).toThrow();
    } finally {
      ctx.release();
    }
  });
});
