/**
 * A create applied directly whose answer the client never got, retried with the same
 * Idempotency-Key while PostgreSQL is down.
 *
 * - Within the key's reservation (ten minutes, kept in Redis), the retry answers the task the key
 *   holds: same id, `Idempotent-Replayed: true`, and nothing new is queued.
 * - Once the reservation has gone (expired, or Redis lost it), the instance cannot see the key is
 *   taken: the retry is queued (202) under a new id, and the client changes or deletes the task by
 *   that id, also queued. At replay the key's task is the one the client meant: the retry's id
 *   becomes an alias of it, and the queued update and delete apply to it instead of being set
 *   aside or lost.
 */
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, REDIS_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const TASKS = '/api/v1/tasks';

describe('an idempotent create retried while PostgreSQL is down (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({ databaseHostPort: proxy.hostPort });
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  it('answers the task the key holds while its reservation lives, and queues nothing for it', async () => {
    const user = await registerAndLogin(t.app);
    const post = () =>
      t.app.inject({ method: 'POST', url: TASKS, headers: { ...user.auth, 'idempotency-key': 'plan' }, payload: { title: 'Plan' } });
    const created = await post();
    expect(created.statusCode).toBe(201);

    proxy.cut();
    try {
      const retried = await post();
      expect(retried.statusCode).toBe(202);
      expect(retried.headers['idempotent-replayed']).toBe('true');
      expect(retried.json()).toEqual(created.json());
      expect(t.app.get(LmdbBuffer).depth).toBe(0);
    } finally {
      proxy.pass();
    }
    const database = t.app.get(PostgresAvailability);
    await waitUntil('PostgreSQL back', () => database.isUp());
    const again = await post();
    expect([again.statusCode, again.headers['idempotent-replayed']]).toEqual([201, 'true']);
    expect(again.json()).toEqual(created.json());
  });

  it('does not answer with a create that was reserved but never written (its replica died first): the key is taken over', async () => {
    const user = await registerAndLogin(t.app);
    const phantom = '01a24d00-0000-7000-8000-000000000001';
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    try {
      await redis.connect();
      // What a replica leaves when it dies between positioning a keyed create and writing it.
      await redis.hset(`${t.databaseName}:{u:${user.userId}}:keys`, {
        'k:lost': JSON.stringify({ id: phantom, task: JSON.stringify({ id: phantom, title: 'never written' }), confirmed: false, expiresAt: String(Date.now() + 600_000) }),
        [`t:${phantom}`]: 'lost',
      });
    } finally {
      redis.disconnect();
    }
    const post = () =>
      t.app.inject({ method: 'POST', url: TASKS, headers: { ...user.auth, 'idempotency-key': 'lost' }, payload: { title: 'Written' } });

    proxy.cut();
    let queued: { id: string; title: string };
    try {
      const answered = await post();
      expect([answered.statusCode, answered.headers['idempotent-replayed']]).toEqual([202, undefined]);
      queued = answered.json();
      expect(queued).toMatchObject({ title: 'Written' });
      expect(queued.id).not.toBe(phantom);
      // Its retry, now that the key is confirmed for it, answers the same task.
      const retried = await post();
      expect([retried.statusCode, retried.headers['idempotent-replayed'], retried.json()]).toEqual([202, 'true', queued]);
    } finally {
      proxy.pass();
    }
    const buffer = t.app.get(LmdbBuffer);
    const database = t.app.get(PostgresAvailability);
    await waitUntil('the buffer drained', () => database.isUp() && buffer.depth === 0);
    const found = await t.app.inject({ method: 'GET', url: `${TASKS}/${queued.id}`, headers: user.auth });
    expect([found.statusCode, found.json().title]).toEqual([200, 'Written']);
  });

  it("applies the queued update and delete of the retry's id to the task its key holds, once its reservation has gone", async () => {
    const user = await registerAndLogin(t.app);
    const post = (key: string, title: string) =>
      t.app.inject({ method: 'POST', url: TASKS, headers: { ...user.auth, 'idempotency-key': key }, payload: { title } });
    // Applied directly; say the answers were lost on their way to the client.
    const kept = (await post('report', 'Write the report')).json<{ id: string }>().id;
    const dropped = (await post('groceries', 'Buy groceries')).json<{ id: string }>().id;
    // Ten minutes later, as far as Redis knows: the reservations have expired.
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    try {
      await redis.connect();
      await redis.del(`${t.databaseName}:{u:${user.userId}}:keys`);
    } finally {
      redis.disconnect();
    }

    proxy.cut();
    const retried = await post('report', 'Write the report');
    const retriedToo = await post('groceries', 'Buy groceries');
    expect([retried.statusCode, retriedToo.statusCode]).toEqual([202, 202]);
    const [alias, aliasToo] = [retried.json<{ id: string }>().id, retriedToo.json<{ id: string }>().id];
    expect([alias === kept, aliasToo === dropped]).toEqual([false, false]);
    const patched = await t.app.inject({ method: 'PATCH', url: `${TASKS}/${alias}`, headers: user.auth, payload: { status: 'done' } });
    const deleted = await t.app.inject({ method: 'DELETE', url: `${TASKS}/${aliasToo}`, headers: user.auth });
    expect([patched.statusCode, deleted.statusCode]).toEqual([202, 202]);

    proxy.pass();
    const database = t.app.get(PostgresAvailability);
    const buffer = t.app.get(LmdbBuffer);
    await waitUntil('the buffer drained', () => database.isUp() && buffer.depth === 0);

    expect(buffer.deadLetterCount).toBe(0);
    const rows = await withDatabase(t.databaseName, async (client) =>
      (await client.query('SELECT id, title, status, idempotency_key FROM tasks WHERE user_id = $1 ORDER BY title', [user.userId])).rows,
    );
    expect(rows).toEqual([{ id: kept, title: 'Write the report', status: 'done', idempotency_key: 'report' }]);
    const aliases = await withDatabase(t.databaseName, async (client) =>
      (await client.query('SELECT id, task_id FROM task_aliases WHERE user_id = $1', [user.userId])).rows,
    );
    // The deleted task's alias went with it.
    expect(aliases).toEqual([{ id: alias, task_id: kept }]);
  });
});
