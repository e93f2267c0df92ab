/**
 * A replay transaction whose statement outlives the pool's client-side `query_timeout`
 * (REQUEST_TIMEOUT_MS + 1 s): here the network stalls for a few seconds while the exactly-once
 * claim is in flight, then heals (the fault proxy's `blackhole()`, then `pass()`). `pg` gives up
 * on the client side only; the statement keeps running on the server and the ROLLBACK queued
 * behind it times out too. Such a connection must be closed, not pooled: pooled, the next
 * replay's transaction ran inside the orphaned one, found its own operation "already claimed",
 * committed the claim and removed the entry, and the 202-acknowledged update was lost.
 */
import { jest } from '@jest/globals';
import type { LightMyRequestResponse } from 'fastify';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { AppliedOperations } from '../../src/modules/buffer/applied-operations.js';
import { BufferService } from '../../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(90_000);

const TASKS = '/api/v1/tasks';

describe.each(['1', '10'])('replay statement past the query timeout, pool size %s (e2e)', (poolSize) => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({
      databaseHostPort: proxy.hostPort,
      // query_timeout = REQUEST_TIMEOUT_MS + 1000 = 2.5 s; with one connection the reuse is certain,
      // with the default ten pg-pool's LIFO idle list reuses the orphan all the same.
      env: { REQUEST_TIMEOUT_MS: '1500', DATABASE_POOL_SIZE: poolSize },
    });
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  it('applies a 202-acknowledged update even when the network stalls during its replay', async () => {
    const user = await registerAndLogin(t.app);
    const send = (method: 'POST' | 'PATCH', url: string, payload: object): Promise<LightMyRequestResponse> =>
      t.app.inject({ method, url, headers: user.auth, payload: payload as Record<string, unknown> });

    const created = await send('POST', TASKS, { title: 'original' });
    expect(created.statusCode).toBe(201);
    const taskId = created.json<{ id: string }>().id;

    const database = t.app.get(PostgresAvailability);
    const buffer = t.app.get(LmdbBuffer);
    const service = t.app.get(BufferService);

    // PostgreSQL goes away; the update is accepted into the buffer.
    proxy.cut();
    await waitUntil('the app sees PostgreSQL down', async () => {
      await t.app.inject({ method: 'GET', url: '/health/ready' });
      return !database.isUp();
    }, 40_000);
    const patched = await send('PATCH', `${TASKS}/${taskId}`, { title: 'buffered' });
    expect({ status: patched.statusCode, writeStatus: patched.headers['x-write-status'] }).toEqual({
      status: 202,
      writeStatus: 'buffered',
    });
    const [entry] = buffer.getBatch(10);
    const opId = entry!.op.id;

    // When PostgreSQL returns, the network stalls for 6 s exactly while the first replay's claim
    // is in flight, then heals (TCP delivers what waited, as after a partition).
    const applied = t.app.get(AppliedOperations);
    const claim = applied.claim.bind(applied);
    let stalled = false;
    jest.spyOn(applied, 'claim').mockImplementation(async (manager, ids) => {
      if (!stalled) {
        stalled = true;
        proxy.blackhole();
        setTimeout(() => proxy.pass(), 6_000);
      }
      return claim(manager, ids);
    });
    const before = service.stats();
    proxy.pass();
    try {
      await waitUntil('the buffer is drained', () => stalled && database.isUp() && buffer.depth === 0, 60_000);
    } finally {
      jest.restoreAllMocks();
    }
    const after = service.stats();

    const [task, ledger] = await withDatabase(t.databaseName, async (client) => {
      const { rows } = await client.query<{ title: string; version: number }>(
        'SELECT title, version FROM tasks WHERE id = $1',
        [taskId],
      );
      const claimed = await client.query('SELECT 1 FROM buffer_applied_operations WHERE id = $1', [opId]);
      return [rows[0], claimed.rowCount] as const;
    });
    expect({
      task,
      ledgerHasOp: ledger,
      replayed: after.replayedTotal - before.replayedTotal,
      alreadyApplied: after.alreadyAppliedTotal - before.alreadyAppliedTotal,
    }).toEqual({ task: { title: 'buffered', version: 2 }, ledgerHasOp: 1, replayed: 1, alreadyApplied: 0 });
  });
});
