/**
 * Writes while PostgreSQL is down, end to end over HTTP, with PostgreSQL cut by a fault proxy
 * (the shared server itself is never stopped):
 *
 * - a model-based property test (fast-check): with PostgreSQL cut, generated sequences of 200
 *   mixed writes (creates with and without idempotency keys, retries of those keys, updates of
 *   stored and of still-buffered tasks, updates of tasks deleted meanwhile or of someone else's,
 *   deletes, profile renames) all answer 202 with the shapes of the contract; everything that
 *   must read PostgreSQL answers 503 with Retry-After; readiness stays 200. Once the proxy
 *   passes again, the database holds exactly what a model of those writes predicts: the same
 *   tasks with the same fields, versions and times (so each change applied once, in order),
 *   impossible ones (an update of a task deleted before it, a write of someone else's task)
 *   set aside, no duplicate;
 * - an idempotency key used directly after its buffered create was replayed;
 * - an impossible operation in the dead-letter store, counted, not blocking those behind it;
 * - a replay interrupted between the database commit and the removal from the buffer;
 * - the built server killed with SIGKILL while holding buffered writes, then started again.
 */
import { jest } from '@jest/globals';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { BufferService } from '../../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import {
  freePort,
  spawnServer,
  waitForStatus,
  type ServerProcess,
} from '../support/server-process.js';
import {
  databaseUrlFor,
  dropDatabase,
  PG_URL,
  REDIS_URL,
  startTestApp,
  uniqueName,
  withDatabase,
  type TestApp,
} from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(120_000);

const TASKS = '/api/v1/tasks';
const PROFILE = '/api/v1/profile';
const OPERATIONS_PER_RUN = 200;
const RUNS = 3;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const PRIORITY_OF_RANK = ['', 'low', 'medium', 'high'];

type Status = 'todo' | 'in_progress' | 'done';
type Priority = 'low' | 'medium' | 'high';

interface TaskFields {
  title: string;
  description: string | null;
  status: Status;
  priority: Priority;
  dueAt: string | null;
}

type CreateBody = Pick<TaskFields, 'title'> & Partial<TaskFields>;
type Patch = Partial<TaskFields>;

interface TaskBody extends TaskFields {
  id: string;
  createdAt: string;
  updatedAt: string;
  version: number;
}

interface ReadinessBody {
  status: string;
  details: Record<string, { status: string } & Record<string, unknown>>;
}

// ------------------------------------------------------------------ helpers

function send(
  t: TestApp,
  user: TestUser | undefined,
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
  url: string,
  payload?: object,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method,
    url,
    headers: { ...(user?.auth ?? {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
}

function expectBuffered(res: LightMyRequestResponse): void {
  expect({ status: res.statusCode, writeStatus: res.headers['x-write-status'] }).toEqual({
    status: 202,
    writeStatus: 'buffered',
  });
}

/** 503 SERVICE_UNAVAILABLE as a problem, with a Retry-After a client can act on. */
function expectUnavailable(res: LightMyRequestResponse, what: string): void {
  expect({ what, status: res.statusCode }).toEqual({ what, status: 503 });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.json()).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
}

async function readiness(t: TestApp): Promise<{ status: number; body: ReadinessBody }> {
  const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
  return { status: res.statusCode, body: res.json<ReadinessBody>() };
}

/** Cuts PostgreSQL at the proxy and waits until the app knows it (readiness pings it). */
async function cutDatabase(t: TestApp, proxy: FaultProxy): Promise<void> {
  proxy.cut();
  await waitUntil('the app sees PostgreSQL down', async () => {
    const { body } = await readiness(t);
    return body.details.postgres?.status === 'down';
  });
}

/** Lets PostgreSQL through again and waits until the buffer has been replayed. */
async function restoreAndDrain(t: TestApp, proxy: FaultProxy): Promise<void> {
  proxy.pass();
  const database = t.app.get(PostgresAvailability);
  const buffer = t.app.get(LmdbBuffer);
  await waitUntil('the buffer is replayed', () => database.isUp() && buffer.depth === 0);
}

function db<T>(t: TestApp, work: (client: import('pg').Client) => Promise<T>): Promise<T> {
  return withDatabase(t.databaseName, work);
}

async function ledgerSize(t: TestApp): Promise<number> {
  return db(t, async (client) => {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM buffer_applied_operations',
    );
    return rows[0]!.n;
  });
}

interface StoredTask extends TaskBody {
  owner: string;
  idempotencyKey: string | null;
}

async function storedTasks(t: TestApp, owners: string[]): Promise<StoredTask[]> {
  return db(t, async (client) => {
    const { rows } = await client.query<{
      id: string;
      user_id: string;
      title: string;
      description: string | null;
      status: Status;
      priority: number;
      due_at: Date | null;
      created_at: Date;
      updated_at: Date;
      version: number;
      idempotency_key: string | null;
    }>('SELECT * FROM tasks WHERE user_id = ANY($1) ORDER BY id', [owners]);
    return rows.map((row) => ({
      id: row.id,
      owner: row.user_id,
      title: row.title,
      description: row.description,
      status: row.status,
      priority: PRIORITY_OF_RANK[row.priority] as Priority,
      dueAt: row.due_at && row.due_at.toISOString(),
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
      version: row.version,
      idempotencyKey: row.idempotency_key,
    }));
  });
}

async function storedUsers(
  t: TestApp,
  ids: string[],
): Promise<Array<{ id: string; name: string; version: number }>> {
  return db(t, async (client) => {
    const { rows } = await client.query<{ id: string; name: string; version: number }>(
      'SELECT id, name, version FROM users WHERE id = ANY($1)',
      [ids],
    );
    return ids.map((id) => rows.find((row) => row.id === id)!);
  });
}

// ------------------------------------------------------------------ the model

interface ModelTask extends TaskBody {
  owner: number;
  key: string | null;
  deleted: boolean;
  /** What its create answered: a retry with the same key answers the same. */
  created: TaskBody;
}

class OfflineModel {
  readonly tasks: ModelTask[] = [];
  /** `${owner}:${key}` → the task its first create made. */
  readonly keys = new Map<string, ModelTask>();
  readonly renames: number[];
  /** Distinct operations queued (a deduplicated retry queues nothing). */
  queued = 0;
  /** `${user}:${task id}` of the deletes queued: a second delete of a task while its first waits is that one. */
  readonly deletes = new Set<string>();
  /** Queued operations that can never apply: set aside at replay. */
  impossible = 0;

  constructor(readonly names: string[]) {
    this.renames = names.map(() => 0);
  }

  add(owner: number, body: TaskBody, key: string | null): void {
    const task: ModelTask = { ...body, owner, key, deleted: false, created: body };
    this.tasks.push(task);
    if (key !== null) this.keys.set(`${owner}:${key}`, task);
  }

  keysOf(owner: number): string[] {
    return [...this.keys.values()].filter((task) => task.owner === owner).map((task) => task.key!);
  }

  tasksOf(owner: number): ModelTask[] {
    return this.tasks.filter((task) => task.owner === owner);
  }
}

interface Real {
  t: TestApp;
  users: TestUser[];
}

type KeyChoice =
  { kind: 'none' } | { kind: 'fresh'; key: string } | { kind: 'retry'; pick: number };

class CreateTask implements fc.AsyncCommand<OfflineModel, Real> {
  constructor(
    readonly user: number,
    readonly body: CreateBody,
    readonly key: KeyChoice,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: OfflineModel, real: Real): Promise<void> {
    const key = this.keyToSend(model);
    const res = await send(
      real.t,
      real.users[this.user],
      'POST',
      TASKS,
      this.body,
      key === undefined ? {} : { 'idempotency-key': key },
    );
    expectBuffered(res);
    const body = res.json<TaskBody>();
    expect(res.headers.location).toBe(`${TASKS}/${body.id}`);
    expect(res.headers.etag).toBeUndefined();
    const earlier = key === undefined ? undefined : model.keys.get(`${this.user}:${key}`);
    if (earlier) {
      expect(body).toEqual(earlier.created);
      expect(res.headers['idempotent-replayed']).toBe('true');
      return;
    }
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(body).toEqual({
      id: expect.stringMatching(UUID_V7),
      title: this.body.title,
      description: this.body.description ?? null,
      status: this.body.status ?? 'todo',
      priority: this.body.priority ?? 'medium',
      dueAt: this.body.dueAt ?? null,
      createdAt: expect.stringMatching(ISO_MS),
      updatedAt: body.createdAt,
      version: 1,
    });
    expect(model.tasks.some((task) => task.id === body.id)).toBe(false);
    model.add(this.user, body, key ?? null);
    model.queued += 1;
  }

  private keyToSend(model: OfflineModel): string | undefined {
    if (this.key.kind === 'none') return undefined;
    if (this.key.kind === 'fresh') return this.key.key;
    const used = model.keysOf(this.user);
    return used.length === 0 ? undefined : used[this.key.pick % used.length];
  }

  toString(): string {
    return `create(user ${this.user}, ${JSON.stringify(this.body)}, ${JSON.stringify(this.key)})`;
  }
}

class UpdateTask implements fc.AsyncCommand<OfflineModel, Real> {
  constructor(
    readonly user: number,
    readonly pick: number,
    readonly patch: Patch,
    /** Aimed at the other user's task: ownership must keep it from ever applying. */
    readonly foreign: boolean,
  ) {}

  check(model: OfflineModel): boolean {
    return model.tasksOf(this.owner()).length > 0;
  }

  async run(model: OfflineModel, real: Real): Promise<void> {
    const candidates = model.tasksOf(this.owner());
    const target = candidates[this.pick % candidates.length]!;
    const res = await send(
      real.t,
      real.users[this.user],
      'PATCH',
      `${TASKS}/${target.id}`,
      this.patch,
    );
    expectBuffered(res);
    const body = res.json<Patch & { id: string; updatedAt: string }>();
    expect(body).toEqual({
      id: target.id,
      ...this.patch,
      updatedAt: expect.stringMatching(ISO_MS),
    });
    model.queued += 1;
    if (this.foreign || target.deleted) {
      model.impossible += 1;
      return;
    }
    Object.assign(target, this.patch);
    target.version += 1;
    target.updatedAt = body.updatedAt;
  }

  private owner(): number {
    return this.foreign ? 1 - this.user : this.user;
  }

  toString(): string {
    return `update(user ${this.user}, task #${this.pick}${this.foreign ? ' of the other user' : ''}, ${JSON.stringify(this.patch)})`;
  }
}

class DeleteTask implements fc.AsyncCommand<OfflineModel, Real> {
  constructor(
    readonly user: number,
    readonly pick: number,
    readonly foreign: boolean,
  ) {}

  check(model: OfflineModel): boolean {
    return model.tasksOf(this.owner()).length > 0;
  }

  async run(model: OfflineModel, real: Real): Promise<void> {
    const candidates = model.tasksOf(this.owner());
    const target = candidates[this.pick % candidates.length]!;
    const res = await send(real.t, real.users[this.user], 'DELETE', `${TASKS}/${target.id}`);
    expectBuffered(res);
    expect(res.body).toBe('');
    const first = !model.deletes.has(`${this.user}:${target.id}`);
    if (first) model.queued += 1;
    model.deletes.add(`${this.user}:${target.id}`);
    // Someone else's task: not one the caller has, nor is creating: set aside when replayed.
    if (this.foreign && first) model.impossible += 1;
    if (!this.foreign) {
      target.deleted = true;
      // A delete sets its task's key free: the next create with that key makes a new task.
      if (target.key !== null && model.keys.get(`${this.user}:${target.key}`) === target) model.keys.delete(`${this.user}:${target.key}`);
    }
  }

  private owner(): number {
    return this.foreign ? 1 - this.user : this.user;
  }

  toString(): string {
    return `delete(user ${this.user}, task #${this.pick}${this.foreign ? ' of the other user' : ''})`;
  }
}

class Rename implements fc.AsyncCommand<OfflineModel, Real> {
  constructor(
    readonly user: number,
    readonly name: string,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: OfflineModel, real: Real): Promise<void> {
    const res = await send(real.t, real.users[this.user], 'PATCH', PROFILE, { name: this.name });
    expectBuffered(res);
    expect(res.json()).toEqual({
      id: real.users[this.user]!.userId,
      name: this.name,
      updatedAt: expect.stringMatching(ISO_MS),
    });
    model.names[this.user] = this.name;
    model.renames[this.user]! += 1;
    model.queued += 1;
  }

  toString(): string {
    return `rename(user ${this.user}, ${JSON.stringify(this.name)})`;
  }
}

const user = fc.constantFrom(0, 1);
const title = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ]{0,28}[A-Za-z0-9]$/);
// Quotes, braces, commas and backslashes: what array literals and JSON must escape.
const description = fc.oneof(fc.constant(null), fc.stringMatching(/^[\w ,.'"{}\\()-]{0,40}$/));
const status = fc.constantFrom<Status>('todo', 'in_progress', 'done');
const priority = fc.constantFrom<Priority>('low', 'medium', 'high');
const dueAt = fc.oneof(
  fc.constant(null),
  fc
    .integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) })
    .map((ms) => new Date(ms).toISOString()),
);
const createBody = fc.record(
  { title, description, status, priority, dueAt },
  { requiredKeys: ['title'] },
) as fc.Arbitrary<CreateBody>;
const patch = fc
  .record({ title, description, status, priority, dueAt }, { requiredKeys: [] })
  .filter((value) => Object.keys(value).length > 0) as fc.Arbitrary<Patch>;
const idempotencyKey = fc.stringMatching(/^[a-z0-9-]{4,12}$/);
const pick = fc.nat(1_000);

const command: fc.Arbitrary<fc.AsyncCommand<OfflineModel, Real>> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(user, createBody).map(([u, b]) => new CreateTask(u, b, { kind: 'none' })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(user, createBody, idempotencyKey)
      .map(([u, b, key]) => new CreateTask(u, b, { kind: 'fresh', key })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(user, createBody, pick)
      .map(([u, b, p]) => new CreateTask(u, b, { kind: 'retry', pick: p })),
  },
  {
    weight: 6,
    arbitrary: fc.tuple(user, pick, patch).map(([u, p, c]) => new UpdateTask(u, p, c, false)),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(user, pick, patch).map(([u, p, c]) => new UpdateTask(u, p, c, true)),
  },
  { weight: 2, arbitrary: fc.tuple(user, pick).map(([u, p]) => new DeleteTask(u, p, false)) },
  { weight: 1, arbitrary: fc.tuple(user, pick).map(([u, p]) => new DeleteTask(u, p, true)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(user, fc.stringMatching(/^[A-Za-z][A-Za-z ]{0,20}[A-Za-z]$/))
      .map(([u, name]) => new Rename(u, name)),
  },
);

// ------------------------------------------------------------------ the suite

describe('writes while PostgreSQL is down (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    const target = new URL(PG_URL);
    proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    t = await startTestApp({
      databaseHostPort: proxy.hostPort,
      env: { REQUEST_TIMEOUT_MS: '5000', BUFFER_REPLAY_BATCH: '50' },
    });
  });

  afterEach(async () => {
    // A failed test must not leave the next one without PostgreSQL.
    if (proxy.currentMode !== 'pass') await restoreAndDrain(t, proxy);
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  async function createDirectly(owner: TestUser, body: CreateBody): Promise<TaskBody> {
    const res = await send(t, owner, 'POST', TASKS, body);
    expect(res.statusCode).toBe(201);
    return res.json<TaskBody>();
  }

  /** Everything that must read PostgreSQL answers 503 with Retry-After; authentication still works. */
  async function expectReadsUnavailable(someone: TestUser, task: TaskBody): Promise<void> {
    expectUnavailable(await send(t, someone, 'GET', TASKS), 'GET /tasks');
    expectUnavailable(await send(t, someone, 'GET', `${TASKS}/${task.id}`), 'GET /tasks/{id}');
    expectUnavailable(await send(t, someone, 'GET', PROFILE), 'GET /profile');
    expectUnavailable(
      await send(t, undefined, 'POST', '/api/v1/auth/login', {
        email: someone.email,
        password: someone.password,
      }),
      'login',
    );
    expectUnavailable(
      await send(t, undefined, 'POST', '/api/v1/auth/register', {
        email: `new-${randomBytes(4).toString('hex')}@example.test`,
        password: 'long-enough-password',
        name: 'New',
      }),
      'register',
    );
    expectUnavailable(
      await send(t, someone, 'PATCH', PROFILE, {
        email: `moved-${randomBytes(4).toString('hex')}@example.test`,
        currentPassword: someone.password,
      }),
      'email change',
    );
    expectUnavailable(
      await send(t, someone, 'PATCH', PROFILE, {
        name: 'With email',
        email: 'with@example.test',
        currentPassword: someone.password,
      }),
      'name and email change',
    );
    expectUnavailable(
      await send(t, someone, 'PUT', `${PROFILE}/password`, {
        currentPassword: someone.password,
        newPassword: 'another-long-password',
      }),
      'password change',
    );
    expectUnavailable(
      await send(
        t,
        someone,
        'PATCH',
        `${TASKS}/${task.id}`,
        { title: 'conditional' },
        { 'if-match': '"1"' },
      ),
      'PATCH with If-Match',
    );
    expectUnavailable(
      await send(t, someone, 'DELETE', `${TASKS}/${task.id}`, undefined, { 'if-match': '*' }),
      'DELETE with If-Match',
    );
    // Authentication needs neither PostgreSQL nor a round trip: the session list is in Redis.
    expect((await send(t, someone, 'GET', '/api/v1/auth/sessions')).statusCode).toBe(200);
  }

  it(`accepts ${OPERATIONS_PER_RUN} mixed writes with 202 while PostgreSQL is cut, and replays them into exactly the state a model of them predicts`, async () => {
    const buffer = t.app.get(LmdbBuffer);
    const service = t.app.get(BufferService);
    await fc.assert(
      fc.asyncProperty(
        fc.array(command, { minLength: OPERATIONS_PER_RUN, maxLength: OPERATIONS_PER_RUN }),
        async (commands) => {
          const users = await Promise.all([registerAndLogin(t.app), registerAndLogin(t.app)]);
          const model = new OfflineModel(users.map((u) => u.name));
          for (const [owner, someone] of users.entries()) {
            for (const n of [1, 2, 3])
              model.add(owner, await createDirectly(someone, { title: `Stored ${n}` }), null);
          }
          const deadBefore = buffer.deadLetterCount;
          const deadTotalBefore = service.stats().deadLetteredTotal;
          const ledgerBefore = await ledgerSize(t);

          await cutDatabase(t, proxy);
          await fc.asyncModelRun(() => ({ model, real: { t, users } }), commands);

          await expectReadsUnavailable(users[0]!, model.tasks[0]!);
          const ready = await readiness(t);
          expect(ready.status).toBe(200);
          expect(ready.body.details).toMatchObject({
            postgres: { status: 'down' },
            redis: { status: 'up' },
            buffer: { status: 'up', depth: model.queued },
          });

          await restoreAndDrain(t, proxy);

          const expectedTasks = model.tasks
            .filter((task) => !task.deleted)
            .map((task) => ({
              id: task.id,
              owner: users[task.owner]!.userId,
              title: task.title,
              description: task.description,
              status: task.status,
              priority: task.priority,
              dueAt: task.dueAt,
              createdAt: task.createdAt,
              updatedAt: task.updatedAt,
              version: task.version,
              idempotencyKey: task.key,
            }))
            .sort((a, b) => a.id.localeCompare(b.id));
          expect(
            await storedTasks(
              t,
              users.map((u) => u.userId),
            ),
          ).toEqual(expectedTasks);
          expect(
            await storedUsers(
              t,
              users.map((u) => u.userId),
            ),
          ).toEqual(
            users.map((u, n) => ({
              id: u.userId,
              name: model.names[n],
              version: 1 + model.renames[n]!,
            })),
          );
          // Each operation applied once (its id in the ledger) or set aside, never both, never twice.
          expect(buffer.deadLetterCount - deadBefore).toBe(model.impossible);
          expect(service.stats().deadLetteredTotal - deadTotalBefore).toBe(model.impossible);
          expect((await ledgerSize(t)) - ledgerBefore).toBe(model.queued - model.impossible);
          const after = await readiness(t);
          expect(after.body.details.buffer).toMatchObject({
            depth: 0,
            deadLetters: buffer.deadLetterCount,
          });
          const listed = await send(t, users[0], 'GET', `${TASKS}?limit=100`);
          expect(listed.statusCode).toBe(200);
          expect(
            listed
              .json<{ items: TaskBody[] }>()
              .items.map((task) => task.id)
              .sort(),
          ).toEqual(
            expectedTasks.filter((task) => task.owner === users[0]!.userId).map((task) => task.id),
          );
        },
      ),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it('answers a retry of a replayed buffered create with its stored task (201), never a second row', async () => {
    const someone = await registerAndLogin(t.app);
    await cutDatabase(t, proxy);
    const buffered = await send(
      t,
      someone,
      'POST',
      TASKS,
      { title: 'Once' },
      { 'idempotency-key': 'offline-key' },
    );
    expectBuffered(buffered);
    const retried = await send(
      t,
      someone,
      'POST',
      TASKS,
      { title: 'Twice?' },
      { 'idempotency-key': 'offline-key' },
    );
    expectBuffered(retried);
    expect(retried.json()).toEqual(buffered.json());
    expect(retried.headers['idempotent-replayed']).toBe('true');
    await restoreAndDrain(t, proxy);

    const direct = await send(
      t,
      someone,
      'POST',
      TASKS,
      { title: 'Thrice?' },
      { 'idempotency-key': 'offline-key' },
    );
    expect(direct.statusCode).toBe(201);
    expect(direct.headers['idempotent-replayed']).toBe('true');
    expect(direct.json()).toEqual(buffered.json<TaskBody>());
    expect(direct.headers.etag).toBe('"1"');
    const stored = await storedTasks(t, [someone.userId]);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      id: buffered.json<TaskBody>().id,
      title: 'Once',
      idempotencyKey: 'offline-key',
    });
  });

  it('sets aside an update of a task deleted meanwhile by another instance, counts it, and applies the writes behind it', async () => {
    const someone = await registerAndLogin(t.app);
    const doomed = await createDirectly(someone, { title: 'Doomed' });
    const kept = await createDirectly(someone, { title: 'Kept' });
    const buffer = t.app.get(LmdbBuffer);
    const deadBefore = buffer.deadLetterCount;

    await cutDatabase(t, proxy);
    expectBuffered(await send(t, someone, 'PATCH', `${TASKS}/${doomed.id}`, { title: 'Too late' }));
    // Another instance, whose buffer was empty, deletes it directly meanwhile.
    await db(t, (client) => client.query('DELETE FROM tasks WHERE id = $1', [doomed.id]));
    const created = await send(t, someone, 'POST', TASKS, { title: 'Behind it' });
    expectBuffered(created);
    expectBuffered(await send(t, someone, 'PATCH', `${TASKS}/${kept.id}`, { status: 'done' }));
    await restoreAndDrain(t, proxy);

    expect(buffer.deadLetterCount - deadBefore).toBe(1);
    const [letter] = buffer.listDeadLetters(10_000).slice(-1);
    expect(letter).toMatchObject({
      op: { kind: 'task.update', userId: someone.userId, payload: { id: doomed.id } },
      error: { name: 'PermanentOperationError' },
    });
    const { body } = await readiness(t);
    expect(body.details.buffer).toMatchObject({ depth: 0, deadLetters: buffer.deadLetterCount });
    expect(t.app.get(BufferService).stats().deadLetteredTotal).toBeGreaterThanOrEqual(1);
    const createdNow = await send(t, someone, 'GET', `${TASKS}/${created.json<TaskBody>().id}`);
    expect(createdNow.statusCode).toBe(200);
    expect(createdNow.json()).toMatchObject({ title: 'Behind it', version: 1 });
    expect((await send(t, someone, 'GET', `${TASKS}/${kept.id}`)).json()).toMatchObject({
      status: 'done',
      version: 2,
    });
    expect((await send(t, someone, 'GET', `${TASKS}/${doomed.id}`)).statusCode).toBe(404);
  });

  it('leaves no duplicate when a replay dies between its commit and the removal from the buffer', async () => {
    const someone = await registerAndLogin(t.app);
    const stored = await createDirectly(someone, { title: 'Stored' });
    const buffer = t.app.get(LmdbBuffer);
    const service = t.app.get(BufferService);
    const alreadyAppliedBefore = service.stats().alreadyAppliedTotal;
    const ledgerBefore = await ledgerSize(t);

    await cutDatabase(t, proxy);
    const created = await send(
      t,
      someone,
      'POST',
      TASKS,
      { title: 'New' },
      { 'idempotency-key': 'k-crash' },
    );
    expectBuffered(created);
    const id = created.json<TaskBody>().id;
    expectBuffered(await send(t, someone, 'PATCH', `${TASKS}/${id}`, { title: 'New, changed' }));
    expectBuffered(await send(t, someone, 'PATCH', `${TASKS}/${stored.id}`, { priority: 'high' }));
    expectBuffered(await send(t, someone, 'PATCH', PROFILE, { name: 'Renamed once' }));

    // The first removal after a commit fails, as a crash right after the COMMIT would leave it.
    const remove = buffer.remove.bind(buffer);
    let crashes = 1;
    jest.spyOn(buffer, 'remove').mockImplementation(async (keys) => {
      if (crashes > 0) {
        crashes -= 1;
        throw new Error('simulated crash between the commit and the removal');
      }
      return remove(keys);
    });
    try {
      await restoreAndDrain(t, proxy);
    } finally {
      jest.restoreAllMocks();
    }

    expect(crashes).toBe(0);
    expect(service.stats().alreadyAppliedTotal - alreadyAppliedBefore).toBe(4);
    expect((await ledgerSize(t)) - ledgerBefore).toBe(4);
    const tasks = await storedTasks(t, [someone.userId]);
    // Ordered by id, so by creation: each update applied once, version 2.
    expect(tasks.map((task) => [task.title, task.version, task.priority])).toEqual([
      ['Stored', 2, 'high'],
      ['New, changed', 2, 'medium'],
    ]);
    expect(await storedUsers(t, [someone.userId])).toEqual([
      { id: someone.userId, name: 'Renamed once', version: 2 },
    ]);
  });
});

describe('the built server, killed while holding buffered writes (e2e)', () => {
  const databaseName = uniqueName();
  const jwtSecret = randomBytes(32).toString('hex');
  let bufferPath: string;
  let proxy: FaultProxy;
  const servers: ServerProcess[] = [];

  beforeAll(async () => {
    bufferPath = mkdtempSync(path.join(tmpdir(), 'taskd-crash-'));
    const target = new URL(PG_URL);
    proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  });

  afterAll(async () => {
    for (const server of servers) server.child.kill('SIGKILL');
    await Promise.all(servers.map((server) => server.exited));
    await proxy.close();
    rmSync(bufferPath, { recursive: true, force: true });
    await dropDatabase(databaseName);
  });

  async function start(databaseHostPort?: string): Promise<ServerProcess> {
    const server = spawnServer(
      {
        NODE_ENV: 'development',
        DATABASE_URL: databaseUrlFor(databaseName, databaseHostPort),
        DATABASE_CONNECT_TIMEOUT_MS: '1000',
        REDIS_URL,
        REDIS_KEY_PREFIX: `${databaseName}:`,
        BUFFER_PATH: bufferPath,
        BUFFER_REPLAY_INTERVAL_MS: '100',
        JWT_SECRET: jwtSecret,
        LOG_LEVEL: 'warn',
      },
      await freePort(),
    );
    servers.push(server);
    await waitForStatus(`${server.url}/health/ready`, 200);
    return server;
  }

  async function details(server: ServerProcess): Promise<ReadinessBody['details']> {
    return ((await (await fetch(`${server.url}/health/ready`)).json()) as ReadinessBody).details;
  }

  async function call(
    server: ServerProcess,
    method: string,
    url: string,
    body?: object,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Headers; json: () => Promise<unknown> }> {
    const res = await fetch(`${server.url}${url}`, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, headers: res.headers, json: () => res.json() as Promise<unknown> };
  }

  it('replays every 202 exactly once after a SIGKILL and a restart with PostgreSQL back', async () => {
    const first = await start(proxy.hostPort);
    await waitUntil(
      'PostgreSQL is up',
      async () => (await details(first)).postgres?.status === 'up',
    );
    const email = `crash-${randomBytes(4).toString('hex')}@example.test`;
    const password = 'crash-test-password';
    expect(
      (await call(first, 'POST', '/api/v1/auth/register', { email, password, name: 'Before' }))
        .status,
    ).toBe(201);
    const login = await call(first, 'POST', '/api/v1/auth/login', { email, password });
    const { accessToken } = (await login.json()) as { accessToken: string };
    const auth = { authorization: `Bearer ${accessToken}` };

    proxy.cut();
    await waitUntil(
      'the server sees PostgreSQL down',
      async () => (await details(first)).postgres?.status === 'down',
    );
    const accepted: TaskBody[] = [];
    for (let n = 0; n < 20; n += 1) {
      const headers = n % 3 === 0 ? { ...auth, 'idempotency-key': `crash-${n}` } : auth;
      const res = await call(
        first,
        'POST',
        TASKS,
        { title: `Buffered ${n}`, priority: 'high' },
        headers,
      );
      expect(res.status).toBe(202);
      expect(res.headers.get('x-write-status')).toBe('buffered');
      accepted.push((await res.json()) as TaskBody);
    }
    const retry = await call(
      first,
      'POST',
      TASKS,
      { title: 'Retry' },
      { ...auth, 'idempotency-key': 'crash-0' },
    );
    expect(retry.status).toBe(202);
    expect(((await retry.json()) as TaskBody).id).toBe(accepted[0]!.id);
    for (const task of accepted.slice(0, 5)) {
      const res = await call(first, 'PATCH', `${TASKS}/${task.id}`, { status: 'done' }, auth);
      expect(res.status).toBe(202);
    }
    expect(
      (await call(first, 'DELETE', `${TASKS}/${accepted[19]!.id}`, undefined, auth)).status,
    ).toBe(202);
    expect((await call(first, 'PATCH', PROFILE, { name: 'After' }, auth)).status).toBe(202);
    expect((await details(first)).buffer).toMatchObject({ depth: 27 });

    first.child.kill('SIGKILL');
    expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });

    // Started again on the same buffer, with PostgreSQL reachable (directly, not through the proxy).
    const second = await start();
    await waitUntil('the buffer is replayed', async () => {
      const now = await details(second);
      return now.postgres?.status === 'up' && now.buffer?.depth === 0;
    });

    const stored = await withDatabase(databaseName, async (client) => {
      const { rows } = await client.query<{
        id: string;
        title: string;
        status: string;
        version: number;
      }>(
        `SELECT t.id, t.title, t.status, t.version FROM tasks t JOIN users u ON u.id = t.user_id
          WHERE u.email = $1 ORDER BY t.id`,
        [email],
      );
      return rows;
    });
    expect(stored).toEqual(
      accepted.slice(0, 19).map((task, n) => ({
        id: task.id,
        title: `Buffered ${n}`,
        status: n < 5 ? 'done' : 'todo',
        version: n < 5 ? 2 : 1,
      })),
    );
    const [profile] = await withDatabase(
      databaseName,
      async (client) =>
        (
          await client.query<{ name: string; version: number }>(
            'SELECT name, version FROM users WHERE email = $1',
            [email],
          )
        ).rows,
    );
    expect(profile).toEqual({ name: 'After', version: 2 });
    expect((await details(second)).buffer).toMatchObject({ depth: 0, deadLetters: 0 });
  });
});
