/**
 * Replay logic against a real LmdbBuffer (temporary directory) and a stand-in for PostgreSQL
 * that has transactions: effects and exactly-once claims of a transaction become visible only
 * when it commits, and vanish when it throws.
 *
 * Covered: batches applied in order, one transaction each; failures narrowed down and set aside;
 * PostgreSQL going away; payload versions; batch handlers; and the sort-out stage before a batch
 * is applied: retention (older than WRITE_RETENTION: set aside, never applied), a kind's triage
 * verdicts acted on in one LMDB transaction each (park, set aside), parked entries rechecked on
 * later runs, and the after-apply step told of what each commit applied.
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
import type { Database } from '../../infrastructure/database/database.js';
import type { PostgresAvailability } from '../../infrastructure/database/postgres-availability.js';
import type { BufferHandoff } from './buffer-handoff.js';
import type { WriteOrder } from './write-order.js';
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
  readonly onStateChange = jest.fn((_listener: (state: string) => void) => () => undefined);

  /** The pool's manager, as a request's statements (and triage) get it. */
  readonly manager = { pool: true } as unknown as EntityManager;

  isUp(): boolean {
    return this.up;
  }

  async run<T>(_ctx: RequestContext, work: () => Promise<T>): Promise<T> {
    if (!this.up) throw new ServiceUnavailableError('the database is unavailable; try again shortly');
    this.calls.push('run');
    return work();
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

const RETENTION_MS = 7 * 24 * 3_600_000;
const USER = '0190c0de-0000-7000-8000-000000000001';

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
  let service: BufferService;
  let handoff: {
    handedOff: number;
    taken: number;
    take: jest.Mock<() => Promise<number>>;
    handOff: jest.Mock<(deadline: number) => Promise<number>>;
  };
  let config: AppConfig;
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
    handoff = {
      handedOff: 0,
      taken: 0,
      take: jest.fn(async () => 0),
      handOff: jest.fn(async (_deadline: number) => 0),
    };
    config = {
      buffer: { replayBatch: 4, replayIntervalMs: 3_600_000 },
      shutdown: { timeoutMs: 10_000, drainMs: 0 },
      replication: { retentionMs: RETENTION_MS },
    } as unknown as AppConfig;
    service = new BufferService(
      config,
      database as unknown as Database,
      database as unknown as PostgresAvailability,
      lmdb as unknown as LmdbService,
      buffer,
      registry,
      applied as unknown as AppliedOperations,
      counters,
      scheduler,
      { clockOffsetMs: () => undefined } as unknown as WriteOrder,
      handoff as unknown as BufferHandoff,
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

  it('applies the queue in order, one transaction per batch', async () => {
    const values = Array.from({ length: 10 }, (_, n) => `v${n}`);
    await enqueue(...values);

    await expect(service.replay()).resolves.toEqual({
      applied: 10,
      alreadyApplied: 0,
      deadLettered: 0,
    });
    expect(database.committed).toEqual(values);
    expect(database.calls).toEqual([
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
    expect(database.calls.filter((c) => c === 'begin')).toHaveLength(1);
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
    expect(database.calls).toEqual(['begin', 'begin', 'commit', 'begin', 'commit']);

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

  it('on shutdown hands off what it could not apply (PostgreSQL down), within the shutdown bound', async () => {
    await enqueue('kept-1', 'kept-2');
    database.up = false;
    handoff.handOff.mockImplementationOnce(async () => {
      await buffer.remove(buffer.getBatch(10).map((entry) => entry.key));
      return 2;
    });

    await service.finish();
    expect(handoff.handOff).toHaveBeenCalledTimes(1);
    const [deadline] = handoff.handOff.mock.calls[0]!;
    expect(deadline).toBeGreaterThan(Date.now());
    expect(deadline).toBeLessThanOrEqual(Date.now() + config.shutdown.timeoutMs);
    expect(buffer.depth).toBe(0);
  });

  it('hands off nothing when the last replay applied everything', async () => {
    await enqueue('applied-last');
    await service.finish();
    expect(database.committed).toEqual(['applied-last']);
    expect(handoff.handOff).not.toHaveBeenCalled();
  });

  it('takes writes other replicas handed off at the start of each run while PostgreSQL answers, never while it is down', async () => {
    await service.replay();
    expect(handoff.take).toHaveBeenCalledTimes(1);
    database.up = false;
    await service.replay();
    expect(handoff.take).toHaveBeenCalledTimes(1);
  });

  it('schedules itself on start, and on shutdown stops, then replays one last time, once', async () => {
    service.onApplicationBootstrap();
    expect(scheduler.getIntervals()).toEqual(['buffer-replay', 'buffer-ledger-prune']);
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
    expect(database.calls.filter((c) => c === 'commit')).toHaveLength(1);
  });
  describe('payload versions', () => {
    /** `test.versioned` at version 3: v1 `{ text }`, v2 `{ words: [...] }`, v3 `{ value }`. */
    beforeEach(() => {
      registry.register<{ value: string }>(
        'test.versioned',
        async (manager, op) => {
          (manager as unknown as { tx: Tx }).tx.effects.push(op.payload.value);
        },
        {
          version: 3,
          upgrades: {
            1: (payload) => ({ words: (payload as { text: string }).text.split(' ') }),
            2: (payload) => ({ value: (payload as { words: string[] }).words.join('+') }),
          },
        },
      );
    });

    function stored(payload: unknown, version?: number): BufferedOperation {
      return {
        id: uuidv7(),
        kind: 'test.versioned',
        userId: '0190c0de-0000-7000-8000-000000000001',
        payload,
        acceptedAt: new Date().toISOString(),
        requestId: 'req-versioned',
        ...(version === undefined ? {} : { version }),
      };
    }

    it('replays entries an earlier release stored in an older shape, upgraded step by step', async () => {
      // As stored before versions existed (version 1, no field), then by a version-2 release.
      await buffer.add(stored({ text: 'from the first release' }));
      await buffer.add(stored({ words: ['from', 'version', 'two'] }, 2));
      await buffer.add(stored({ value: 'current' }, 3));

      await expect(service.replay()).resolves.toMatchObject({ applied: 3, deadLettered: 0 });
      expect(database.committed).toEqual(['from+the+first+release', 'from+version+two', 'current']);
    });

    it('sets aside an entry a newer release stored, which this one cannot read', async () => {
      const newer = stored({ value: 'from the future', extra: true }, 4);
      await buffer.add(newer);
      await buffer.add(stored({ value: 'after it' }, 3));

      await expect(service.replay()).resolves.toMatchObject({ applied: 1, deadLettered: 1 });
      expect(database.committed).toEqual(['after it']);
      expect(buffer.listDeadLetters()[0]).toMatchObject({
        op: newer,
        error: { name: 'PermanentOperationError', message: expect.stringContaining('newer release') },
      });
    });

    it('refuses a registration that does not say how every older version upgrades', () => {
      expect(() =>
        registry.register('test.gap', async () => undefined, { version: 3, upgrades: { 1: (payload) => payload } }),
      ).toThrow('version 2');
    });
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

  describe('sorting out a batch before it is applied', () => {
    /** Values whose operations triage holds back, with the reason it gives. */
    let waiting: Map<string, string>;
    /** Values triage says can never apply. */
    let impossible: Set<string>;
    /** What triage saw: one entry per call, with the values and queue keys it was given. */
    let triageCalls: Array<{ manager: EntityManager; values: string[]; keys: number[] }>;
    let afterApply: jest.Mock<(ops: readonly BufferedOperation<{ value: string }>[]) => Promise<void>>;
    /** `database.committed` as it was at each after-apply call. */
    let committedAtAfterApply: string[][];

    /** `test.triaged` at payload version 2: version 1 carried `{ text }`. */
    beforeEach(() => {
      waiting = new Map();
      impossible = new Set();
      triageCalls = [];
      committedAtAfterApply = [];
      afterApply = jest.fn(async () => {
        committedAtAfterApply.push([...database.committed]);
      });
      registry.register<{ value: string }>(
        'test.triaged',
        async (manager, op) => {
          (manager as unknown as { tx: Tx }).tx.effects.push(op.payload.value);
        },
        {
          version: 2,
          upgrades: { 1: (payload) => ({ value: (payload as { text: string }).text }) },
          triage: async (manager, items) => {
            triageCalls.push({ manager, values: items.map(({ op }) => op.payload.value), keys: items.map(({ key }) => key) });
            return items.map(({ op }) => {
              const reason = waiting.get(op.payload.value);
              if (reason !== undefined) return { verdict: 'park', reason };
              if (impossible.has(op.payload.value)) return { verdict: 'set-aside', reason: `${op.payload.value} can never apply` };
              return { verdict: 'apply' };
            });
          },
          afterApply,
        },
      );
    });

    async function enqueueTriaged(values: string[], options: { version?: number; acceptedAt?: string; kind?: string } = {}): Promise<BufferedOperation[]> {
      const ops: BufferedOperation[] = [];
      for (const value of values) {
        const version = options.version ?? 2;
        const op: BufferedOperation = {
          id: uuidv7(),
          kind: options.kind ?? 'test.triaged',
          userId: USER,
          payload: version === 1 ? { text: value } : { value },
          acceptedAt: options.acceptedAt ?? new Date().toISOString(),
          requestId: `req-${value}`,
          version,
        };
        await buffer.add(op);
        ops.push(op);
      }
      return ops;
    }

    it('sets aside, never applies, an operation accepted longer ago than WRITE_RETENTION, of any kind', async () => {
      const long = new Date(Date.now() - RETENTION_MS - 60_000).toISOString();
      const [stale] = await enqueueTriaged(['too-old'], { acceptedAt: long });
      const [staleAppend] = await enqueueTriaged(['too-old-append'], { acceptedAt: long, kind: 'test.append' });
      await enqueueTriaged(['fresh']);

      await expect(service.replay()).resolves.toEqual({ applied: 1, alreadyApplied: 0, deadLettered: 2 });
      expect(database.committed).toEqual(['fresh']);
      expect(buffer.listDeadLetters()).toEqual([
        expect.objectContaining({ op: stale, error: { name: 'PermanentOperationError', message: `accepted at ${long}, longer ago than WRITE_RETENTION` } }),
        expect.objectContaining({ op: staleAppend, error: expect.objectContaining({ message: expect.stringContaining('WRITE_RETENTION') }) }),
      ]);
      // Triage is asked only about what is left to decide.
      expect(triageCalls.map((call) => call.values)).toEqual([['fresh']]);
    });

    it('acts on the verdicts of a batch in one LMDB transaction each: parks, sets aside, applies the rest in order', async () => {
      const ops = await enqueueTriaged(['a', 'wait-1', 'never-1', 'b', 'wait-2', 'never-2']);
      waiting.set('wait-1', 'its create is still on its way').set('wait-2', 'so is this one');
      impossible.add('never-1').add('never-2');
      const park = jest.spyOn(buffer, 'park');
      const setAside = jest.spyOn(buffer, 'setAside');

      await expect(service.replay()).resolves.toEqual({ applied: 2, alreadyApplied: 0, deadLettered: 2, parked: 2 });

      expect(database.committed).toEqual(['a', 'b']);
      // Batches of 4: one triage call, one park and one set-aside transaction per batch.
      expect(triageCalls.map((call) => call.values)).toEqual([['a', 'wait-1', 'never-1', 'b'], ['wait-2', 'never-2']]);
      expect(triageCalls.every((call) => call.manager === database.manager)).toBe(true);
      expect(park.mock.calls).toEqual([
        [[{ key: expect.any(Number), reason: 'its create is still on its way' }]],
        [[{ key: expect.any(Number), reason: 'so is this one' }]],
      ]);
      expect(setAside).toHaveBeenCalledTimes(2);
      expect(buffer.listParked().map((entry) => [entry.op, entry.reason])).toEqual([
        [ops[1], 'its create is still on its way'],
        [ops[4], 'so is this one'],
      ]);
      expect(buffer.listDeadLetters().map((letter) => [letter.op, letter.error.message])).toEqual([
        [ops[2], 'never-1 can never apply'],
        [ops[5], 'never-2 can never apply'],
      ]);
      expect(buffer.depth).toBe(0);
      expect(service.stats()).toMatchObject({ parked: 2, parkedTotal: 2, deadLetters: 2, deadLetteredTotal: 2, replayedTotal: 2 });
    });

    it('sets a whole batch of impossible writes aside without a PostgreSQL transaction', async () => {
      await enqueueTriaged(['never-1', 'never-2', 'never-3']);
      for (const value of ['never-1', 'never-2', 'never-3']) impossible.add(value);

      await expect(service.replay()).resolves.toEqual({ applied: 0, alreadyApplied: 0, deadLettered: 3 });
      expect(database.calls).toEqual(['run']);
      expect(buffer.deadLetterCount).toBe(3);
    });

    it('triages operations stored by the previous release in their current shape', async () => {
      await enqueueTriaged(['from-v1'], { version: 1 });
      await service.replay();
      expect(triageCalls.map((call) => call.values)).toEqual([['from-v1']]);
      expect(database.committed).toEqual(['from-v1']);
    });

    it('stops at a PostgreSQL outage during triage, leaving the queue as it is', async () => {
      registry.register<{ value: string }>('test.triage-fails', async () => undefined, {
        triage: async () => {
          throw connectionReset();
        },
      });
      const [op] = await enqueueTriaged(['x'], { kind: 'test.triage-fails', version: 1 });

      await expect(service.replay()).resolves.toMatchObject({ applied: 0, deadLettered: 0, stoppedBy: 'database-unreachable' });
      expect(buffer.getBatch(10).map((entry) => entry.op)).toEqual([op]);
      expect(buffer.parkedCount).toBe(0);
    });

    describe('parked entries, on later runs', () => {
      it('go back to the queue and are applied, in their place, once their verdict is apply', async () => {
        await enqueueTriaged(['wait-1', 'a']);
        waiting.set('wait-1', 'waits for its create');
        await expect(service.replay()).resolves.toMatchObject({ applied: 1, parked: 1 });
        await enqueueTriaged(['b']);
        waiting.clear();

        await expect(service.replay()).resolves.toEqual({ applied: 2, alreadyApplied: 0, deadLettered: 0, parked: -1 });
        expect(database.committed).toEqual(['a', 'wait-1', 'b']);
        expect(buffer.parkedCount).toBe(0);
        expect(buffer.holdsNothing()).toBe(true);
        // The recheck asked about the parked entry alone, then the queue was sorted out again.
        expect(triageCalls.map((call) => call.values)).toEqual([['wait-1', 'a'], ['wait-1'], ['wait-1', 'b']]);
      });

      it('stay parked while they still wait, applying nothing', async () => {
        const [op] = await enqueueTriaged(['wait-1']);
        waiting.set('wait-1', 'waits for its create');
        await service.replay();

        await expect(service.replay()).resolves.toEqual({ applied: 0, alreadyApplied: 0, deadLettered: 0, parked: 0 });
        expect(buffer.listParked().map((entry) => entry.op)).toEqual([op]);
        expect(database.calls).not.toContain('begin');
        expect(counters.parked).toBe(1);
      });

      it('are set aside once they are older than WRITE_RETENTION, even while they still wait', async () => {
        await enqueueTriaged(['wait-1', 'wait-2'], { acceptedAt: new Date(Date.now() - 60_000).toISOString() });
        waiting.set('wait-1', 'w').set('wait-2', 'w');
        await service.replay();
        expect(buffer.parkedCount).toBe(2);
        (config.replication as { retentionMs: number }).retentionMs = 30_000;
        await enqueueTriaged(['fresh']);

        await expect(service.replay()).resolves.toMatchObject({ applied: 1, deadLettered: 2 });
        expect(buffer.parkedCount).toBe(0);
        expect(buffer.listDeadLetters().map((letter) => letter.error.message)).toEqual([
          expect.stringContaining('longer ago than WRITE_RETENTION'),
          expect.stringContaining('longer ago than WRITE_RETENTION'),
        ]);
        expect(database.committed).toEqual(['fresh']);
      });

      it('are set aside by their verdict when still within retention', async () => {
        await enqueueTriaged(['wait-1']);
        waiting.set('wait-1', 'w');
        await service.replay();
        waiting.clear();
        impossible.add('wait-1');

        await expect(service.replay()).resolves.toMatchObject({ applied: 0, deadLettered: 1 });
        expect(buffer.listDeadLetters()[0]!.error.message).toBe('wait-1 can never apply');
        expect(buffer.parkedCount).toBe(0);
      });
    });

    describe('the after-apply step', () => {
      it('is told once per kind after each commit, of the operations that commit applied, in their current shape', async () => {
        const ops = await enqueueTriaged(['t1', 't2', 't3', 't4', 't5'], { version: 1 });
        // The first one was applied before a crash, and only removal was left to do.
        database.ledger.add(ops[0]!.id);

        await expect(service.replay()).resolves.toEqual({ applied: 4, alreadyApplied: 1, deadLettered: 0 });

        expect(afterApply.mock.calls.map(([applied]) => applied.map((op) => op.payload.value))).toEqual([['t2', 't3', 't4'], ['t5']]);
        expect(afterApply.mock.calls[0]![0][0]).toEqual({ ...ops[1], version: 2, payload: { value: 't2' } });
        expect(committedAtAfterApply).toEqual([['t2', 't3', 't4'], ['t2', 't3', 't4', 't5']]);
      });

      it('groups the operations of a commit by kind', async () => {
        await enqueueTriaged(['t1']);
        await enqueue('a1');
        await enqueueTriaged(['t2']);

        await service.replay();

        expect(afterApply).toHaveBeenCalledTimes(1);
        expect(afterApply.mock.calls[0]![0].map((op) => op.payload.value)).toEqual(['t1', 't2']);
      });

      it('only logs a failure: the operations stay applied and leave the buffer', async () => {
        afterApply.mockRejectedValueOnce(new Error('Redis is not connected'));
        const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
        try {
          await enqueueTriaged(['t1', 't2']);

          await expect(service.replay()).resolves.toEqual({ applied: 2, alreadyApplied: 0, deadLettered: 0 });
          expect(buffer.depth).toBe(0);
          expect(database.committed).toEqual(['t1', 't2']);
          expect(warn).toHaveBeenCalledWith({ kind: 'test.triaged', err: { name: 'Error', message: 'Redis is not connected' } }, 'after-apply step failed');
        } finally {
          warn.mockRestore();
        }
      });
    });
  });
});
