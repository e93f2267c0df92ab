/**
 * Write-buffer figures:
 *   1. durable `LmdbBuffer.add` throughput (each add resolves only once flushed to disk), one at a
 *      time and with many in flight, as concurrent requests would;
 *   2. replay drain rate into PostgreSQL through the real app (needs PostgreSQL and Redis, as the
 *      e2e suites do), in operations applied per second: a queue of task creates as `POST /tasks`
 *      buffers them (applied a run at a time by the multi-row handler), and for comparison a kind
 *      with a single-row handler only (one round trip per operation).
 *
 *   node_modules/.bin/node --import ./bench/support/register-ts.mjs bench/buffer.bench.ts
 */
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import type { EntityManager } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { BufferService } from '../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../src/modules/buffer/lmdb-buffer.js';
import type { BufferedOperation } from '../src/modules/buffer/operation.js';
import { OperationRegistry } from '../src/modules/buffer/operation-registry.js';
import { TASK_CREATE } from '../src/modules/tasks/task-operations.js';
import { startTestApp, withDatabase, type TestApp } from '../test/support/test-app.js';

const USER_ID = '0190c0de-0000-7000-8000-00000000be00';

/** About the size of a buffered task create. */
function taskOperation(n: number): BufferedOperation<Record<string, unknown>> {
  const now = new Date().toISOString();
  return {
    id: uuidv7(),
    kind: 'bench.append',
    userId: USER_ID,
    payload: {
      id: uuidv7(),
      title: `Task number ${n}: write the quarterly report`,
      description: 'Collect the figures from every team, check them, and send the summary.',
      status: 'todo',
      priority: 'medium',
      dueAt: null,
      createdAt: now,
      updatedAt: now,
      version: 1,
    },
    acceptedAt: now,
    requestId: `bench-${n}`,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function durableAdds(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-buffer-'));
  const root = open({ path: dir, maxDbs: 16, overlappingSync: true, compression: false });
  const buffer = new LmdbBuffer(root, { maxEntries: 1_000_000, maxBytes: 1024 ** 3 });
  try {
    const sequential = 1_000;
    const latencies: number[] = [];
    const seqStart = performance.now();
    for (let n = 0; n < sequential; n += 1) {
      const started = performance.now();
      await buffer.add(taskOperation(n));
      latencies.push(performance.now() - started);
    }
    const seqSeconds = (performance.now() - seqStart) / 1_000;
    latencies.sort((a, b) => a - b);
    console.log(
      `durable add, 1 in flight:  ${Math.round(sequential / seqSeconds)} ops/s` +
        `  (p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms, ${sequential} ops)`,
    );

    for (const inFlight of [16, 64, 256]) {
      const total = 20_000;
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < total) await buffer.add(taskOperation((next += 1)));
        }),
      );
      const seconds = (performance.now() - started) / 1_000;
      console.log(
        `durable add, ${String(inFlight).padStart(3)} in flight: ${Math.round(total / seconds)} ops/s  (${total} ops)`,
      );
    }
    console.log(`  entry size ≈ ${Math.round(buffer.bytes / buffer.depth)} bytes`);
  } finally {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Drains `total` queued operations made by `make` into PostgreSQL through the real app and its
 * registered handlers, and checks with `count` that each is there once.
 */
async function drain(
  label: string,
  batch: number,
  total: number,
  prepare: (t: TestApp) => Promise<(n: number) => BufferedOperation>,
  count: (t: TestApp) => Promise<number>,
): Promise<void> {
  const t = await startTestApp({
    env: {
      BUFFER_REPLAY_INTERVAL_MS: '3600000',
      BUFFER_REPLAY_BATCH: String(batch),
      LOG_LEVEL: 'warn',
    },
  });
  try {
    const make = await prepare(t);
    const buffer = t.app.get(LmdbBuffer);
    for (let n = 0; n < total; n += 1_000) {
      await Promise.all(
        Array.from({ length: Math.min(1_000, total - n) }, (_, i) => buffer.add(make(n + i))),
      );
    }
    const started = performance.now();
    while (buffer.depth > 0) {
      const report = await t.app.get(BufferService).replay();
      if (report.stoppedBy) throw new Error(`replay stopped: ${report.stoppedBy}`);
    }
    const seconds = (performance.now() - started) / 1_000;
    const stored = await count(t);
    if (stored !== total) throw new Error(`expected ${total} rows, found ${stored}`);
    const opsPerSecond = Math.round(total / seconds);
    console.log(
      `replay drain, ${label}, batch ${String(batch).padStart(4)}: ${opsPerSecond} ops/s  (${total} ops into PostgreSQL)`,
    );
  } finally {
    await t.close();
  }
}

/** Buffered `POST /tasks` as the app queues them, applied by the `task.create` handlers. */
async function taskCreates(t: TestApp): Promise<(n: number) => BufferedOperation> {
  await withDatabase(t.databaseName, (client) =>
    client.query(
      `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
       VALUES ($1, 'bench@example.test', 'Bench', 'x', now(), now())`,
      [USER_ID],
    ),
  );
  return (n) => {
    const op = taskOperation(n);
    return {
      ...op,
      kind: TASK_CREATE,
      payload: { ...op.payload, userId: USER_ID, idempotencyKey: n % 2 === 0 ? `key-${n}` : null },
    };
  };
}

/** A kind with a single-row handler only: one INSERT round trip per operation. */
async function singleRowKind(t: TestApp): Promise<(n: number) => BufferedOperation> {
  await withDatabase(t.databaseName, (client) =>
    client.query(
      `CREATE TABLE bench_tasks (id uuid PRIMARY KEY, user_id uuid NOT NULL, title text NOT NULL, body jsonb NOT NULL)`,
    ),
  );
  t.app
    .get(OperationRegistry)
    .register<{ id: string; title: string }>('bench.append', async (db: EntityManager, op) => {
      await db.query(
        'INSERT INTO bench_tasks (id, user_id, title, body) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
        [op.payload.id, op.userId, op.payload.title, JSON.stringify(op.payload)],
      );
    });
  return taskOperation;
}

const countRows = (table: string) => async (t: TestApp) =>
  withDatabase(t.databaseName, async (client) => {
    const { rows } = await client.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM ${table}`,
    );
    return rows[0]!.count;
  });

async function replayDrain(): Promise<void> {
  for (const batch of [500, 1_000, 2_000]) {
    await drain('task.create (multi-row)', batch, 20_000, taskCreates, countRows('tasks'));
  }
  await drain('one INSERT per op     ', 500, 10_000, singleRowKind, countRows('bench_tasks'));
}

await durableAdds();
await replayDrain();
