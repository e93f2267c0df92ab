/**
 * Replay logic against a real LmdbBuffer (temporary directory) and a stand-in for PostgreSQL
 * that has transactions: effects and exactly-once claims of a transaction become visible only
 * when it commits, and vanish when it throws.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { open } from 'lmdb';
import type { RootDatabase } from 'lmdb';
import type { EntityManager } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import type { RequestContext } from '../../common/context/request-context.js';
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import type { AppConfig } from '../../config/app-config.js';
import type { DatabaseService } from '../../infrastructure/database/database.service.js';
import type { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import type { AppliedOperations } from './applied-operations.js';
import { BufferCounters } from './buffer-counters.js';
import { PermanentOperationError } from './buffer.errors.js';
import { BufferService, MAX_RETRYABLE_ATTEMPTS } from './buffer.service.js';
import { LmdbBuffer } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';
import { OperationRegistry } from './operation-registry.js';

interface Tx {
  effects: string[];
  claims: string[];
}

type Failure = Error | undefined;

/** PostgreSQL as the buffer sees it, with commit and rollback. */
class FakeDatabase {
  up = true;
  committed: string[] = [];
  ledger = new Set<string>();
  calls: string[] = [];
  /** Thrown by COMMIT of the next transaction, once. */
  commitFailure: Failure;
  readonly reportFailure = jest.fn();
  readonly onStateChange = jest.fn((_listener: (state: string) => void) => () => undefined);

  isUp(): boolean {
    return this.up;
  }

  async migrate(): Promise<void> {
    this.calls.push('migrate');
  }

  async transaction<T>(
    _ctx: RequestContext,
    work: (manager: EntityManager) => Promise<T>,
  ): Promise<T> {
    if (!this.up)
      throw new ServiceUnavailableError('the database is unavailable; try again shortly');
    this.calls.push('begin');
    const tx: Tx = { effects: [], claims: [] };
    const result = await work({ tx } as unknown as EntityManager);
    const failure = this.commitFailure;
    this.commitFailure = undefined;
    if (failure) throw failure;
    this.committed.push(...tx.effects);
    for (const id of tx.claims) this.ledger.add(id);
    this.calls.push('commit');
    return result;
  }

  claim(manager: EntityManager, ids: readonly string[]): Set<string> {
    const { tx } = manager as unknown as { tx: Tx };
    const fresh = ids.filter((id) => !this.ledger.has(id) && !tx.claims.includes(id));
    tx.claims.push(...fresh);
    return new Set(fresh);
  }
}

const connectionReset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
const checkViolation = () =>
  Object.assign(new Error('violates check constraint'), { driverError: { code: '23514' } });

describe('BufferService', () => {
  beforeAll(() => Logger.overrideLogger(false));
  afterAll(() => Logger.overrideLogger(true));

  let dir: string;
  let root: RootDatabase;
  let buffer: LmdbBuffer;
  let database: FakeDatabase;
  let registry: OperationRegistry;
  let counters: BufferCounters;
  let scheduler: SchedulerRegistry;
  let config: AppConfig;
  let service: BufferService;
  /** value → how the handler behaves for it */
  let behaviour: Map<string, () => Error | undefined>;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'buffer-service-'));
    root = open({ path: dir, maxDbs: 16, overlappingSync: true, compression: false });
    buffer = new LmdbBuffer(root, { maxEntries: 1_000, maxBytes: 1024 * 1024 });
    database = new FakeDatabase();
    registry = new OperationRegistry();
    behaviour = new Map();
    registry.register<{ value: string }>('test.append', async (manager, op) => {
      const failure = behaviour.get(op.payload.value)?.();
      if (failure) throw failure;
      (manager as unknown as { tx: Tx }).tx.effects.push(op.payload.value);
    });
    counters = new BufferCounters();
    scheduler = new SchedulerRegistry();
    const applied = {
      claim: async (manager: EntityManager, ids: readonly string[]) => database.claim(manager, ids),
      prune: async () => 0,
    };
    const lmdb = { isOpen: () => true };
    config = {
      buffer: { replayBatch: 4, replayIntervalMs: 3_600_000 },
      shutdown: { timeoutMs: 10_000, drainMs: 0 },
    } as unknown as AppConfig;
    service = new BufferService(
      config,
      database as unknown as DatabaseService,
      lmdb as unknown as LmdbService,
      buffer,
      registry,
      applied as unknown as AppliedOperations,
      counters,
      scheduler,
    );
  });

  afterEach(async () => {
    await service.finish();
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function enqueue(...values: string[]): Promise<BufferedOperation[]> {
    const ops: BufferedOperation[] = [];
    for (const value of values) {
      const op: BufferedOperation = {
        id: uuidv7(),
        kind: value === 'unknown-kind' ? 'test.unknown' : 'test.append',
        userId: '0190c0de-0000-7000-8000-000000000001',
        payload: { value },
        acceptedAt: new Date().toISOString(),
        requestId: `req-${value}`,
      };
      await buffer.add(op);
      ops.push(op);
    }
    return ops;
  }

  it('does nothing while PostgreSQL is down', async () => {
    database.up = false;
    await enqueue('a', 'b');
    await expect(service.replay()).resolves.toEqual({
      applied: 0,
      alreadyApplied: 0,
      deadLettered: 0,
    });
    expect(database.calls).toEqual([]);
    expect(buffer.depth).toBe(2);
  });

  it('runs pending migrations first, then applies the queue in order, one transaction per batch', async () => {
    const values = Array.from({ length: 10 }, (_, n) => `v${n}`);
    await enqueue(...values);

    await expect(service.replay()).resolves.toEqual({
      applied: 10,
      alreadyApplied: 0,
      deadLettered: 0,
    });
    expect(database.committed).toEqual(values);
    expect(database.calls).toEqual([
      'migrate',
      'begin',
      'commit',
      'begin',
      'commit',
      'begin',
      'commit',
    ]);
    expect(buffer.depth).toBe(0);
    expect(counters.replayed).toBe(10);
    expect(service.stats()).toMatchObject({
      depth: 0,
      oldestAgeMs: null,
      replayedTotal: 10,
      accepting: true,
    });
  });

  it('runs one replay at a time', async () => {
    await enqueue('a', 'b', 'c');
    const first = service.replay();
    const second = service.replay();
    expect(second).toBe(first);
    await first;
    expect(database.committed).toEqual(['a', 'b', 'c']);
    expect(database.calls.filter((c) => c === 'migrate')).toHaveLength(1);
  });

  it('sets an impossible operation aside and applies the ones before and behind it, in order', async () => {
    const ops = await enqueue('a', 'b', 'bad', 'c', 'd', 'e', 'broken-data', 'f');
    behaviour.set('bad', () => new PermanentOperationError('the task was deleted'));
    behaviour.set('broken-data', checkViolation);

    await expect(service.replay()).resolves.toEqual({
      applied: 6,
      alreadyApplied: 0,
      deadLettered: 2,
    });
    expect(database.committed).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(buffer.depth).toBe(0);
    expect(buffer.listDeadLetters()).toEqual([
      expect.objectContaining({
        op: ops[2],
        error: { name: 'PermanentOperationError', message: 'the task was deleted' },
      }),
      expect.objectContaining({ op: ops[6], error: expect.objectContaining({ code: '23514' }) }),
    ]);
    expect(service.stats()).toMatchObject({
      deadLetteredTotal: 2,
      deadLetters: 2,
      replayedTotal: 6,
    });
  });

  it('sets aside an operation whose kind no module handles', async () => {
    const ops = await enqueue('a', 'unknown-kind', 'b');
    await service.replay();
    expect(database.committed).toEqual(['a', 'b']);
    expect(buffer.listDeadLetters()).toEqual([
      expect.objectContaining({
        op: ops[1],
        error: expect.objectContaining({ message: expect.stringContaining('test.unknown') }),
      }),
    ]);
  });

  it('stops at a connection error and leaves the queue as it is, then resumes where it stopped', async () => {
    await enqueue('a', 'b', 'c', 'd', 'e', 'f');
    let failOnce = true;
    behaviour.set('e', () => (failOnce ? ((failOnce = false), connectionReset()) : undefined));

    await expect(service.replay()).resolves.toMatchObject({
      applied: 4,
      stoppedBy: 'database-unreachable',
    });
    expect(database.committed).toEqual(['a', 'b', 'c', 'd']);
    expect(buffer.getBatch(10).map((e) => (e.op.payload as { value: string }).value)).toEqual([
      'e',
      'f',
    ]);
    expect(buffer.deadLetterCount).toBe(0);

    await service.replay();
    expect(database.committed).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(buffer.depth).toBe(0);
  });

  it('goes one at a time when a batch fails at commit, and stops if PostgreSQL went away meanwhile', async () => {
    await enqueue('a', 'b', 'c');
    database.commitFailure = Object.assign(new Error('deferred constraint'), {
      driverError: { code: '40001' },
    });
    await service.replay();
    expect(database.committed).toEqual(['a', 'b', 'c']);
    // The failed batch, then its first operation alone, then the rest together again.
    expect(database.calls).toEqual(['migrate', 'begin', 'begin', 'commit', 'begin', 'commit']);

    await enqueue('d');
    database.commitFailure = connectionReset();
    await expect(service.replay()).resolves.toMatchObject({ stoppedBy: 'database-unreachable' });
    expect(buffer.depth).toBe(1);
  });

  it('never applies an operation twice when its removal from the buffer fails after the commit', async () => {
    await enqueue('a', 'b', 'c', 'd', 'e');
    const remove = jest.spyOn(buffer, 'remove').mockRejectedValueOnce(new Error('disk failure'));

    await expect(service.replay()).resolves.toMatchObject({ applied: 4, stoppedBy: 'error' });
    expect(buffer.depth).toBe(5);

    await expect(service.replay()).resolves.toEqual({
      applied: 1,
      alreadyApplied: 4,
      deadLettered: 0,
    });
    expect(database.committed).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(buffer.depth).toBe(0);
    expect(remove).toHaveBeenCalledTimes(3);
    expect(service.stats()).toMatchObject({ replayedTotal: 5, alreadyAppliedTotal: 4 });
  });

  it('retries an operation that fails for an unknown reason on later runs, then sets it aside', async () => {
    await enqueue('a', 'flaky', 'b');
    behaviour.set('flaky', () => new Error('deadlock detected'));

    for (let run = 1; run < MAX_RETRYABLE_ATTEMPTS; run += 1) {
      await expect(service.replay()).resolves.toMatchObject({ stoppedBy: 'retryable-failure' });
      expect(buffer.depth).toBe(2);
      expect(buffer.deadLetterCount).toBe(0);
    }
    await expect(service.replay()).resolves.toMatchObject({ deadLettered: 1, applied: 1 });
    expect(database.committed).toEqual(['a', 'b']);
    expect(buffer.listDeadLetters()[0]!.error.message).toBe('deadlock detected');
  });

  it('schedules itself on start, and on shutdown stops, then replays one last time, once', async () => {
    service.onApplicationBootstrap();
    expect(scheduler.getIntervals()).toEqual(['buffer-replay']);
    expect(database.onStateChange).toHaveBeenCalledTimes(1);
    await service.replay();

    await enqueue('late-1', 'late-2');
    await Promise.all([service.onApplicationShutdown(), service.finish()]);

    expect(database.committed).toEqual(['late-1', 'late-2']);
    expect(scheduler.getIntervals()).toEqual([]);
    await enqueue('after-shutdown');
    await expect(service.replay()).resolves.toEqual({
      applied: 0,
      alreadyApplied: 0,
      deadLettered: 0,
    });
    expect(database.calls.filter((c) => c === 'migrate')).toHaveLength(1);
  });
  it('ends the last replay in time to close within SHUTDOWN_TIMEOUT_MS, counted from the start of the shutdown', async () => {
    config.shutdown = { timeoutMs: 3_000, drainMs: 1_000 };
    const values = Array.from({ length: 100 }, (_, i) => `op-${i}`);
    await enqueue(...values);
    let clock = Date.now();
    const start = clock;
    const now = jest.spyOn(Date, 'now').mockImplementation(() => clock);
    try {
      for (const value of values) {
        behaviour.set(value, () => {
          clock += 50;
          return undefined;
        });
      }
      service.onModuleDestroy();
      clock += 2_000; // the drain, then the HTTP server's close, before the last replay
      await service.finish();
    } finally {
      now.mockRestore();
    }
    // The last quarter of the bound (750 ms here) is left to closing the connections; the
    // batch under way at the deadline (4 operations) finishes.
    expect(clock - start).toBeLessThanOrEqual(3_000 - 750 + 4 * 50);
    expect(database.committed.length).toBeGreaterThan(0);
    expect(buffer.depth).toBe(values.length - database.committed.length);
  });

  describe('a kind with a batch handler', () => {
    /** Sizes of the batch handler's calls, in order. */
    let runs: number[];

    beforeEach(() => {
      runs = [];
      registry.register<{ value: string }>(
        'test.bulk',
        async (manager, op) => {
          const failure = behaviour.get(op.payload.value)?.();
          if (failure) throw failure;
          (manager as unknown as { tx: Tx }).tx.effects.push(op.payload.value);
        },
        {
          applyBatch: async (manager, ops) => {
            runs.push(ops.length);
            for (const op of ops) {
              const failure = behaviour.get(op.payload.value)?.();
              if (failure) throw failure;
            }
            const { tx } = manager as unknown as { tx: Tx };
            tx.effects.push(...ops.map((op) => op.payload.value));
          },
        },
      );
    });

    async function enqueueKinds(
      ...items: Array<[kind: string, value: string]>
    ): Promise<BufferedOperation[]> {
      const ops: BufferedOperation[] = [];
      for (const [kind, value] of items) {
        const op: BufferedOperation = {
          id: uuidv7(),
          kind,
          userId: '0190c0de-0000-7000-8000-000000000001',
          payload: { value },
          acceptedAt: new Date().toISOString(),
          requestId: `req-${value}`,
        };
        await buffer.add(op);
        ops.push(op);
      }
      return ops;
    }

    it('applies each run of consecutive operations of that kind in one call, keeping the order across kinds', async () => {
      await enqueueKinds(
        ['test.bulk', 'b1'],
        ['test.bulk', 'b2'],
        ['test.bulk', 'b3'],
        ['test.append', 'a1'],
        ['test.bulk', 'b4'],
        ['test.bulk', 'b5'],
        ['test.append', 'a2'],
        ['test.bulk', 'b6'],
      );

      await expect(service.replay()).resolves.toEqual({
        applied: 8,
        alreadyApplied: 0,
        deadLettered: 0,
      });
      expect(database.committed).toEqual(['b1', 'b2', 'b3', 'a1', 'b4', 'b5', 'a2', 'b6']);
      // Batches of 4: [b1 b2 b3] a1 | [b4 b5] a2 b6 (a run of one uses the single handler).
      expect(runs).toEqual([3, 2]);
      expect(database.calls.filter((c) => c === 'commit')).toHaveLength(2);
    });

    it('narrows a failing run down to the impossible operation, applying all the others once and in order', async () => {
      const ops = await enqueueKinds(
        ['test.bulk', 'b1'],
        ['test.bulk', 'b2'],
        ['test.bulk', 'bad'],
        ['test.bulk', 'b4'],
        ['test.bulk', 'b5'],
        ['test.bulk', 'b6'],
      );
      behaviour.set('bad', checkViolation);

      await expect(service.replay()).resolves.toEqual({
        applied: 5,
        alreadyApplied: 0,
        deadLettered: 1,
      });
      expect(database.committed).toEqual(['b1', 'b2', 'b4', 'b5', 'b6']);
      expect(buffer.listDeadLetters()).toEqual([expect.objectContaining({ op: ops[2] })]);
      expect(buffer.depth).toBe(0);
      expect(new Set(database.ledger)).toEqual(
        new Set(ops.filter((_, n) => n !== 2).map((op) => op.id)),
      );
    });
  });
});
