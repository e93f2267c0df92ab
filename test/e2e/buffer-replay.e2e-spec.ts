/**
 * The write buffer end to end: the real app, PostgreSQL behind a fault-injection proxy, and a
 * test-only operation kind (`probe.append`, registered like a feature module registers its
 * kinds) that appends a row to a scratch table. The scratch table has no unique constraint, so
 * an operation applied twice shows as two rows.
 */
import { jest } from '@jest/globals';
import { RequestContext } from '../../src/common/context/request-context.js';
import { ServiceUnavailableError } from '../../src/common/errors/domain-errors.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import type { EntityManager } from 'typeorm';
import { AppliedOperations } from '../../src/modules/buffer/applied-operations.js';
import { PermanentOperationError } from '../../src/modules/buffer/buffer.errors.js';
import { BufferService } from '../../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { createOperation, type BufferedOperation } from '../../src/modules/buffer/operation.js';
import { OperationRegistry } from '../../src/modules/buffer/operation-registry.js';
import { WritePath, type WriteOutcome } from '../../src/modules/buffer/write-path.js';
import { FaultProxy } from '../support/fault-proxy.js';
import {
  dropDatabase,
  PG_URL,
  startTestApp,
  withDatabase,
  type TestApp,
  type TestAppOptions,
} from '../support/test-app.js';
import pg from 'pg';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const USER_ID = '0190c0de-0000-7000-8000-00000000e2e0';
const PROBE = 'probe.append';
const REJECT = 'probe.reject';
/** A value the scratch table's CHECK constraint refuses: SQLSTATE 23514 at replay. */
const IMPOSSIBLE = 'impossible';

interface Probe {
  t: TestApp;
  database: PostgresAvailability;
  buffer: LmdbBuffer;
  service: BufferService;
  /** Routes one `probe.append` write through the write path, as a use case would. */
  write(value: string, options?: { dedupeKey?: string }): Promise<WriteOutcome<string>>;
  /** Routes a write whose replay handler declares it impossible. */
  writeRejected(value: string): Promise<WriteOutcome<string>>;
  /** The scratch table, in insertion order, read directly (not through the proxy). */
  rows(): Promise<{ opId: string; value: string }[]>;
  ready(): Promise<{ status: number; body: ReadinessBody }>;
}

interface ReadinessBody {
  status: string;
  details: Record<string, { status: string } & Record<string, unknown>>;
}

async function appendRow(
  manager: EntityManager,
  op: BufferedOperation<{ value: string }>,
): Promise<void> {
  // Idempotent, as every handler must be: applied twice, it has no further effect.
  await manager.query('INSERT INTO buffer_probe (op_id, value) VALUES ($1, $2) ON CONFLICT (op_id) DO NOTHING', [
    op.id,
    op.payload.value,
  ]);
}

async function createScratchTable(databaseName: string): Promise<void> {
  await withDatabase(databaseName, (client) =>
    client.query(`
      CREATE TABLE IF NOT EXISTS buffer_probe (
        seq   bigserial PRIMARY KEY,
        op_id uuid NOT NULL UNIQUE,
        value text NOT NULL CHECK (value <> '${IMPOSSIBLE}')
      )`),
  );
}

/** Registers the test kinds, as a feature module would in onModuleInit. */
function registerProbeKinds(t: TestApp): void {
  const registry = t.app.get(OperationRegistry);
  registry.register<{ value: string }>(PROBE, appendRow);
  registry.register<{ value: string }>(REJECT, async () => {
    throw new PermanentOperationError('this probe can never apply');
  });
}

function probeFor(t: TestApp): Probe {
  const writePath = t.app.get(WritePath);
  const route = async (kind: string, value: string, options?: { dedupeKey?: string }) => {
    const ctx = RequestContext.start(`e2e-${value}`, t.config.http.requestTimeoutMs);
    ctx.userId = USER_ID;
    try {
      const op = createOperation(ctx, kind, { value });
      return await writePath.execute(
        ctx,
        op,
        async (manager) => {
          if (kind === REJECT) throw new PermanentOperationError('this probe can never apply');
          await appendRow(manager, op);
          return value;
        },
        options,
      );
    } finally {
      ctx.release();
    }
  };
  return {
    t,
    database: t.app.get(PostgresAvailability),
    buffer: t.app.get(LmdbBuffer),
    service: t.app.get(BufferService),
    write: (value, options) => route(PROBE, value, options),
    writeRejected: (value) => route(REJECT, value),
    rows: () =>
      withDatabase(t.databaseName, async (client) => {
        const { rows } = await client.query<{ op_id: string; value: string }>(
          'SELECT op_id, value FROM buffer_probe ORDER BY seq',
        );
        return rows.map((row) => ({ opId: row.op_id, value: row.value }));
      }),
    ready: async () => {
      const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
      return { status: res.statusCode, body: res.json() as ReadinessBody };
    },
  };
}

function bufferedValues(buffer: LmdbBuffer): string[] {
  return buffer.getBatch(10_000).map((entry) => (entry.op.payload as { value: string }).value);
}

describe('write buffer and replay (e2e)', () => {
  let proxy: FaultProxy;
  const apps: TestApp[] = [];

  beforeEach(async () => {
    proxy = await FaultProxy.towards(PG_URL);
  });

  afterEach(async () => {
    proxy.pass();
    for (const t of apps.splice(0)) await t.close();
    await proxy.close();
  });

  /** The real app with DATABASE_URL through the proxy, PostgreSQL up, the probe kinds registered. */
  async function start(options: TestAppOptions = {}): Promise<Probe> {
    const t = await startTestApp({
      databaseHostPort: proxy.hostPort,
      ...options,
      env: { REQUEST_TIMEOUT_MS: '3000', BUFFER_REPLAY_BATCH: '5', ...options.env },
    });
    apps.push(t);
    await createScratchTable(t.databaseName);
    registerProbeKinds(t);
    return probeFor(t);
  }

  describe('the fault proxy', () => {
    async function connect(timeoutMs = 1_000): Promise<pg.Client> {
      const url = new URL(PG_URL);
      url.host = proxy.hostPort;
      const client = new pg.Client({
        connectionString: url.toString(),
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
      });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    }

    it('passes, refuses, resets and black-holes connections on command', async () => {
      const held = await connect();
      await expect(held.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });

      proxy.refuse();
      await expect(connect()).rejects.toThrow(/terminated|closed|ECONNRESET/i);
      await expect(held.query('SELECT 2 AS two')).resolves.toMatchObject({ rows: [{ two: 2 }] });

      proxy.reset();
      await expect(held.query('SELECT 3')).rejects.toThrow();
      expect(proxy.openConnections).toBe(0);

      proxy.blackhole();
      await expect(connect(500)).rejects.toThrow(/timeout/i);

      proxy.pass();
      const client = await connect();
      proxy.blackhole();
      const late = client.query('SELECT 4 AS four');
      const settled = await Promise.race([
        late.then(
          () => 'answered',
          () => 'failed',
        ),
        new Promise((r) => setTimeout(() => r('pending'), 300)),
      ]);
      expect(settled).toBe('pending');
      proxy.pass();
      await expect(late).resolves.toMatchObject({ rows: [{ four: 4 }] });
      await client.end();
      await held.end().catch(() => undefined);
    });
  });

  it('buffers writes while PostgreSQL refuses connections, stays ready, and replays them in order exactly once when it returns', async () => {
    const p = await start();
    await expect(p.write('direct-before')).resolves.toEqual({
      mode: 'direct',
      result: 'direct-before',
    });

    proxy.cut();
    // The breaker is still closed: this write tries PostgreSQL, fails on the dead connection,
    // opens the breaker and is buffered.
    expect(p.database.isUp()).toBe(true);
    const firstDown = await p.write('down-0');
    expect(firstDown.mode).toBe('buffered');
    expect(p.database.isUp()).toBe(false);

    for (let n = 1; n < 20; n += 1) expect((await p.write(`down-${n}`)).mode).toBe('buffered');
    // Concurrent writes: their relative order is whatever the buffer recorded, and replay keeps it.
    const burst = await Promise.all(Array.from({ length: 30 }, (_, n) => p.write(`burst-${n}`)));
    expect(burst.every((outcome) => outcome.mode === 'buffered')).toBe(true);
    const accepted = bufferedValues(p.buffer);
    expect(accepted).toHaveLength(50);
    expect(accepted.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, n) => `down-${n}`));

    const ready = await p.ready();
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({
      status: 'ok',
      details: {
        postgres: { status: 'down' },
        buffer: {
          status: 'up',
          state: 'accepting',
          depth: 50,
          oldestAgeMs: expect.any(Number),
          deadLetters: 0,
        },
      },
    });
    expect(await p.rows()).toEqual([expect.objectContaining({ value: 'direct-before' })]);

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);

    const rows = await p.rows();
    expect(rows.map((row) => row.value)).toEqual(['direct-before', ...accepted]);
    expect(new Set(rows.map((row) => row.opId)).size).toBe(rows.length);
    expect(p.service.stats()).toMatchObject({
      depth: 0,
      bufferedTotal: 50,
      replayedTotal: 50,
      deadLetteredTotal: 0,
    });

    // Drained: writes go straight to PostgreSQL again.
    await expect(p.write('direct-after')).resolves.toEqual({
      mode: 'direct',
      result: 'direct-after',
    });
    expect((await p.rows()).at(-1)?.value).toBe('direct-after');
    expect((await p.ready()).body.details.postgres!.status).toBe('up');
  });

  it('buffers while PostgreSQL is black-holed, and replays once the network heals', async () => {
    const p = await start();
    proxy.blackhole();
    // Readiness pings PostgreSQL with a short bound; the unanswered ping opens the breaker.
    const ready = await p.ready();
    expect(ready.status).toBe(200);
    expect(ready.body.details.postgres!.status).toBe('down');
    expect(p.database.isUp()).toBe(false);

    for (let n = 0; n < 12; n += 1) expect((await p.write(`hole-${n}`)).mode).toBe('buffered');
    expect(await p.rows()).toEqual([]);

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);
    expect((await p.rows()).map((row) => row.value)).toEqual(
      Array.from({ length: 12 }, (_, n) => `hole-${n}`),
    );
  });

  it('leaves no duplicate when a replay is interrupted between the database commit and the removal from LMDB', async () => {
    const p = await start();
    proxy.cut();
    for (let n = 0; n < 12; n += 1) await p.write(`crash-${n}`);
    const remove = jest
      .spyOn(p.buffer, 'remove')
      .mockRejectedValueOnce(new Error('simulated crash before removal'));

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);

    const rows = await p.rows();
    expect(rows.map((row) => row.value)).toEqual(
      Array.from({ length: 12 }, (_, n) => `crash-${n}`),
    );
    expect(new Set(rows.map((row) => row.opId)).size).toBe(12);
    // The first batch (5) was committed, not removed, then found applied and only removed.
    expect(p.service.stats()).toMatchObject({ replayedTotal: 12, alreadyAppliedTotal: 5 });
    expect(remove.mock.calls.length).toBeGreaterThanOrEqual(4);
  });

  it('sets an impossible operation aside with its error, and applies the ones behind it', async () => {
    const p = await start();
    proxy.cut();
    for (const value of ['a', 'b', IMPOSSIBLE, 'c']) await p.write(value);
    await p.writeRejected('rejected');
    await p.write('d');

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);

    expect((await p.rows()).map((row) => row.value)).toEqual(['a', 'b', 'c', 'd']);
    const letters = p.buffer.listDeadLetters();
    expect(
      letters.map((letter) => [
        letter.op.kind,
        (letter.op.payload as { value: string }).value,
        letter.error.code,
      ]),
    ).toEqual([
      [PROBE, IMPOSSIBLE, '23514'],
      [REJECT, 'rejected', undefined],
    ]);
    expect(letters[1]!.error).toMatchObject({
      name: 'PermanentOperationError',
      message: 'this probe can never apply',
    });
    expect(p.service.stats()).toMatchObject({ deadLetteredTotal: 2, replayedTotal: 4 });
    const ready = await p.ready();
    expect(ready.status).toBe(200);
    expect(ready.body.details.buffer).toMatchObject({ status: 'up', depth: 0, deadLetters: 2 });
  });

  it('answers 503 with Retry-After when the buffer is full, and fails readiness while PostgreSQL is down too', async () => {
    const p = await start({ env: { BUFFER_MAX_ENTRIES: '3' } });
    proxy.cut();
    for (const value of ['x', 'y', 'z']) expect((await p.write(value)).mode).toBe('buffered');

    const refused = p.write('one-too-many');
    await expect(refused).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(refused).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      retryAfterSeconds: expect.any(Number),
    });

    const full = await p.ready();
    expect(full.status).toBe(503);
    expect(full.body).toMatchObject({
      status: 'error',
      details: {
        postgres: { status: 'down' },
        buffer: { status: 'down', state: 'full', depth: 3 },
      },
    });

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);
    const recovered = await p.ready();
    expect(recovered.status).toBe(200);
    expect(recovered.body.details.buffer).toMatchObject({
      status: 'up',
      state: 'accepting',
      depth: 0,
    });
    expect((await p.rows()).map((row) => row.value)).toEqual(['x', 'y', 'z']);
  });

  it('returns the first operation for a retried buffered write with the same idempotency key', async () => {
    const p = await start();
    proxy.cut();
    const first = await p.write('once', { dedupeKey: 'idem-1' });
    const retry = await p.write('once-again', { dedupeKey: 'idem-1' });
    expect(first).toMatchObject({ mode: 'buffered', duplicate: false });
    expect(retry).toMatchObject({ mode: 'buffered', duplicate: true });
    expect(retry.mode === 'buffered' && first.mode === 'buffered' && retry.op).toEqual(
      first.mode === 'buffered' && first.op,
    );
    expect(p.buffer.depth).toBe(1);

    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);
    expect((await p.rows()).map((row) => row.value)).toEqual(['once']);
  });

  it('finds what it accepted after a restart and drains it once PostgreSQL answers', async () => {
    const first = await start();
    proxy.cut();
    for (let n = 0; n < 7; n += 1) await first.write(`kept-${n}`);
    // Shut down with PostgreSQL unreachable: the last replay cannot run, the entries stay on disk.
    await first.t.close({ keepDatabase: true, keepBuffer: true });
    apps.splice(apps.indexOf(first.t), 1);

    // Started while PostgreSQL is still cut, so the test kinds are registered before any replay.
    const second = await start({
      databaseName: first.t.databaseName,
      bufferPath: first.t.bufferPath,
      waitForDatabase: false,
    });
    expect(second.buffer.depth).toBe(7);
    expect((await second.ready()).body.details.buffer).toMatchObject({ status: 'up', depth: 7 });

    proxy.pass();
    await waitUntil('the buffer is drained', () => second.buffer.depth === 0, 25_000);
    expect((await second.rows()).map((row) => row.value)).toEqual(
      Array.from({ length: 7 }, (_, n) => `kept-${n}`),
    );
  });

  it('records replayed writes in the exactly-once ledger (a direct write, idempotent by contract, needs none), and prunes old records', async () => {
    const p = await start();
    const direct = await p.write('ledger-direct');
    proxy.cut();
    await p.write('ledger-buffered');
    proxy.pass();
    await waitUntil('the buffer is drained', () => p.buffer.depth === 0, 25_000);
    const ledger = () =>
      withDatabase(p.t.databaseName, async (client) =>
        (await client.query<{ id: string }>('SELECT id FROM buffer_applied_operations')).rows.map(
          (row) => row.id,
        ),
      );
    const rows = await p.rows();
    expect(rows.map((row) => row.value)).toEqual(['ledger-direct', 'ledger-buffered']);
    expect(await ledger()).toEqual([rows[1]!.opId]);
    expect(direct.mode).toBe('direct');

    const applied = p.t.app.get(AppliedOperations);
    const ctx = RequestContext.background('e2e-prune', 5_000);
    try {
      await expect(applied.prune(ctx, 3_600_000)).resolves.toBe(0);
      expect(await ledger()).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 20));
      await expect(applied.prune(ctx, 0)).resolves.toBe(1);
      expect(await ledger()).toEqual([]);
    } finally {
      ctx.release();
    }
  });

  it('replays what is left one last time on shutdown, before LMDB and the pool close', async () => {
    // Scheduled replay effectively off: only the shutdown replay can apply these.
    const p = await start({ env: { BUFFER_REPLAY_INTERVAL_MS: '3600000' } });
    const ctx = RequestContext.start('e2e-shutdown', 5_000);
    ctx.userId = USER_ID;
    const ops = ['last-0', 'last-1', 'last-2'].map((value) =>
      createOperation(ctx, PROBE, { value }),
    );
    ctx.release();
    for (const op of ops) await p.buffer.add(op);
    await new Promise((r) => setTimeout(r, 300));
    expect(await p.rows()).toEqual([]);

    await p.t.close({ keepDatabase: true });
    apps.splice(apps.indexOf(p.t), 1);
    try {
      expect(await p.rows()).toEqual(ops.map((op) => ({ opId: op.id, value: op.payload.value })));
    } finally {
      await dropDatabase(p.t.databaseName);
    }
  });
});
