/**
 * A replica's buffer defended against one user, end to end, with PostgreSQL cut by a fault proxy
 * (the shared server itself is never stopped) and small configured shares so that it runs fast:
 *
 * - a user past their share of the buffer's entries, and another past their share of its bytes,
 *   get 429 RATE_LIMITED with Retry-After, while a third user's writes still get 202;
 * - 1,000 updates and deletes of tasks that never existed, accepted with 202 during the outage,
 *   are all set aside once PostgreSQL returns, within DRAIN_BOUND_MS (readiness details and
 *   /metrics count them), and the other user's writes queued behind them are visible within
 *   VISIBILITY_BOUND_MS (measured figures: `npm run bench:drain`, docs/performance.md);
 * - the set-aside store keeps within BUFFER_SET_ASIDE_MAX_ENTRIES: the oldest are dropped, each
 *   with a log line, and counted in /metrics;
 * - with the server closed, the operator command (`node dist/src/cli.js buffer set-aside …`, the
 *   built command in a child process with the server's environment and BUFFER_PATH) lists the
 *   set-aside writes, retries one (applied by the next drain once its task is back; a retried
 *   write that still cannot apply is set aside again), drops others, and refuses to retry an
 *   operation accepted longer ago than WRITE_RETENTION;
 * - task tombstones older than WRITE_RETENTION are pruned, on an hourly schedule.
 *
 * The tests run in order on one server and its buffer: each starts from what the one before left.
 * Requests go over real HTTP.
 *
 * CI budget: 60 s
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { jest } from '@jest/globals';
import { SchedulerRegistry } from '@nestjs/schedule';
import { TaskTombstonePruner } from '../../src/modules/tasks/task-tombstone-pruner.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import {
  databaseUrlFor,
  dropDatabase,
  PG_URL,
  REDIS_URL,
  startTestApp,
  withDatabase,
  type TestApp,
} from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';
import { runOperatorCommand } from '../support/operator-command.js';

jest.setTimeout(120_000);

const TASKS = '/api/v1/tasks';

/** The stated bound: 1,000 impossible writes set aside, from PostgreSQL's return (its detection included). */
const DRAIN_BOUND_MS = 15_000;
/** The stated bound: another user's writes queued behind them readable, from PostgreSQL's return. */
const VISIBILITY_BOUND_MS = 10_000;

const BOGUS = 1_000;
const USER_MAX_BYTES = 1024 * 1024;
const SET_ASIDE_MAX_ENTRIES = BOGUS;
/** The buffer's configuration, shared by the server and the operator command. */
const BUFFER_ENV = {
  BUFFER_USER_MAX_ENTRIES: String(BOGUS),
  BUFFER_USER_MAX_BYTES: String(USER_MAX_BYTES),
  BUFFER_SET_ASIDE_MAX_ENTRIES: String(SET_ASIDE_MAX_ENTRIES),
};
const CONCURRENCY = 25;

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

interface LogLine {
  level: number;
  msg: string;
  key?: number;
  opId?: string;
  kind?: string;
  userId?: string;
}

interface Letter {
  key: number;
  kind: string;
  opId: string;
  userId: string;
  error: { name: string; message: string };
  payload?: { id: string; changes?: Record<string, unknown> };
}

describe('a buffer one user cannot starve (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;
  let closed = false;
  const logs: LogLine[] = [];
  let flooder: TestUser;
  let heavy: TestUser;
  let other: TestUser;
  /** The other user's task, updated during the outage, then lost and restored by an operator. */
  let restored: string;

  beforeAll(async () => {
    const target = new URL(PG_URL);
    proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    t = await startTestApp({
      databaseHostPort: proxy.hostPort,
      listen: true,
      env: { ...BUFFER_ENV, LOG_LEVEL: 'warn', REQUEST_TIMEOUT_MS: '5000' },
      logDestination: { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) },
    });
    [flooder, heavy, other] = [await registerAndLogin(t.app), await registerAndLogin(t.app), await registerAndLogin(t.app)];
  });

  afterAll(async () => {
    proxy?.pass();
    if (t && !closed) await t.close();
    else if (t) {
      await dropDatabase(t.databaseName);
      rmSync(t.bufferPath, { recursive: true, force: true });
    }
    await proxy?.close();
  });

  async function send(user: TestUser, method: string, path: string, body?: object): Promise<Answer> {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: { ...user.auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  /** Sends `count` requests made by `make`, `CONCURRENCY` at a time; resolves with their statuses. */
  async function flood(count: number, make: (n: number) => Promise<Answer>): Promise<number[]> {
    const statuses: number[] = [];
    for (let start = 0; start < count; start += CONCURRENCY) {
      const wave = Array.from({ length: Math.min(CONCURRENCY, count - start) }, (_, i) => make(start + i));
      statuses.push(...(await Promise.all(wave)).map((answer) => answer.status));
    }
    return statuses;
  }

  /** A task id nobody ever created: PATCH for even n, DELETE for odd n. */
  function bogus(n: number): Promise<Answer> {
    return n % 2 === 0
      ? send(flooder, 'PATCH', `${TASKS}/${randomUUID()}`, { title: `never there ${n}` })
      : send(flooder, 'DELETE', `${TASKS}/${randomUUID()}`);
  }

  async function readiness(): Promise<{ status: number; buffer: Record<string, unknown>; postgres: string }> {
    const res = await fetch(`${t.url}/health/ready`);
    const body = (await res.json()) as { details: Record<string, { status: string } & Record<string, unknown>> };
    return { status: res.status, buffer: body.details.buffer!, postgres: body.details.postgres!.status };
  }

  async function metrics(): Promise<Record<string, number>> {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const values: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const match = /^(taskd_buffer_\w+) (\S+)$/.exec(line);
      if (match) values[match[1]!] = Number(match[2]);
    }
    return values;
  }

  async function cutDatabase(): Promise<void> {
    proxy.cut();
    await waitUntil('the server sees PostgreSQL down', async () => (await readiness()).postgres === 'down');
  }

  async function drained(timeoutMs: number): Promise<void> {
    await waitUntil(
      'the buffer holds nothing',
      async () => {
        const { buffer, postgres } = await readiness();
        return postgres === 'up' && buffer.depth === 0 && buffer.parked === 0;
      },
      timeoutMs,
    );
  }

  function expectRateLimited(answer: Answer): void {
    expect({ status: answer.status, code: answer.body.code }).toEqual({ status: 429, code: 'RATE_LIMITED' });
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
  }

  function expectBuffered(answer: Answer): void {
    expect({ status: answer.status, writeStatus: answer.headers.get('x-write-status') }).toEqual({
      status: 202,
      writeStatus: 'buffered',
    });
  }

  it('refuses a user past their share with 429 while others still get 202; 1,000 impossible writes are set aside and others\' writes behind them applied', async () => {
    const kept = await send(other, 'POST', TASKS, { title: 'kept' });
    expect(kept.status).toBe(201);
    const keptId = kept.body.id as string;
    await cutDatabase();

    // Past the share of entries: the 1,001st write of the flooder, whatever its kind.
    const statuses = await flood(BOGUS, bogus);
    expect(statuses.filter((status) => status === 202)).toHaveLength(BOGUS);
    expectRateLimited(await bogus(BOGUS));
    expectRateLimited(await send(flooder, 'POST', TASKS, { title: 'one more' }));

    // Past the share of bytes (1 MiB): creates of about 9.3 KB each, far fewer than the entries share.
    const description = 'x'.repeat(9_000);
    const heavyStatuses = await flood(150, (n) => send(heavy, 'POST', TASKS, { title: `heavy ${n}`, description }));
    const accepted = heavyStatuses.filter((status) => status === 202).length;
    expect(heavyStatuses.filter((status) => status !== 202 && status !== 429)).toEqual([]);
    expect(accepted).toBeGreaterThan(USER_MAX_BYTES / 10_000);
    expect(accepted).toBeLessThan(USER_MAX_BYTES / 9_000);
    expectRateLimited(await send(heavy, 'POST', TASKS, { title: 'heavy, once more', description }));

    // Another user is not affected by either, and the replica stays ready.
    const created = await send(other, 'POST', TASKS, { title: 'created while cut' });
    expectBuffered(created);
    expectBuffered(await send(other, 'PATCH', `${TASKS}/${keptId}`, { status: 'done' }));
    expect((await readiness()).status).toBe(200);
    const refused = (await metrics()).taskd_buffer_share_refused_total!;
    expect(refused).toBe(2 + heavyStatuses.length - accepted + 1);

    const returned = Date.now();
    proxy.pass();
    const createdId = created.body.id as string;
    await waitUntil(
      "the other user's writes are visible",
      async () => {
        const [task, updated] = [await send(other, 'GET', `${TASKS}/${createdId}`), await send(other, 'GET', `${TASKS}/${keptId}`)];
        return task.status === 200 && updated.body.status === 'done';
      },
      VISIBILITY_BOUND_MS - (Date.now() - returned),
    );
    await drained(DRAIN_BOUND_MS - (Date.now() - returned));

    const { buffer } = await readiness();
    expect(buffer).toMatchObject({ status: 'up', depth: 0, parked: 0, setAside: BOGUS });
    expect(await metrics()).toMatchObject({
      taskd_buffer_set_aside: BOGUS,
      taskd_buffer_dead_lettered_total: BOGUS,
      taskd_buffer_set_aside_dropped_total: 0,
      taskd_buffer_depth: 0,
      taskd_buffer_holding_writes: 0,
    });
    const setAside = logs.filter((line) => line.msg === 'buffered operation set aside: it can never apply');
    expect(setAside).toHaveLength(BOGUS);
    expect(new Set(setAside.map((line) => line.userId))).toEqual(new Set([flooder.userId]));
    const stored = await withDatabase(t.databaseName, async (client) => {
      const { rows } = await client.query<{ user_id: string; n: number }>(
        'SELECT user_id, count(*)::int AS n FROM tasks GROUP BY user_id',
      );
      return Object.fromEntries(rows.map((row) => [row.user_id, row.n]));
    });
    expect(stored).toEqual({ [heavy.userId]: accepted, [other.userId]: 2 });
  });

  it('keeps the set-aside writes within their bound: the oldest are dropped, logged and counted', async () => {
    const oldest = logs
      .filter((line) => line.msg === 'buffered operation set aside: it can never apply')
      .map((line) => line.key!)
      .sort((a, b) => a - b);
    const task = await send(other, 'POST', TASKS, { title: 'to be restored' });
    expect(task.status).toBe(201);
    restored = task.body.id as string;
    await withDatabase(t.databaseName, (client) =>
      client.query('CREATE TABLE restore_from_backup AS SELECT * FROM tasks WHERE id = $1', [restored]),
    );
    await cutDatabase();

    // The share is free again: set-aside writes do not count against it.
    expect((await flood(5, bogus)).every((status) => status === 202)).toBe(true);
    expectBuffered(await send(other, 'PATCH', `${TASKS}/${restored}`, { title: 'edited while cut' }));
    // Meanwhile the row is lost (removed by hand, so no tombstone): the update can never apply.
    await withDatabase(t.databaseName, (client) => client.query('DELETE FROM tasks WHERE id = $1', [restored]));
    proxy.pass();
    await drained(DRAIN_BOUND_MS);

    expect((await readiness()).buffer).toMatchObject({ setAside: SET_ASIDE_MAX_ENTRIES });
    expect(await metrics()).toMatchObject({
      taskd_buffer_set_aside: SET_ASIDE_MAX_ENTRIES,
      taskd_buffer_dead_lettered_total: BOGUS + 6,
      taskd_buffer_set_aside_dropped_total: 6,
    });
    const dropped = logs.filter((line) => line.msg === 'set-aside operation dropped: the set-aside store is at its bounds');
    expect(dropped.map((line) => line.key)).toEqual(oldest.slice(0, 6));
    for (const line of dropped) expect(line).toMatchObject({ userId: flooder.userId, kind: expect.stringMatching(/^task\.(update|delete)$/) });
  });

  it('prunes task tombstones older than WRITE_RETENTION, on an hourly schedule', async () => {
    expect(t.app.get(SchedulerRegistry).doesExist('interval', 'task-tombstone-prune')).toBe(true);
    const ids: string[] = [];
    for (const title of ['deleted long ago', 'deleted just now']) {
      const task = await send(other, 'POST', TASKS, { title });
      expect(task.status).toBe(201);
      ids.push(task.body.id as string);
      expect((await send(other, 'DELETE', `${TASKS}/${ids.at(-1)}`)).status).toBe(204);
    }
    const [old, recent] = ids as [string, string];
    const tombstones = () =>
      withDatabase(t.databaseName, async (client) => {
        const { rows } = await client.query<{ id: string }>('SELECT id FROM task_tombstones WHERE id = ANY($1) ORDER BY id', [ids]);
        return rows.map((row) => row.id);
      });
    expect(await tombstones()).toEqual([...ids].sort());
    await withDatabase(t.databaseName, (client) =>
      client.query("UPDATE task_tombstones SET deleted_at = now() - interval '7 days 1 minute' WHERE id = $1", [old]),
    );

    await expect(t.app.get(TaskTombstonePruner).prune()).resolves.toBe(1);
    expect(await tombstones()).toEqual([recent]);
  });

  it('lets an operator list, retry and drop set-aside writes on a buffer no server holds, and refuses a retry past WRITE_RETENTION', async () => {
    await t.app.close();
    closed = true;
    const env = (extra: Record<string, string> = {}) => ({
      NODE_ENV: 'test',
      DATABASE_URL: databaseUrlFor(t.databaseName),
      REDIS_URL,
      REDIS_KEY_PREFIX: `${t.databaseName}:`,
      BUFFER_PATH: t.bufferPath,
      LOG_LEVEL: 'silent',
      ...BUFFER_ENV,
      ...extra,
    });
    const cli = (args: string[], extra?: Record<string, string>) => runOperatorCommand(['buffer', ...args], env(extra));

    const listed = await cli(['set-aside', 'list', '--limit', '2000']);
    expect(listed.code).toBe(0);
    const letters = listed.lines as unknown as Letter[];
    expect(letters).toHaveLength(SET_ASIDE_MAX_ENTRIES);
    for (const letter of letters) {
      expect(Object.keys(letter).sort()).toEqual(['acceptedAt', 'error', 'key', 'kind', 'opId', 'setAsideAt', 'userId']);
      expect(letter.error).toMatchObject({ name: 'PermanentOperationError', message: expect.any(String) });
    }
    expect(new Set(letters.map((letter) => letter.kind))).toEqual(new Set(['task.update', 'task.delete']));
    expect(letters.filter((letter) => letter.userId === other.userId)).toHaveLength(1);

    const withPayload = (await cli(['set-aside', 'list', '--limit', '2000', '--payload'])).lines as unknown as Letter[];
    const lost = withPayload.find((letter) => letter.userId === other.userId)!;
    expect(lost).toMatchObject({ kind: 'task.update', payload: { id: restored, changes: { title: 'edited while cut' } } });
    expect(lost.error.message).toContain(`task ${restored} does not exist`);
    const [stillBogus, dropA, dropB, tooOld] = letters.filter((letter) => letter.userId === flooder.userId).map((l) => l.key);

    // Past WRITE_RETENTION (1 s here: every one of them is older), a retry is refused and nothing moves.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const refused = await cli(['set-aside', 'retry', String(tooOld)], { WRITE_RETENTION: '1s' });
    expect(refused.code).toBe(1);
    expect(refused.lines).toEqual([{ key: tooOld, outcome: 'refused', reason: expect.stringContaining('WRITE_RETENTION') }]);

    // The operator restores the lost row from a backup, then retries its update, and one that still cannot apply.
    await withDatabase(t.databaseName, (client) => client.query('INSERT INTO tasks SELECT * FROM restore_from_backup'));
    const retried = await cli(['set-aside', 'retry', String(lost.key), String(stillBogus)]);
    expect(retried).toEqual({ code: 0, lines: [{ key: lost.key, outcome: 'queued' }, { key: stillBogus, outcome: 'queued' }] });
    const dropped = await cli(['set-aside', 'drop', String(dropA), String(dropB)]);
    expect(dropped).toEqual({ code: 0, lines: [{ key: dropA, outcome: 'dropped' }, { key: dropB, outcome: 'dropped' }] });
    const again = await cli(['set-aside', 'drop', String(dropA)]);
    expect(again).toEqual({ code: 1, lines: [{ key: dropA, outcome: 'not-found' }] });
    expect((await cli(['status'])).lines[0]).toMatchObject({ queued: 2, parked: 0, setAside: SET_ASIDE_MAX_ENTRIES - 4 });

    const drain = await cli(['drain', '--timeout-seconds', '60']);
    expect(drain).toEqual({
      code: 0,
      lines: [{ outcome: 'drained', handedOff: 0, queued: 0, parked: 0, setAside: SET_ASIDE_MAX_ENTRIES - 3 }],
    });
    // The restored task has its update; the impossible write is set aside again, under its key.
    const row = await withDatabase(t.databaseName, async (client) => {
      const { rows } = await client.query<{ title: string; version: number }>('SELECT title, version FROM tasks WHERE id = $1', [restored]);
      return rows[0];
    });
    expect(row).toEqual({ title: 'edited while cut', version: 2 });
    const after = (await cli(['set-aside', 'list', '--limit', '2000'])).lines as unknown as Letter[];
    const keys = after.map((letter) => letter.key);
    expect(keys).toEqual(expect.arrayContaining([stillBogus, tooOld]));
    expect(keys).not.toContain(lost.key);
    expect(keys).not.toContain(dropA);
    expect(keys).not.toContain(dropB);
    expect(after.find((letter) => letter.key === stillBogus)?.opId).toBe(letters.find((letter) => letter.key === stillBogus)?.opId);
  });
});
