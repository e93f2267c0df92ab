/**
 * The `pg` module given to TypeORM (src/infrastructure/database/pg-driver.ts), against the real
 * PostgreSQL, through a fault proxy where the network must misbehave:
 *
 * - a connection whose ROLLBACK failed (the network stalled past the client-side query timeout)
 *   is closed when released, never handed out again;
 * - a checkout waits for a free connection no longer than the deadline of the work that asked
 *   (504 for a request), or the configured bound without one, and is not a connection failure;
 *   work without a deadline that opens a new connection waits for the attempt alone;
 * - parameterised statements outside a transaction are prepared once per connection (named);
 * - an error on a connection checked out but not yet listened to does not end the process, and
 *   that connection is not pooled again.
 *
 * CI budget: 30 s
 */
import { jest } from '@jest/globals';
import type pg from 'pg';
import { RequestContext } from '../../src/common/context/request-context.js';
import { RequestTimeoutError } from '../../src/common/errors/domain-errors.js';
import { isConnectionError } from '../../src/infrastructure/database/connection-errors.js';
import { PgDriver, PoolCheckoutTimeoutError, runWithDeadline } from '../../src/infrastructure/database/pg-driver.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { databaseUrlFor, PG_URL, withDatabase } from '../support/test-app.js';

jest.setTimeout(30_000);

function poolOf(driver: PgDriver, config: pg.PoolConfig): pg.Pool {
  return new driver.module.Pool(config);
}

describe('the pg driver (e2e)', () => {
  let proxy: FaultProxy;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
  });

  afterAll(async () => {
    proxy.pass();
    await proxy.close();
  });

  it('closes a connection whose ROLLBACK failed instead of pooling it', async () => {
    const driver = new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 5_000 });
    const url = new URL(databaseUrlFor('postgres', proxy.hostPort));
    const pool = poolOf(driver, { connectionString: url.toString(), max: 1, query_timeout: 500 });
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await client.query('START TRANSACTION');
      proxy.blackhole();
      const statement = await client.query('SELECT 1').then(() => 'answered', (error: Error) => error.message);
      const rollback = await client.query('ROLLBACK').then(() => 'answered', (error: Error) => error.message);
      client.release();
      proxy.pass();

      const next = await pool.connect();
      const nextPid = (await next.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      next.release();
      expect({ statement, rollback, sameSession: nextPid === pid }).toEqual({
        statement: 'Query read timeout',
        rollback: 'Query read timeout',
        sameSession: false,
      });
    } finally {
      proxy.pass();
      await pool.end();
    }
  });

  it('keeps pooling a connection whose transaction ended normally', async () => {
    const driver = new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 5_000 });
    const pool = poolOf(driver, { connectionString: databaseUrlFor('postgres'), max: 1 });
    try {
      const first = await pool.connect();
      const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await first.query('START TRANSACTION');
      await first.query('SELECT 1 / 0').catch(() => undefined);
      await first.query('ROLLBACK');
      first.release();
      const second = await pool.connect();
      const again = (await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      second.release();
      expect(again).toBe(pid);
    } finally {
      await pool.end();
    }
  });

  it('bounds the wait for a free connection by the deadline of the work that asked, and by the configured bound without one', async () => {
    const driver = new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 300 });
    const pool = poolOf(driver, { connectionString: databaseUrlFor('postgres'), max: 1 });
    const holder = await pool.connect();
    const ctx = RequestContext.start('driver-e2e', 200);
    try {
      const started = Date.now();
      const withDeadline = await runWithDeadline(ctx, () => pool.connect()).then(
        () => 'connected',
        (error: unknown) => error,
      );
      const waited = Date.now() - started;
      const background = await pool.connect().then(() => 'connected', (error: unknown) => error);

      expect(withDeadline).toBeInstanceOf(RequestTimeoutError);
      expect(background).toBeInstanceOf(PoolCheckoutTimeoutError);
      expect(isConnectionError(background)).toBe(false);
      expect(waited).toBeLessThan(2_000);
      // The connection that was waited for was not lost: it is free once its holder is done.
      holder.release();
      const next = await pool.connect();
      next.release();
      expect(pool.totalCount).toBe(1);
      expect(driver.usage()).toEqual({ inUse: 0, idle: 1, waiting: 0 });
    } finally {
      ctx.release();
      await pool.end();
    }
  });

  it('lets work without a deadline open a new connection as slowly as the connect timeout allows, past the checkout bound', async () => {
    // The checkout bound is for a busy pool: at start-up (TypeORM's first connection, the
    // migrations) a bound shorter than opening a connection would keep the service from ever
    // connecting on a loaded machine.
    const driver = new PgDriver({ connectTimeoutMs: 5_000, maxCheckoutWaitMs: 50 });
    const url = new URL(databaseUrlFor('postgres', proxy.hostPort));
    const pool = poolOf(driver, { connectionString: url.toString(), max: 1 });
    try {
      proxy.blackhole();
      const opening = pool.connect().then((client) => (client.release(), 'connected'), (error: unknown) => error);
      await new Promise((resolve) => setTimeout(resolve, 300));
      proxy.pass();
      expect(await opening).toBe('connected');
    } finally {
      proxy.pass();
      await pool.end();
    }
  });

  it('survives a connection error on a checked-out connection nobody listens to yet, and never pools that connection again', async () => {
    // pg-pool takes its own error listener off a connection it hands out; whoever checked it out
    // adds one a moment later. An error in between (a FATAL read with the same packet as the
    // connection's readiness, a backend terminated) had no listener and ended the process.
    const driver = new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 5_000 });
    const pool = poolOf(driver, { connectionString: databaseUrlFor('postgres'), max: 1 });
    try {
      const client = await pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await withDatabase('postgres', (admin) => admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]));
      await expect(client.query('SELECT 1')).rejects.toThrow();
      client.release();
      const next = await pool.connect();
      expect((await next.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).not.toBe(rows[0]!.pid);
      next.release();
      expect(pool.totalCount).toBe(1);
    } finally {
      await pool.end();
    }
  });

  it('prepares a parameterised statement once per connection, outside transactions only', async () => {
    const driver = new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 5_000 });
    const pool = poolOf(driver, { connectionString: databaseUrlFor('postgres'), max: 1 });
    try {
      const client = await pool.connect();
      await client.query('SELECT $1::int AS n', [1]);
      await client.query('START TRANSACTION');
      await client.query('SELECT $1::int + 1 AS n', [1]);
      await client.query('COMMIT');
      const { rows } = await client.query<{ name: string; statement: string }>(
        "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'taskd_%' ORDER BY name",
      );
      client.release();
      expect(rows).toEqual([{ name: driver.statementName('SELECT $1::int AS n'), statement: 'SELECT $1::int AS n' }]);
    } finally {
      await pool.end();
    }
  });
});
