/**
 * Stand-ins for the I/O boundaries of the use cases, for unit specs (no I/O):
 * - `strictMock`: an object whose every method fails the test when called unless the test said
 *   what it returns; calls nobody expected are also recorded, so that one swallowed by the code
 *   under test still fails the spec (`unexpectedCalls`, checked after each test);
 * - `DatabaseStandIn`: PostgreSQL's availability as `Database` shows it to the write path;
 * - `MemoryBuffer`: the offline buffer as `WritePath` sees it, keeping entries in arrival order
 *   under their dedupe keys and tags, as `LmdbBuffer` does.
 */
import { jest } from '@jest/globals';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../../src/common/context/request-context.js';
import { DatabaseUnavailableError, type Database } from '../../src/infrastructure/database/database.js';
import type { AddOptions, AddResult, LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import type { BufferedOperation } from '../../src/modules/buffer/operation.js';

type Method = (...args: never[]) => unknown;

/** Each method of `T` named in the list, as a jest mock of the same signature. */
export type StrictMock<T, K extends keyof T> = {
  [P in K]: T[P] extends Method ? jest.Mock<T[P]> : never;
};

/** Every call a strict mock did not expect, across the spec ("name.method"). */
export const unexpectedCalls: string[] = [];

export function strictMock<T, K extends keyof T & string>(name: string, methods: readonly K[]): StrictMock<T, K> {
  const mock = {} as Record<string, jest.Mock>;
  for (const method of methods) {
    mock[method] = jest.fn(() => {
      unexpectedCalls.push(`${name}.${method}`);
      throw new Error(`unexpected call: ${name}.${method}`);
    });
  }
  return mock as unknown as StrictMock<T, K>;
}

/** The pool's manager, as the write path hands it to a direct write: any SQL on it is a mistake. */
export const POOL = {
  query: async () => {
    throw new Error('unexpected SQL: the repository is mocked');
  },
} as unknown as EntityManager;

/**
 * A transaction's manager, as the write path hands it to a direct write that holds write locks:
 * the lock statement is the only SQL it takes (the repository is mocked); `locked` records the keys.
 */
export class TransactionStandIn {
  readonly locked: string[][] = [];
  readonly manager = {
    query: async (sql: string, params: unknown[]) => {
      if (!sql.includes('pg_advisory_xact_lock')) throw new Error('unexpected SQL: the repository is mocked');
      this.locked.push(params[1] as string[]);
      return [];
    },
  } as unknown as EntityManager;
}

/** PostgreSQL's state as the write path sees it: up, or down with the breaker open. */
export class DatabaseStandIn {
  up = true;
  readonly manager = POOL;
  readonly tx = new TransactionStandIn();
  readonly run = jest.fn(async (_ctx: RequestContext, work: () => Promise<unknown>) => work());
  readonly transaction = jest.fn(async (_ctx: RequestContext, work: (manager: EntityManager) => Promise<unknown>) => work(this.tx.manager));

  isUp(): boolean {
    return this.up;
  }

  async confirmedDown(): Promise<boolean> {
    return !this.up;
  }

  /** A connection failure, as `Database` reports it once the probe has opened the breaker. */
  connectionLost(): DatabaseUnavailableError {
    this.up = false;
    return new DatabaseUnavailableError();
  }

  asDatabase(): Database {
    return this as unknown as Database;
  }
}

interface Held {
  key: number;
  op: BufferedOperation;
  /** Its dedupe key and tags, as `LmdbBuffer` finds an entry by either. */
  lookups: string[];
}

/** The buffer as the write path uses it, in memory. */
export class MemoryBuffer {
  readonly held: Held[] = [];
  private seq = 0;
  /** Thrown by the next `add`, once: a full buffer, a used-up share. */
  refuseNext: Error | undefined;

  readonly add = jest.fn(async (op: BufferedOperation, options: AddOptions = {}): Promise<AddResult> => {
    const refusal = this.refuseNext;
    this.refuseNext = undefined;
    if (refusal) throw refusal;
    const existing = options.dedupeKey === undefined ? undefined : this.find(options.dedupeKey);
    if (existing) return { duplicate: true, entry: this.entryOf(existing) };
    const lookups = [...(options.dedupeKey === undefined ? [] : [options.dedupeKey]), ...(options.tags ?? [])];
    const held: Held = { key: (this.seq += 1), op, lookups };
    this.held.push(held);
    return { duplicate: false, entry: this.entryOf(held) };
  });

  isQueuedUnder(key: string): boolean {
    return this.find(key) !== undefined;
  }

  queuedKeyOf(key: string): number | undefined {
    return this.find(key)?.key;
  }

  /** The entries held, in arrival order, as `LmdbBuffer.queued` yields them. */
  *queued(): Generator<AddResult['entry']> {
    for (const held of this.held) yield this.entryOf(held);
  }

  /** The operations held, in arrival order; of one kind when given. */
  ops<P = unknown>(kind?: string): BufferedOperation<P>[] {
    return this.held.filter((held) => kind === undefined || held.op.kind === kind).map((held) => held.op as BufferedOperation<P>);
  }

  /** Takes an entry out, as replay does once it is applied. */
  remove(key: number): void {
    const index = this.held.findIndex((held) => held.key === key);
    if (index >= 0) this.held.splice(index, 1);
  }

  asBuffer(): LmdbBuffer {
    return this as unknown as LmdbBuffer;
  }

  private find(lookup: string): Held | undefined {
    return this.held.find((held) => held.lookups.includes(lookup));
  }

  private entryOf(held: Held): AddResult['entry'] {
    return { key: held.key, op: held.op, enqueuedAt: 0, bytes: JSON.stringify(held.op).length };
  }
}
