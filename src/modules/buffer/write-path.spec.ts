/**
 * The write path's decisions, with the database and the buffer mocked: when a write goes
 * direct, when it is buffered, and what propagates.
 */
import { jest } from '@jest/globals';
import type { EntityManager } from 'typeorm';
import { RequestContext } from '../../common/context/request-context.js';
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { isConnectionError } from '../../infrastructure/database/connection-errors.js';
import { DatabaseUnavailableError, type Database } from '../../infrastructure/database/database.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferFullError } from './buffer.errors.js';
import type { AddResult, LmdbBuffer } from './lmdb-buffer.js';
import { createOperation, type BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';
import {
  BUFFER_FULL_RETRY_AFTER_SECONDS,
  DATABASE_DOWN_RETRY_AFTER_SECONDS,
  WritePath,
} from './write-path.js';

const USER = '0190c0de-0000-7000-8000-0000000000aa';
/** The pool's manager: a direct write's statements run on it, each on its own. */
const POOL = { name: 'the pool manager' } as unknown as EntityManager;

function connectionRefused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
}

function uniqueViolation(): Error {
  return Object.assign(new Error('duplicate key value violates unique constraint'), {
    driverError: { code: '23505' },
  });
}

function setup(
  options: { up?: boolean; empty?: boolean; queuedKeys?: string[]; probeFindsUp?: boolean } = {},
) {
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
  const buffer = {
    isEmpty: jest.fn(() => options.empty ?? true),
    isQueuedUnder: jest.fn((key: string) => (options.queuedKeys ?? []).includes(key)),
    add: jest.fn(
      async (op: BufferedOperation, _options?: { dedupeKey?: string }): Promise<AddResult> => ({
        duplicate: false,
        entry: { key: 1, op, enqueuedAt: Date.now(), bytes: 100 },
      }),
    ),
  };
  const registry = new OperationRegistry();
  registry.register('task.create', async () => undefined);
  registry.register('profile.rename', async () => undefined);
  const counters = new BufferCounters();
  const writePath = new WritePath(
    database as unknown as Database,
    buffer as unknown as LmdbBuffer,
    registry,
    counters,
  );
  return {
    writePath,
    database,
    buffer,
    counters,
    /** The probe has opened the breaker. */
    breakerOpens: () => (up = false),
  };
}

describe('WritePath', () => {
  let ctx: RequestContext;

  beforeEach(() => {
    ctx = RequestContext.start('req-1', 10_000);
    ctx.userId = USER;
  });

  afterEach(() => ctx.release());

  const operation = (kind = 'task.create') =>
    createOperation(ctx, kind, { id: 'task-1', title: 'write the report' });

  it('applies the write directly when PostgreSQL is up and the buffer is empty: plain statements on the pool, under the request context', async () => {
    const { writePath, database, buffer, counters } = setup();
    const op = operation();
    const direct = jest.fn(async (manager: EntityManager) => {
      expect(manager).toBe(POOL);
      return { id: 'task-1', version: 1 };
    });

    await expect(writePath.execute(ctx, op, direct)).resolves.toEqual({
      mode: 'direct',
      result: { id: 'task-1', version: 1 },
    });
    expect(database.run).toHaveBeenCalledTimes(1);
    expect(database.run.mock.calls[0]![0]).toBe(ctx);
    expect(buffer.add).not.toHaveBeenCalled();
    expect(counters.buffered).toBe(0);
  });

  it('buffers without trying PostgreSQL while the breaker is open', async () => {
    const { writePath, database, buffer, counters } = setup({ up: false });
    const op = operation();
    const direct = jest.fn(async () => 'never');

    await expect(writePath.execute(ctx, op, direct)).resolves.toEqual({
      mode: 'buffered',
      op,
      duplicate: false,
    });
    expect(buffer.add).toHaveBeenCalledWith({ ...op, version: 1 }, { dedupeKey: undefined });
    expect(database.run).not.toHaveBeenCalled();
    expect(direct).not.toHaveBeenCalled();
    expect(counters.buffered).toBe(1);
  });

  it('buffers while the buffer is not empty, even with PostgreSQL up, so as not to overtake older writes', async () => {
    const { writePath, database, buffer } = setup({ up: true, empty: false });
    const op = operation();
    const direct = jest.fn(async () => 'never');

    await expect(writePath.execute(ctx, op, direct)).resolves.toMatchObject({
      mode: 'buffered',
      op,
    });
    expect(buffer.add).toHaveBeenCalledTimes(1);
    expect(database.run).not.toHaveBeenCalled();
    expect(direct).not.toHaveBeenCalled();
  });

  it('buffers when the direct attempt fails with a connection error', async () => {
    const { writePath, buffer, counters } = setup();
    const op = operation();
    const direct = jest.fn(async () => {
      throw connectionRefused();
    });

    await expect(writePath.execute(ctx, op, direct)).resolves.toEqual({
      mode: 'buffered',
      op,
      duplicate: false,
    });
    expect(direct).toHaveBeenCalledTimes(1);
    expect(buffer.add).toHaveBeenCalledWith({ ...op, version: 1 }, { dedupeKey: undefined });
    expect(counters.buffered).toBe(1);
  });

  it('answers 503 instead of buffering when the probe finds PostgreSQL up after a connection error (one connection dropped)', async () => {
    const { writePath, buffer, database } = setup({ probeFindsUp: true });

    await expect(
      writePath.execute(ctx, operation(), async () => {
        throw connectionRefused();
      }),
    ).rejects.toBeInstanceOf(DatabaseUnavailableError);
    expect(database.confirmedDown).toHaveBeenCalledTimes(1);
    expect(buffer.add).not.toHaveBeenCalled();
  });

  it('lets a 503 propagate when PostgreSQL is still up (another dependency failed)', async () => {
    const { writePath, buffer } = setup();
    const unavailable = new ServiceUnavailableError('sessions are unavailable');
    const direct = jest.fn(async () => {
      throw unavailable;
    });

    await expect(writePath.execute(ctx, operation(), direct)).rejects.toBe(unavailable);
    expect(buffer.add).not.toHaveBeenCalled();
  });

  it('lets a constraint violation propagate and buffers nothing', async () => {
    const { writePath, buffer, counters } = setup();
    const violation = uniqueViolation();

    await expect(
      writePath.execute(ctx, operation(), async () => {
        throw violation;
      }),
    ).rejects.toBe(violation);
    expect(buffer.add).not.toHaveBeenCalled();
    expect(counters.buffered).toBe(0);
  });

  it('buffers nothing for a request past its deadline, even on a connection error', async () => {
    const { writePath, buffer } = setup();
    const op = operation();
    const refused = connectionRefused();
    const direct = jest.fn(async () => {
      ctx.abort('deadline');
      throw refused;
    });

    await expect(writePath.execute(ctx, op, direct)).rejects.toBeInstanceOf(DatabaseUnavailableError);
    expect(buffer.add).not.toHaveBeenCalled();
  });

  it('answers 503 SERVICE_UNAVAILABLE with a Retry-After when the buffer is full', async () => {
    const { writePath, buffer, counters } = setup({ up: false });
    buffer.add.mockRejectedValueOnce(new BufferFullError('entries'));

    const failure = writePath.execute(ctx, operation(), async () => 'never');
    await expect(failure).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(failure).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      retryAfterSeconds: BUFFER_FULL_RETRY_AFTER_SECONDS,
    });
    expect(counters.buffered).toBe(0);
  });

  it('lets any other buffer failure propagate as it is', async () => {
    const { writePath, buffer } = setup({ up: false });
    const closed = new Error('Database is closed');
    buffer.add.mockRejectedValueOnce(closed);

    await expect(writePath.execute(ctx, operation(), async () => 'never')).rejects.toBe(closed);
  });

  it('returns the first operation for a retried buffered write with the same idempotency key', async () => {
    const { writePath, buffer, counters } = setup({ up: false });
    const first = operation();
    const retry = operation();
    const keys: (string | undefined)[] = [];
    buffer.add.mockImplementation(async (op, options) => {
      keys.push(options?.dedupeKey);
      const duplicate = keys.length > 1;
      return { duplicate, entry: { key: 1, op: duplicate ? first : op, enqueuedAt: 0, bytes: 1 } };
    });

    await expect(
      writePath.execute(ctx, first, async () => 'never', { dedupeKey: 'idem-1' }),
    ).resolves.toEqual({
      mode: 'buffered',
      op: first,
      duplicate: false,
    });
    await expect(
      writePath.execute(ctx, retry, async () => 'never', { dedupeKey: 'idem-1' }),
    ).resolves.toEqual({
      mode: 'buffered',
      op: first,
      duplicate: true,
    });
    expect(keys[0]).toBeDefined();
    expect(keys[1]).toBe(keys[0]);
    expect(counters.buffered).toBe(1);
  });

  it('scopes idempotency keys to the user and the kind of write', async () => {
    const { writePath, buffer } = setup({ up: false });
    const other = RequestContext.start('req-2', 10_000);
    other.userId = '0190c0de-0000-7000-8000-0000000000bb';
    try {
      await writePath.execute(ctx, operation('task.create'), async () => 'never', {
        dedupeKey: 'same',
      });
      await writePath.execute(
        other,
        createOperation(other, 'task.create', {}),
        async () => 'never',
        { dedupeKey: 'same' },
      );
      await writePath.execute(ctx, operation('profile.rename'), async () => 'never', {
        dedupeKey: 'same',
      });
    } finally {
      other.release();
    }
    const keys = buffer.add.mock.calls.map(([, options]) => options?.dedupeKey);
    expect(new Set(keys).size).toBe(3);
    expect(keys).not.toContain('same');
  });

  it('refuses an operation of a kind no module can replay, before touching anything', async () => {
    const { writePath, database, buffer } = setup({ up: false });
    const op = createOperation(ctx, 'nobody.handles', {});

    await expect(writePath.execute(ctx, op, async () => 'never')).rejects.toThrow('nobody.handles');
    expect(buffer.add).not.toHaveBeenCalled();
    expect(database.run).not.toHaveBeenCalled();
  });
  describe('a write that must not be buffered (If-Match)', () => {
    it('answers 503 with the database Retry-After while the breaker is open, trying nothing', async () => {
      const { writePath, database, buffer } = setup({ up: false });
      const direct = jest.fn(async () => 'never');

      const failure = writePath.execute(ctx, operation(), direct, { bufferable: false });
      await expect(failure).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(failure).rejects.toMatchObject({
        retryAfterSeconds: DATABASE_DOWN_RETRY_AFTER_SECONDS,
      });
      expect(direct).not.toHaveBeenCalled();
      expect(database.run).not.toHaveBeenCalled();
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('answers 503 with a short Retry-After while older writes are still queued', async () => {
      const { writePath, buffer } = setup({ up: true, empty: false });

      await expect(
        writePath.execute(ctx, operation(), async () => 'never', { bufferable: false }),
      ).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        retryAfterSeconds: DRAINING_RETRY_AFTER_SECONDS,
      });
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('answers 503 rather than buffering when its direct attempt loses the connection', async () => {
      const { writePath, buffer } = setup();

      await expect(
        writePath.execute(
          ctx,
          operation(),
          async () => {
            throw connectionRefused();
          },
          { bufferable: false },
        ),
      ).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('can be refused before the use case reads anything', () => {
      expect(() => setup({ up: false }).writePath.assertCanWriteDirectly()).toThrow(
        ServiceUnavailableError,
      );
      expect(() => setup({ empty: false }).writePath.assertCanWriteDirectly()).toThrow(
        ServiceUnavailableError,
      );
      expect(() => setup().writePath.assertCanWriteDirectly()).not.toThrow();
      expect(setup().writePath.canWriteDirectly()).toBe(true);
      expect(setup({ empty: false }).writePath.canWriteDirectly()).toBe(false);
    });
  });

  describe('an idempotency key whose first write may have been replayed already', () => {
    const options = (findExisting: () => Promise<string | undefined>) => ({
      dedupeKey: 'idem-9',
      findExisting,
    });

    it('answers with what the database holds for the key, queueing nothing, while the buffer drains', async () => {
      const { writePath, buffer, counters } = setup({ up: true, empty: false });
      const findExisting = jest.fn(async () => 'stored-under-key');

      await expect(
        writePath.execute(ctx, operation(), async () => 'never', options(findExisting)),
      ).resolves.toEqual({ mode: 'direct', result: 'stored-under-key' });
      expect(findExisting).toHaveBeenCalledTimes(1);
      expect(buffer.add).not.toHaveBeenCalled();
      expect(counters.buffered).toBe(0);
    });

    it('queues the write when the database holds nothing under the key', async () => {
      const { writePath, buffer } = setup({ up: true, empty: false });
      const op = operation();

      await expect(
        writePath.execute(
          ctx,
          op,
          async () => 'never',
          options(async () => undefined),
        ),
      ).resolves.toMatchObject({ mode: 'buffered', op });
      expect(buffer.add).toHaveBeenCalledTimes(1);
    });

    it('does not look while the key is still queued: the queued operation answers', async () => {
      const op = operation();
      const scoped = JSON.stringify([USER, 'task.create', 'idem-9']);
      const { writePath, buffer } = setup({ up: true, empty: false, queuedKeys: [scoped] });
      const findExisting = jest.fn(async () => 'stored-under-key');

      await writePath.execute(ctx, op, async () => 'never', options(findExisting));
      expect(findExisting).not.toHaveBeenCalled();
      expect(buffer.add).toHaveBeenCalledWith({ ...op, version: 1 }, { dedupeKey: scoped });
    });

    it('does not look while PostgreSQL is down, and queues when the look-up loses the connection', async () => {
      const down = setup({ up: false });
      const findExisting = jest.fn(async () => 'stored-under-key');
      await down.writePath.execute(ctx, operation(), async () => 'never', options(findExisting));
      expect(findExisting).not.toHaveBeenCalled();
      expect(down.buffer.add).toHaveBeenCalledTimes(1);

      const draining = setup({ up: true, empty: false });
      await expect(
        draining.writePath.execute(
          ctx,
          operation(),
          async () => 'never',
          options(async () => {
            draining.breakerOpens();
            throw new DatabaseUnavailableError();
          }),
        ),
      ).resolves.toMatchObject({ mode: 'buffered' });
    });
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
        id: expect.stringMatching(
          /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
        ),
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
