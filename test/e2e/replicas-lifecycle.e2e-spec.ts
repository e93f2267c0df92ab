/**
 * Replicas that leave, crash and come back, as real processes (test/support/replicas.ts):
 *
 * - a replica SIGTERM'd during a PostgreSQL outage and never restarted hands its writes to the
 *   Redis stream (Redis with an append-only file, `appendfsync always`, a server of the test's
 *   own), and the other replica applies every one of them once its PostgreSQL answers;
 * - with a Redis that keeps nothing on disk, the replica keeps its writes on its volume instead,
 *   and the drain command empties that retained volume into PostgreSQL;
 * - a replica SIGKILL'd during the outage and restarted on its volume loses nothing and applies
 *   nothing twice;
 * - the same Idempotency-Key through two replicas during the outage gives one task; with Redis
 *   down as well, two ids that both find it;
 * - with Redis down and the replicas' clocks 800 ms apart, an update right after its task's
 *   create wins through the replica whose clock runs behind, directly or from the buffers; an
 *   update accepted without Redis waits for its create, even once Redis is back; a create
 *   buffered without Redis is recorded as pending once Redis answers.
 *
 * CI budget: 150 s
 */
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { FaultProxy } from '../support/fault-proxy.js';
import { startRedis, type OwnRedis } from '../support/redis-server.js';
import { Client, ReplicaSet, type Replica } from '../support/replicas.js';
import { runOperatorCommand, type CommandRun } from '../support/operator-command.js';
import { databaseUrlFor, REDIS_URL, withDatabase } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(120_000);

const TASKS = '/api/v1/tasks';

interface StoredTask {
  id: string;
  title: string;
  status: string;
  version: number;
}

async function tasksOf(set: ReplicaSet, userId: string): Promise<StoredTask[]> {
  return withDatabase(set.databaseName, async (client) => {
    const { rows } = await client.query<StoredTask>(
      'SELECT id, title, status, version FROM tasks WHERE user_id = $1 ORDER BY title',
      [userId],
    );
    return rows;
  });
}

async function idOf(response: { status: number; body: unknown }): Promise<string> {
  expect([201, 202]).toContain(response.status);
  return (response.body as { id: string }).id;
}

/** Runs the operator command against a replica's volume, with the replica's environment. */
function cli(set: ReplicaSet, replica: Replica, args: string[]): Promise<CommandRun> {
  return runOperatorCommand(args, {
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrlFor(set.databaseName),
    REDIS_URL,
    REDIS_KEY_PREFIX: set.redisKeyPrefix,
    BUFFER_PATH: replica.bufferPath,
    JWT_SECRET: set.jwtSecret,
    LOG_LEVEL: 'silent',
  });
}

/** Writes through `replica` while its PostgreSQL is cut: a create, an update and a delete of earlier tasks. */
async function writeDuringOutage(client: Client, replica: Replica, updated: string, deleted: string): Promise<string> {
  const created = await client.send(replica, 'POST', TASKS, { title: 'created while cut' });
  expect(created.status).toBe(202);
  expect((await client.send(replica, 'PATCH', `${TASKS}/${updated}`, { status: 'done' })).status).toBe(202);
  expect((await client.send(replica, 'DELETE', `${TASKS}/${deleted}`)).status).toBe(202);
  return (created.body as { id: string }).id;
}

describe('a replica that leaves during an outage, with a durable Redis (e2e)', () => {
  let redis: OwnRedis;
  let set: ReplicaSet;

  beforeAll(async () => {
    redis = await startRedis({ durable: true });
    set = await ReplicaSet.start({ count: 2, redisUrl: redis.url });
  }, 90_000);

  afterAll(async () => {
    await set?.close();
    await redis?.stop();
  });

  it('hands its unapplied writes to the others on SIGTERM, which apply them once', async () => {
    const [a, b] = [set.get(0), set.get(1)];
    const client = await Client.signUp(b, 'erin');
    const kept = await idOf(await client.send(b, 'POST', TASKS, { title: 'kept, updated while cut' }));
    const doomed = await idOf(await client.send(b, 'POST', TASKS, { title: 'deleted while cut' }));
    a.cut();
    const created = await writeDuringOutage(client, a, kept, doomed);

    const exit = await a.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    await set.drained(60_000, [1]);
    const stream = new Redis(redis.url, { keyPrefix: set.redisKeyPrefix });
    try {
      // Taken and applied by B: nothing left in the stream, nothing on A's volume.
      await waitUntil('B has applied the handed-off writes', async () => (await stream.xlen('buffer:handoff')) === 0 && (await tasksOf(set, client.userId)).length === 2);
    } finally {
      stream.disconnect();
    }
    expect(await tasksOf(set, client.userId)).toEqual([
      { id: created, title: 'created while cut', status: 'todo', version: 1 },
      { id: kept, title: 'kept, updated while cut', status: 'done', version: 2 },
    ]);
    const status = await cli(set, a, ['buffer', 'status']);
    expect(status.lines[0]).toMatchObject({ queued: 0, parked: 0 });
  });
});

describe('replicas whose Redis keeps nothing on disk (e2e)', () => {
  let set: ReplicaSet;

  beforeAll(async () => {
    set = await ReplicaSet.start({ count: 2 });
  }, 90_000);

  afterAll(async () => {
    await set?.close();
  });

  it('keeps the writes on the volume of a replica SIGTERM’d during the outage, and the drain command applies them', async () => {
    const [a, b] = [set.get(0), set.get(1)];
    const client = await Client.signUp(b, 'frank');
    const kept = await idOf(await client.send(b, 'POST', TASKS, { title: 'kept, updated while cut' }));
    const doomed = await idOf(await client.send(b, 'POST', TASKS, { title: 'deleted while cut' }));
    a.cut();
    const created = await writeDuringOutage(client, a, kept, doomed);

    expect(await a.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(a.output()).toMatch(/writes not handed off: they stay on this volume/);
    expect((await cli(set, a, ['buffer', 'status'])).lines[0]).toMatchObject({ queued: 3 });
    expect(await tasksOf(set, client.userId)).toHaveLength(2);

    // The ordinal never comes back: an operator drains its retained volume.
    const drained = await cli(set, a, ['buffer', 'drain', '--timeout-seconds', '60']);
    expect({ code: drained.code, last: drained.lines.at(-1) }).toEqual({
      code: 0,
      last: expect.objectContaining({ outcome: 'drained', queued: 0, parked: 0 }),
    });
    expect(await tasksOf(set, client.userId)).toEqual([
      { id: created, title: 'created while cut', status: 'todo', version: 1 },
      { id: kept, title: 'kept, updated while cut', status: 'done', version: 2 },
    ]);
    await a.start();
  });

  it('loses nothing and applies nothing twice after a SIGKILL during the outage and a restart on the same volume', async () => {
    const a = set.get(0);
    const client = await Client.signUp(set.get(1), 'gina');
    const ids: string[] = [];
    a.cut();
    for (let n = 0; n < 10; n += 1) ids.push(await idOf(await client.send(a, 'POST', TASKS, { title: `task ${n}` })));
    for (const id of ids.slice(0, 5)) expect((await client.send(a, 'PATCH', `${TASKS}/${id}`, { status: 'done' })).status).toBe(202);

    expect((await a.stop('SIGKILL')).signal).toBe('SIGKILL');
    await a.start();
    a.restore();
    await set.drained();

    expect(await tasksOf(set, client.userId)).toEqual(
      ids.map((id, n) => ({ id, title: `task ${n}`, status: n < 5 ? 'done' : 'todo', version: n < 5 ? 2 : 1 })),
    );
  });

  it('answers the same task for the same Idempotency-Key through two replicas during the outage', async () => {
    const [a, b] = [set.get(0), set.get(1)];
    const client = await Client.signUp(b, 'hugo');
    a.cut();
    b.cut();
    let first: string;
    try {
      first = await idOf(await client.send(a, 'POST', TASKS, { title: 'once' }, { 'idempotency-key': 'same-key' }));
      const retry = await client.send(b, 'POST', TASKS, { title: 'once' }, { 'idempotency-key': 'same-key' });
      expect({ status: retry.status, id: await idOf(retry), replayed: retry.headers.get('idempotent-replayed') }).toEqual({
        status: 202,
        id: first,
        replayed: 'true',
      });
    } finally {
      a.restore();
      b.restore();
    }
    await set.drained();
    expect((await tasksOf(set, client.userId)).map((task) => task.id)).toEqual([first]);
    for (const replica of [a, b]) expect((await client.send(replica, 'GET', `${TASKS}/${first}`)).status).toBe(200);
  });
});

describe('replicas with Redis down as well (e2e)', () => {
  let redisProxy: FaultProxy;
  let set: ReplicaSet;

  beforeAll(async () => {
    redisProxy = await FaultProxy.towards(REDIS_URL);
    set = await ReplicaSet.start({ count: 2, redisUrl: `redis://${redisProxy.hostPort}/0` });
  }, 90_000);

  afterAll(async () => {
    await set?.close();
    await redisProxy?.close();
  });

  it('keeps one task for the same Idempotency-Key through two replicas, and both ids it answered find it', async () => {
    const [a, b] = [set.get(0), set.get(1)];
    const client = await Client.signUp(b, 'ines');
    a.cut();
    b.cut();
    redisProxy.cut();
    let ids: string[];
    try {
      ids = [
        await idOf(await client.send(a, 'POST', TASKS, { title: 'once, without Redis' }, { 'idempotency-key': 'k-no-redis' })),
        await idOf(await client.send(b, 'POST', TASKS, { title: 'once, without Redis' }, { 'idempotency-key': 'k-no-redis' })),
      ];
    } finally {
      redisProxy.pass();
      a.restore();
      b.restore();
    }
    await set.drained();
    const stored = await tasksOf(set, client.userId);
    expect(stored).toHaveLength(1);
    for (const [n, id] of ids.entries()) {
      const found = await client.send(set.get(n), 'GET', `${TASKS}/${id}`);
      expect({ status: found.status, id: (found.body as { id: string }).id }).toEqual({ status: 200, id: stored[0]!.id });
    }
  });
});

describe('replicas whose clocks disagree, with Redis down (e2e)', () => {
  let redisProxy: FaultProxy;
  let set: ReplicaSet;
  let client: Client;

  // Within CLOCK_SKEW_MAX_MS: replica 0 runs 400 ms ahead, replica 1 400 ms behind.
  beforeAll(async () => {
    redisProxy = await FaultProxy.towards(REDIS_URL);
    set = await ReplicaSet.start({ count: 2, redisUrl: `redis://${redisProxy.hostPort}/0`, clockSkewMs: [400, -400] });
    // Signed up while Redis answers (logins are throttled through it).
    client = await Client.signUp(set.get(0), 'skew');
  }, 90_000);

  afterAll(async () => {
    await set?.close();
    await redisProxy?.close();
  });

  afterEach(() => {
    redisProxy.pass();
    for (const replica of [set.get(0), set.get(1)]) replica.restore();
  });

  /** A column of the stored task `id`, undefined when no such task is stored. */
  async function storedColumn(id: string, column: 'title' | 'status' | 'priority'): Promise<unknown> {
    const { rows } = await withDatabase(set.databaseName, (db) => db.query(`SELECT ${column} AS value FROM tasks WHERE id = $1`, [id]));
    return rows[0]?.value;
  }

  /** Cuts both replicas from PostgreSQL and Redis from both, then creates a task through the one ahead (queued). */
  async function createWithAllDown(title: string): Promise<string> {
    set.get(0).cut();
    set.get(1).cut();
    redisProxy.cut();
    const created = await client.send(set.get(0), 'POST', TASKS, { title });
    expect(created.status).toBe(202);
    return (created.body as { id: string }).id;
  }

  /** Gives PostgreSQL back to the replica behind alone: it replays, and its update of the task waits (parked) for the create. */
  async function parkedBehind(): Promise<void> {
    set.get(1).restore();
    await set.until('park the update', 30_000, (state) => state.postgres === 'up' && state.depth === 0, [1]);
    expect(await set.get(1).buffer()).toMatchObject({ parked: 1, setAside: 0 });
  }

  // A create comes before every write of its task, whatever the clocks say: its fields take no
  // position, so an update positioned by a clock that runs behind still wins over them.
  it('applies an update made right after the create through the replica whose clock runs behind', async () => {
    const [ahead, behind] = [set.get(0), set.get(1)];
    redisProxy.cut();
    const created = await client.send(ahead, 'POST', TASKS, { title: 'as created' });
    expect(created.status).toBe(201);
    const { id } = created.body as { id: string };

    const updated = await client.send(behind, 'PATCH', `${TASKS}/${id}`, { title: 'as edited' });

    expect({ status: updated.status, title: (updated.body as { title: string }).title }).toEqual({ status: 200, title: 'as edited' });
    expect((await client.send(ahead, 'GET', `${TASKS}/${id}`)).body).toMatchObject({ title: 'as edited', version: 2 });
    expect(await storedColumn(id, 'title')).toBe('as edited');
  });

  it('does the same when both writes wait in the replicas\' buffers, whichever replays first', async () => {
    const id = await createWithAllDown('as created offline');
    expect((await client.send(set.get(1), 'PATCH', `${TASKS}/${id}`, { title: 'as edited offline' })).status).toBe(202);

    await parkedBehind();
    set.get(0).restore();
    await set.drained();

    expect(await storedColumn(id, 'title')).toBe('as edited offline');
  });

  // The create could not be recorded as pending (Redis was down when it was buffered), and its
  // replica is down when Redis comes back, so nobody records it: Redis says the task is pending
  // nowhere when the update is replayed. The update was positioned without Redis, so Redis may
  // not know of its task: it waits for the create. Restarted, the create's replica records the
  // creates it finds in its buffer, and replays them.
  it('keeps an update made without Redis until its create lands, though Redis is back and knows nothing of the create', async () => {
    const [ahead, behind] = [set.get(0), set.get(1)];
    const id = await createWithAllDown('created while all was down');
    expect((await client.send(behind, 'PATCH', `${TASKS}/${id}`, { status: 'done' })).status).toBe(202);
    await ahead.stop('SIGKILL');

    redisProxy.pass();
    await waitUntil('Redis answers the replica behind', async () => (await redisStatus(behind)) === 'up', 15_000);
    await parkedBehind();
    ahead.restore();
    await ahead.start();
    await set.drained();

    expect(await storedColumn(id, 'status')).toBe('done');
  });

  // Redis comes back while PostgreSQL is still down: the create buffered without it is recorded
  // as pending then, so an update made through another replica after Redis's return (positioned
  // by Redis) waits for it instead of being set aside as a write of a task that exists nowhere.
  it('records a create buffered without Redis as pending once Redis answers, so later updates through another replica wait for it', async () => {
    const id = await createWithAllDown('created before Redis came back');

    redisProxy.pass();
    const redis = new Redis(REDIS_URL);
    try {
      const pending = `${set.redisKeyPrefix}{u:${client.userId}}:pending`;
      await waitUntil('the create is recorded as pending', async () => (await redis.hget(pending, id)) !== null, 15_000);
    } finally {
      redis.disconnect();
    }
    expect((await client.send(set.get(1), 'PATCH', `${TASKS}/${id}`, { priority: 'high' })).status).toBe(202);
    await parkedBehind();
    set.get(0).restore();
    await set.drained();

    expect(await storedColumn(id, 'priority')).toBe(3);
  });
});

async function redisStatus(replica: Replica): Promise<string | undefined> {
  const ready = (await (await replica.fetch('/health/ready')).json()) as { details?: { redis?: { status?: string } } };
  return ready.details?.redis?.status;
}
