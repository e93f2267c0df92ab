/**
 * Tasks over HTTP against the real application and PostgreSQL: every route of the contract,
 * ownership (BOLA), keyset pagination with ties, filters and literal search, the validation
 * matrix, idempotency under concurrency, conditional requests, the replay safety of the apply
 * statements, and the query plans of every list query. Each test checks what the client sees
 * and what is stored afterwards.
 */
import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { RequestContext } from '../../src/common/context/request-context.js';
import { Database } from '../../src/infrastructure/database/database.js';
import type { EntityManager } from 'typeorm';
import type { NewTask, TaskDeletion, TaskPatch, TaskSort, TaskUpdate } from '../../src/modules/tasks/task.js';
import { listStatement, TasksRepository } from '../../src/modules/tasks/tasks.repository.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

const TASKS = '/api/v1/tasks';
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const TASK_KEYS = [
  'createdAt',
  'description',
  'dueAt',
  'id',
  'priority',
  'status',
  'title',
  'updatedAt',
  'version',
];
const SORTS: TaskSort[] = ['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority', '-priority'];

interface TaskBody {
  id: string;
  title: string;
  description: string | null;
  status: string;
  priority: string;
  dueAt: string | null;
  createdAt: string;
  updatedAt: string;
  version: number;
}

interface TaskRow {
  id: string;
  user_id: string;
  title: string;
  description: string | null;
  status: string;
  priority: number;
  due_at: Date | null;
  created_at: Date;
  updated_at: Date;
  version: number;
  idempotency_key: string | null;
  title_pos: string | null;
  description_pos: string | null;
  status_pos: string | null;
  priority_pos: string | null;
  due_at_pos: string | null;
}

describe('tasks (e2e)', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;

  beforeAll(async () => {
    t = await startTestApp();
    [alice, bob] = await Promise.all([registerAndLogin(t.app), registerAndLogin(t.app)]);
  });

  afterAll(async () => {
    await t?.close();
  });

  // ---------------------------------------------------------------- helpers

  function request(
    user: TestUser | undefined,
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    options: { payload?: unknown; headers?: Record<string, string> } = {},
  ): Promise<LightMyRequestResponse> {
    return t.app.inject({
      method,
      url,
      headers: { ...(user?.auth ?? {}), ...options.headers },
      ...(options.payload === undefined
        ? {}
        : { payload: options.payload as Record<string, unknown> }),
    });
  }

  async function createTask(
    user: TestUser,
    payload: Record<string, unknown>,
    headers?: Record<string, string>,
  ) {
    const res = await request(user, 'POST', TASKS, { payload, headers });
    expect(res.statusCode).toBe(201);
    return res.json<TaskBody>();
  }

  function db<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    return withDatabase(t.databaseName, work);
  }

  async function rowOf(id: string): Promise<TaskRow | undefined> {
    return db(
      async (client) =>
        (await client.query<TaskRow>('SELECT * FROM tasks WHERE id = $1', [id])).rows[0],
    );
  }

  async function countTasks(userId: string): Promise<number> {
    return db(async (client) => {
      const { rows } = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM tasks WHERE user_id = $1',
        [userId],
      );
      return rows[0]!.n;
    });
  }

  function expectProblem(
    res: LightMyRequestResponse,
    status: number,
    code: string,
    field?: string,
  ): void {
    expect(res.statusCode).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json<Record<string, unknown>>();
    expect(body).toMatchObject({
      type: `https://httpstatuses.io/${status}`,
      status,
      code,
      detail: expect.any(String),
      requestId: res.headers['x-request-id'],
    });
    if (field !== undefined) {
      expect(body.errors).toEqual(expect.arrayContaining([{ field, message: expect.any(String) }]));
    }
  }

  /** Follows nextCursor from the first page to the last; the pages' sizes and all ids in order. */
  async function listAll(
    user: TestUser,
    query: string,
  ): Promise<{ sizes: number[]; ids: string[] }> {
    const sizes: number[] = [];
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 50; page += 1) {
      const url = `${TASKS}?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await request(user, 'GET', url);
      expect(res.statusCode).toBe(200);
      const body = res.json<{ items: TaskBody[]; nextCursor: string | null }>();
      sizes.push(body.items.length);
      ids.push(...body.items.map((item) => item.id));
      cursor = body.nextCursor;
      if (cursor === null) return { sizes, ids };
    }
    throw new Error('pagination did not end');
  }

  // ---------------------------------------------------------------- POST

  describe('POST /api/v1/tasks', () => {
    it('creates a task with defaults: 201, Location, ETag, the Task, and the row', async () => {
      const res = await request(alice, 'POST', TASKS, {
        payload: { title: '  Write the report  ' },
      });

      expect(res.statusCode).toBe(201);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const task = res.json<TaskBody>();
      expect(Object.keys(task).sort()).toEqual(TASK_KEYS);
      expect(task).toEqual({
        id: expect.stringMatching(UUID_V7),
        title: 'Write the report',
        description: null,
        status: 'todo',
        priority: 'medium',
        dueAt: null,
        createdAt: expect.stringMatching(ISO),
        updatedAt: task.createdAt,
        version: 1,
      });
      expect(res.headers.location).toBe(`${TASKS}/${task.id}`);
      expect(res.headers.etag).toBe('"1"');
      expect(res.headers['idempotent-replayed']).toBeUndefined();

      const row = await rowOf(task.id);
      expect(row).toEqual({
        id: task.id,
        user_id: alice.userId,
        title: 'Write the report',
        description: null,
        status: 'todo',
        priority: 2,
        due_at: null,
        created_at: new Date(task.createdAt),
        updated_at: new Date(task.createdAt),
        version: 1,
        idempotency_key: null,
        // No field has a position yet: a create comes before every other write of its task, and
        // a field without one (NULL) loses to any write of it.
        title_pos: null,
        description_pos: null,
        status_pos: null,
        priority_pos: null,
        due_at_pos: null,
      });
    });

    it('stores every field, the due date in UTC, and Location leads to the task', async () => {
      const res = await request(alice, 'POST', TASKS, {
        payload: {
          title: 'Call Ada',
          description: '  about the engine\n',
          status: 'in_progress',
          priority: 'high',
          dueAt: '2026-03-01T18:30:00+01:00',
        },
      });
      expect(res.statusCode).toBe(201);
      const task = res.json<TaskBody>();
      expect(task).toMatchObject({
        title: 'Call Ada',
        description: '  about the engine\n',
        status: 'in_progress',
        priority: 'high',
        dueAt: '2026-03-01T17:30:00.000Z',
      });
      const row = await rowOf(task.id);
      expect(row).toMatchObject({
        priority: 3,
        status: 'in_progress',
        due_at: new Date('2026-03-01T17:30:00.000Z'),
      });

      const followed = await request(alice, 'GET', res.headers.location as string);
      expect(followed.statusCode).toBe(200);
      expect(followed.json()).toEqual(task);
    });

    it('accepts the longest title and description', async () => {
      const task = await createTask(alice, {
        title: 't'.repeat(200),
        description: 'd'.repeat(10_000),
      });
      const row = await rowOf(task.id);
      expect(row?.title).toHaveLength(200);
      expect(row?.description).toHaveLength(10_000);
    });
  });

  // ---------------------------------------------------------------- GET one

  describe('GET /api/v1/tasks/{id}', () => {
    it('answers the task with its ETag', async () => {
      const created = await createTask(alice, { title: 'Read me' });
      const res = await request(alice, 'GET', `${TASKS}/${created.id}`);
      expect(res.statusCode).toBe(200);
      expect(res.headers.etag).toBe('"1"');
      expect(res.json()).toEqual(created);
    });

    it('answers 304 with the ETag and no body while If-None-Match names the current version', async () => {
      const created = await createTask(alice, { title: 'Cache me' });

      for (const tag of ['"1"', 'W/"1"', '"7", "1"', '*']) {
        const res = await request(alice, 'GET', `${TASKS}/${created.id}`, {
          headers: { 'if-none-match': tag },
        });
        expect(res.statusCode).toBe(304);
        expect(res.headers.etag).toBe('"1"');
        expect(res.body).toBe('');
      }

      await request(alice, 'PATCH', `${TASKS}/${created.id}`, { payload: { title: 'Changed' } });
      const stale = await request(alice, 'GET', `${TASKS}/${created.id}`, {
        headers: { 'if-none-match': '"1"' },
      });
      expect(stale.statusCode).toBe(200);
      expect(stale.headers.etag).toBe('"2"');
      expect(stale.json()).toMatchObject({ title: 'Changed', version: 2 });
    });

    it('answers 404 NOT_FOUND for an unknown id and 400 for a malformed one', async () => {
      expectProblem(await request(alice, 'GET', `${TASKS}/${randomUUID()}`), 404, 'NOT_FOUND');
      expectProblem(
        await request(alice, 'GET', `${TASKS}/not-a-uuid`),
        400,
        'VALIDATION_FAILED',
        'id',
      );
    });
  });

  // ---------------------------------------------------------------- PATCH

  describe('PATCH /api/v1/tasks/{id}', () => {
    it('changes the given fields, version + 1, updatedAt moves, ETag follows', async () => {
      const created = await createTask(alice, {
        title: 'Draft',
        description: 'old',
        dueAt: '2026-04-01T00:00:00Z',
      });

      const res = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
        payload: { status: 'done', priority: 'low', description: null, dueAt: null },
      });

      expect(res.statusCode).toBe(200);
      const task = res.json<TaskBody>();
      expect(task).toEqual({
        ...created,
        status: 'done',
        priority: 'low',
        description: null,
        dueAt: null,
        version: 2,
        updatedAt: expect.stringMatching(ISO),
      });
      expect(Date.parse(task.updatedAt)).toBeGreaterThan(Date.parse(created.updatedAt));
      expect(res.headers.etag).toBe('"2"');
      expect(await rowOf(created.id)).toMatchObject({
        title: 'Draft',
        status: 'done',
        priority: 1,
        description: null,
        due_at: null,
        version: 2,
        created_at: new Date(created.createdAt),
        updated_at: new Date(task.updatedAt),
      });
    });

    it('grows the version by one on every change', async () => {
      const created = await createTask(alice, { title: 'v' });
      for (const [i, status] of (['in_progress', 'done', 'todo'] as const).entries()) {
        const res = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
          payload: { status },
        });
        expect(res.json<TaskBody>().version).toBe(i + 2);
      }
      expect((await rowOf(created.id))?.version).toBe(4);
    });

    it('keeps the version when nothing actually changes', async () => {
      const created = await createTask(alice, { title: 'Same', priority: 'high' });
      const res = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
        payload: { title: ' Same ', priority: 'high' },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(created);
      expect(res.headers.etag).toBe('"1"');
      expect((await rowOf(created.id))?.version).toBe(1);
    });

    it('applies with a matching If-Match (or *) and answers 412 on a stale one, changing nothing', async () => {
      const created = await createTask(alice, { title: 'Guarded' });

      const ok = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
        payload: { title: 'Guarded 2' },
        headers: { 'if-match': '"1"' },
      });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers.etag).toBe('"2"');

      for (const stale of ['"1"', 'W/"2"', '"x"']) {
        const res = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
          payload: { title: 'Lost update' },
          headers: { 'if-match': stale },
        });
        expectProblem(res, 412, 'PRECONDITION_FAILED');
      }
      expect(await rowOf(created.id)).toMatchObject({ title: 'Guarded 2', version: 2 });

      const any = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
        payload: { title: 'Guarded 3' },
        headers: { 'if-match': '*' },
      });
      expect(any.statusCode).toBe(200);
      expect(any.json()).toMatchObject({ title: 'Guarded 3', version: 3 });
    });

    it('refuses a malformed If-Match with 400, changing nothing', async () => {
      const created = await createTask(alice, { title: 'Strict' });
      const res = await request(alice, 'PATCH', `${TASKS}/${created.id}`, {
        payload: { title: 'x' },
        headers: { 'if-match': '1' },
      });
      expectProblem(res, 400, 'VALIDATION_FAILED', 'If-Match');
      expect(await rowOf(created.id)).toMatchObject({ title: 'Strict', version: 1 });
    });

    it('answers 404 for an unknown id', async () => {
      expectProblem(
        await request(alice, 'PATCH', `${TASKS}/${randomUUID()}`, { payload: { title: 'x' } }),
        404,
        'NOT_FOUND',
      );
    });
  });

  // ---------------------------------------------------------------- DELETE

  describe('DELETE /api/v1/tasks/{id}', () => {
    it('answers 204 with no body and removes the row; a second delete is 404', async () => {
      const created = await createTask(alice, { title: 'Bye' });

      const res = await request(alice, 'DELETE', `${TASKS}/${created.id}`);
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expect(await rowOf(created.id)).toBeUndefined();

      expectProblem(await request(alice, 'DELETE', `${TASKS}/${created.id}`), 404, 'NOT_FOUND');
      expectProblem(await request(alice, 'GET', `${TASKS}/${created.id}`), 404, 'NOT_FOUND');
    });

    it('honours If-Match: 412 on a stale version (row kept), 204 on the current one', async () => {
      const created = await createTask(alice, { title: 'Careful' });
      await request(alice, 'PATCH', `${TASKS}/${created.id}`, { payload: { status: 'done' } });

      expectProblem(
        await request(alice, 'DELETE', `${TASKS}/${created.id}`, {
          headers: { 'if-match': '"1"' },
        }),
        412,
        'PRECONDITION_FAILED',
      );
      expect(await rowOf(created.id)).toMatchObject({ version: 2 });

      const res = await request(alice, 'DELETE', `${TASKS}/${created.id}`, {
        headers: { 'if-match': '"2"' },
      });
      expect(res.statusCode).toBe(204);
      expect(await rowOf(created.id)).toBeUndefined();
    });
  });

  // ---------------------------------------------------------------- authentication

  it('requires a valid access token on every route (401 UNAUTHENTICATED)', async () => {
    const created = await createTask(alice, { title: 'Mine' });
    const routes: Array<['GET' | 'POST' | 'PATCH' | 'DELETE', string, unknown]> = [
      ['POST', TASKS, { title: 'x' }],
      ['GET', TASKS, undefined],
      ['GET', `${TASKS}/${created.id}`, undefined],
      ['PATCH', `${TASKS}/${created.id}`, { title: 'x' }],
      ['DELETE', `${TASKS}/${created.id}`, undefined],
    ];
    for (const [method, url, payload] of routes) {
      expectProblem(await request(undefined, method, url, { payload }), 401, 'UNAUTHENTICATED');
      expectProblem(
        await request(undefined, method, url, {
          payload,
          headers: { authorization: 'Bearer not.a.token' },
        }),
        401,
        'UNAUTHENTICATED',
      );
    }
    expect(await countTasks(alice.userId)).toBeGreaterThan(0);
    expect(await rowOf(created.id)).toMatchObject({ title: 'Mine', version: 1 });
  });

  // ---------------------------------------------------------------- BOLA

  describe('ownership', () => {
    it("answers another user's task exactly like a missing one (404) and leaves it unchanged", async () => {
      const task = await createTask(alice, { title: 'Private', description: 'secret' });
      const before = await rowOf(task.id);
      const missing = randomUUID();

      const attempts: Array<[string, LightMyRequestResponse, LightMyRequestResponse]> = [
        [
          'GET',
          await request(bob, 'GET', `${TASKS}/${task.id}`),
          await request(bob, 'GET', `${TASKS}/${missing}`),
        ],
        [
          'PATCH',
          await request(bob, 'PATCH', `${TASKS}/${task.id}`, { payload: { title: 'pwned' } }),
          await request(bob, 'PATCH', `${TASKS}/${missing}`, { payload: { title: 'pwned' } }),
        ],
        [
          'PATCH If-Match',
          await request(bob, 'PATCH', `${TASKS}/${task.id}`, {
            payload: { title: 'pwned' },
            headers: { 'if-match': '"1"' },
          }),
          await request(bob, 'PATCH', `${TASKS}/${missing}`, {
            payload: { title: 'pwned' },
            headers: { 'if-match': '"1"' },
          }),
        ],
        [
          'DELETE',
          await request(bob, 'DELETE', `${TASKS}/${task.id}`),
          await request(bob, 'DELETE', `${TASKS}/${missing}`),
        ],
        [
          'DELETE If-Match',
          await request(bob, 'DELETE', `${TASKS}/${task.id}`, { headers: { 'if-match': '*' } }),
          await request(bob, 'DELETE', `${TASKS}/${missing}`, { headers: { 'if-match': '*' } }),
        ],
      ];
      for (const [, theirs, none] of attempts) {
        expectProblem(theirs, 404, 'NOT_FOUND');
        const {
          requestId: _a,
          instance: _b,
          ...theirsBody
        } = theirs.json<Record<string, unknown>>();
        const { requestId: _c, instance: _d, ...noneBody } = none.json<Record<string, unknown>>();
        expect(theirsBody).toEqual(noneBody);
        expect(theirs.headers.etag).toBeUndefined();
      }

      expect(await rowOf(task.id)).toEqual(before);
      const own = await request(alice, 'GET', `${TASKS}/${task.id}`);
      expect(own.json()).toEqual(task);
    });

    it("never lists another user's tasks", async () => {
      const carol = await registerAndLogin(t.app);
      await createTask(carol, { title: 'Carol only' });
      const res = await request(carol, 'GET', `${TASKS}?limit=100`);
      expect(res.json<{ items: TaskBody[] }>().items.map((item) => item.title)).toEqual([
        'Carol only',
      ]);

      const bobs = await listAll(bob, 'limit=100');
      const bobRows = await db(async (client) =>
        (
          await client.query<{ id: string }>('SELECT id FROM tasks WHERE user_id = $1', [
            bob.userId,
          ])
        ).rows.map((r) => r.id),
      );
      expect(bobs.ids.sort()).toEqual(bobRows.sort());
    });
  });

  // ---------------------------------------------------------------- idempotency

  describe('Idempotency-Key', () => {
    it('10 concurrent identical requests create exactly one task and all answer it', async () => {
      const dave = await registerAndLogin(t.app);
      const key = `key-${randomUUID()}`;

      const responses = await Promise.all(
        Array.from({ length: 10 }, () =>
          request(dave, 'POST', TASKS, {
            payload: { title: 'Once' },
            headers: { 'idempotency-key': key },
          }),
        ),
      );

      expect(responses.map((res) => res.statusCode)).toEqual(Array(10).fill(201));
      const ids = new Set(responses.map((res) => res.json<TaskBody>().id));
      expect(ids.size).toBe(1);
      const [id] = [...ids];
      for (const res of responses) {
        expect(res.headers.location).toBe(`${TASKS}/${id}`);
        expect(res.headers.etag).toBe('"1"');
      }
      expect(
        responses.filter((res) => res.headers['idempotent-replayed'] === undefined),
      ).toHaveLength(1);
      expect(responses.filter((res) => res.headers['idempotent-replayed'] === 'true')).toHaveLength(
        9,
      );

      const rows = await db(
        async (client) =>
          (await client.query<TaskRow>('SELECT * FROM tasks WHERE user_id = $1', [dave.userId]))
            .rows,
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ id, idempotency_key: key, title: 'Once' });
    });

    it('a later replay answers the same task as it is now, whatever its body, and stores nothing', async () => {
      const key = `key-${randomUUID()}`;
      const first = await createTask(alice, { title: 'Original' }, { 'idempotency-key': key });
      await request(alice, 'PATCH', `${TASKS}/${first.id}`, { payload: { status: 'done' } });
      const count = await countTasks(alice.userId);

      const replay = await request(alice, 'POST', TASKS, {
        payload: { title: 'Different body' },
        headers: { 'idempotency-key': key },
      });

      expect(replay.statusCode).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers.location).toBe(`${TASKS}/${first.id}`);
      expect(replay.headers.etag).toBe('"2"');
      expect(replay.json()).toMatchObject({
        id: first.id,
        title: 'Original',
        status: 'done',
        version: 2,
      });
      expect(await countTasks(alice.userId)).toBe(count);
    });

    it('keys are per user: the same key from another user creates their own task', async () => {
      const key = `shared-${randomUUID()}`;
      const mine = await createTask(alice, { title: 'Alice' }, { 'idempotency-key': key });
      const theirs = await request(bob, 'POST', TASKS, {
        payload: { title: 'Bob' },
        headers: { 'idempotency-key': key },
      });

      expect(theirs.statusCode).toBe(201);
      expect(theirs.headers['idempotent-replayed']).toBeUndefined();
      const bobTask = theirs.json<TaskBody>();
      expect(bobTask.id).not.toBe(mine.id);
      expect(bobTask.title).toBe('Bob');
      expect(await rowOf(bobTask.id)).toMatchObject({ user_id: bob.userId, idempotency_key: key });
      expect(await rowOf(mine.id)).toMatchObject({ user_id: alice.userId, title: 'Alice' });
    });

    it('refuses a malformed key with 400 and stores nothing', async () => {
      const count = await countTasks(alice.userId);
      for (const key of ['', 'k'.repeat(129), 'caf\u00e9']) {
        const res = await request(alice, 'POST', TASKS, {
          payload: { title: 'x' },
          headers: { 'idempotency-key': key },
        });
        expectProblem(res, 400, 'VALIDATION_FAILED', 'Idempotency-Key');
      }
      expect(await countTasks(alice.userId)).toBe(count);
    });
  });

  // ---------------------------------------------------------------- validation matrix

  describe('validation', () => {
    it.each([
      ['an empty title', { title: '' }, 'title'],
      ['a blank title', { title: '   ' }, 'title'],
      ['no title', { description: 'x' }, 'title'],
      ['a null title', { title: null }, 'title'],
      ['a title of 201 characters', { title: 'x'.repeat(201) }, 'title'],
      [
        'a description of 10,001 characters',
        { title: 'x', description: 'd'.repeat(10_001) },
        'description',
      ],
      ['a NUL character', { title: 'a\u0000b' }, 'title'],
      ['an unknown status', { title: 'x', status: 'archived' }, 'status'],
      ['an unknown priority', { title: 'x', priority: 'urgent' }, 'priority'],
      ['a number as title', { title: 5 }, 'title'],
      ['a bad date', { title: 'x', dueAt: 'next friday' }, 'dueAt'],
      ['an impossible date', { title: 'x', dueAt: '2026-02-30T10:00:00Z' }, 'dueAt'],
      ['a time without offset', { title: 'x', dueAt: '2026-03-01T10:00:00' }, 'dueAt'],
      ['an unknown field', { title: 'x', colour: 'red' }, 'colour'],
      ['an id', { title: 'x', id: randomUUID() }, 'id'],
      ['a userId', { title: 'x', userId: randomUUID() }, 'userId'],
      ['a version', { title: 'x', version: 5 }, 'version'],
      ['a createdAt', { title: 'x', createdAt: '2020-01-01T00:00:00Z' }, 'createdAt'],
    ])(
      'POST with %s is 400 VALIDATION_FAILED and stores nothing',
      async (_case, payload, field) => {
        const before = await countTasks(alice.userId);
        expectProblem(
          await request(alice, 'POST', TASKS, { payload }),
          400,
          'VALIDATION_FAILED',
          field,
        );
        expect(await countTasks(alice.userId)).toBe(before);
      },
    );

    it('names the limit in the message, as the contract shows', async () => {
      const res = await request(alice, 'POST', TASKS, { payload: { title: 'x'.repeat(201) } });
      expect(res.json()).toMatchObject({
        detail: 'title must be shorter than or equal to 200 characters',
        instance: TASKS,
        errors: [{ field: 'title', message: 'must be shorter than or equal to 200 characters' }],
      });
    });

    it('refuses malformed JSON (400) and a body that is not JSON (415)', async () => {
      const before = await countTasks(alice.userId);
      const malformed = await t.app.inject({
        method: 'POST',
        url: TASKS,
        headers: { ...alice.auth, 'content-type': 'application/json' },
        payload: '{"title": ',
      });
      expectProblem(malformed, 400, 'VALIDATION_FAILED');
      const text = await t.app.inject({
        method: 'POST',
        url: TASKS,
        headers: { ...alice.auth, 'content-type': 'text/plain' },
        payload: 'title=x',
      });
      expectProblem(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
      expect(await countTasks(alice.userId)).toBe(before);
    });

    it.each([
      ['an empty body', {}, 'body'],
      ['an empty title', { title: '' }, 'title'],
      ['a null title', { title: null }, 'title'],
      ['a null status', { status: null }, 'status'],
      ['a bad enum', { priority: 'urgent' }, 'priority'],
      ['a bad date', { dueAt: '2026-13-01T00:00:00Z' }, 'dueAt'],
      ['a version', { version: 99 }, 'version'],
      ['a userId', { userId: randomUUID() }, 'userId'],
      ['an id', { id: randomUUID() }, 'id'],
      ['an updatedAt', { updatedAt: '2020-01-01T00:00:00Z' }, 'updatedAt'],
    ])('PATCH with %s is 400 and changes nothing', async (_case, payload, field) => {
      const created = await createTask(alice, { title: 'Unchanged' });
      expectProblem(
        await request(alice, 'PATCH', `${TASKS}/${created.id}`, { payload }),
        400,
        'VALIDATION_FAILED',
        field,
      );
      expect(await rowOf(created.id)).toMatchObject({
        title: 'Unchanged',
        version: 1,
        user_id: alice.userId,
      });
    });

    it('refuses a malformed id on every route with 400', async () => {
      for (const id of [
        'not-a-uuid',
        '123',
        '0193a000-0000-7000-8000-0000000000a',
        "1'%20OR%20'1'='1",
      ]) {
        expectProblem(
          await request(alice, 'GET', `${TASKS}/${id}`),
          400,
          'VALIDATION_FAILED',
          'id',
        );
        expectProblem(
          await request(alice, 'PATCH', `${TASKS}/${id}`, { payload: { title: 'x' } }),
          400,
          'VALIDATION_FAILED',
          'id',
        );
        expectProblem(
          await request(alice, 'DELETE', `${TASKS}/${id}`),
          400,
          'VALIDATION_FAILED',
          'id',
        );
      }
    });

    it.each([
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=1000', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=ten', 'limit'],
      ['limit=2.5', 'limit'],
      ['sort=title', 'sort'],
      ['sort=createdat', 'sort'],
      ['sort=dueAt&sort=priority', 'sort'],
      ['status=archived', 'status'],
      ['priority=urgent', 'priority'],
      [`q=${'x'.repeat(201)}`, 'q'],
      ['q=%00', 'q'],
      ['page=2', 'page'],
      ['cursor=!!!', 'cursor'],
      ['cursor=e30', 'cursor'],
    ])('GET list with %s is 400 VALIDATION_FAILED', async (query, field) => {
      expectProblem(
        await request(alice, 'GET', `${TASKS}?${query}`),
        400,
        'VALIDATION_FAILED',
        field,
      );
    });

    it('refuses a tampered, foreign or mismatched cursor with 400, never 500', async () => {
      const owner = await registerAndLogin(t.app);
      for (let i = 0; i < 3; i += 1) await createTask(owner, { title: `c${i}` });
      const first = await request(owner, 'GET', `${TASKS}?limit=1&sort=priority`);
      const cursor = first.json<{ nextCursor: string }>().nextCursor;
      expect(cursor).toEqual(expect.any(String));
      const [payload, mac] = cursor.split('.') as [string, string];
      const flip = (text: string, at: number) =>
        `${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`;
      const forgedPayload = Buffer.from(JSON.stringify([1, randomUUID()])).toString('base64url');

      const cases: Array<[TestUser, string]> = [
        [owner, `sort=priority&limit=1&cursor=${flip(payload, 3)}.${mac}`],
        [owner, `sort=priority&limit=1&cursor=${payload}.${flip(mac, 0)}`],
        [owner, `sort=priority&limit=1&cursor=${forgedPayload}.${mac}`],
        [owner, `sort=priority&limit=1&cursor=${payload}`],
        [owner, `sort=-priority&limit=1&cursor=${cursor}`],
        [owner, `sort=priority&status=todo&limit=1&cursor=${cursor}`],
        [owner, `limit=1&cursor=${cursor}`],
        [bob, `sort=priority&limit=1&cursor=${cursor}`],
        [
          owner,
          `sort=priority&limit=1&cursor=${Buffer.from('{"a":1}').toString('base64url')}.${mac}`,
        ],
      ];
      for (const [user, query] of cases) {
        expectProblem(
          await request(user, 'GET', `${TASKS}?${query}`),
          400,
          'VALIDATION_FAILED',
          'cursor',
        );
      }

      const genuine = await request(
        owner,
        'GET',
        `${TASKS}?sort=priority&limit=1&cursor=${cursor}`,
      );
      expect(genuine.statusCode).toBe(200);
    });
  });

  // ---------------------------------------------------------------- filters and search

  describe('filters and search', () => {
    let erin: TestUser;
    const titles = [
      '50% off',
      '50 percent',
      'a_b',
      'axb',
      'back\\slash',
      'backslash',
      'Sale: 50% OFF today',
      'plain',
    ];

    beforeAll(async () => {
      erin = await registerAndLogin(t.app);
      for (const [i, title] of titles.entries()) {
        await createTask(erin, {
          title,
          status: (['todo', 'in_progress', 'done'] as const)[i % 3],
          priority: (['low', 'medium', 'high'] as const)[i % 3],
        });
      }
    });

    async function titlesFor(query: string): Promise<string[]> {
      const res = await request(erin, 'GET', `${TASKS}?limit=100&${query}`);
      expect(res.statusCode).toBe(200);
      return res
        .json<{ items: TaskBody[] }>()
        .items.map((item) => item.title)
        .sort();
    }

    it('treats % _ and \\ in q literally, ignoring case', async () => {
      expect(await titlesFor(`q=${encodeURIComponent('50%')}`)).toEqual([
        '50% off',
        'Sale: 50% OFF today',
      ]);
      expect(await titlesFor(`q=${encodeURIComponent('%')}`)).toEqual([
        '50% off',
        'Sale: 50% OFF today',
      ]);
      expect(await titlesFor(`q=${encodeURIComponent('a_b')}`)).toEqual(['a_b']);
      expect(await titlesFor(`q=${encodeURIComponent('_')}`)).toEqual(['a_b']);
      expect(await titlesFor(`q=${encodeURIComponent('\\')}`)).toEqual(['back\\slash']);
      expect(await titlesFor(`q=${encodeURIComponent('% off')}`)).toEqual([
        '50% off',
        'Sale: 50% OFF today',
      ]);
      expect(await titlesFor('q=nothing-like-it')).toEqual([]);
      expect(await titlesFor('q=')).toEqual([...titles].sort());
    });

    it('filters by status and by priority, alone and together with q', async () => {
      const expectedFor = (pick: (i: number) => boolean) => titles.filter((_, i) => pick(i)).sort();
      expect(await titlesFor('status=todo')).toEqual(expectedFor((i) => i % 3 === 0));
      expect(await titlesFor('status=in_progress')).toEqual(expectedFor((i) => i % 3 === 1));
      expect(await titlesFor('priority=high')).toEqual(expectedFor((i) => i % 3 === 2));
      expect(await titlesFor('status=done&priority=high')).toEqual(expectedFor((i) => i % 3 === 2));
      expect(await titlesFor('status=done&priority=low')).toEqual([]);
      expect(await titlesFor(`status=todo&q=${encodeURIComponent('50%')}`)).toEqual([
        '50% off',
        'Sale: 50% OFF today',
      ]);
      expect(await titlesFor(`priority=medium&q=${encodeURIComponent('50')}`)).toEqual([
        '50 percent',
      ]);
    });
  });

  // ---------------------------------------------------------------- pagination

  describe('keyset pagination', () => {
    let frank: TestUser;
    let rows: Array<{
      id: string;
      created_at: Date;
      due_at: Date | null;
      priority: number;
      status: string;
    }>;
    const dueDates = [
      null,
      '2026-05-01T10:00:00Z',
      '2026-04-01T00:00:00Z',
      '2026-05-01T10:00:00Z',
      '2026-06-01T00:00:00Z',
    ];

    beforeAll(async () => {
      frank = await registerAndLogin(t.app);
      for (let i = 0; i < 45; i += 1) {
        await createTask(frank, {
          title: `Task ${i}`,
          priority: (['low', 'medium', 'high'] as const)[i % 3],
          status: i % 2 === 0 ? 'todo' : 'done',
          dueAt: dueDates[i % dueDates.length],
        });
      }
      // Ties in createdAt too: four instants shared by about eleven tasks each.
      await db((client) =>
        client.query(
          `UPDATE tasks SET created_at = '2026-01-01T00:00:00Z'::timestamptz + (n.rn % 4) * interval '1 minute'
             FROM (SELECT id, row_number() OVER (ORDER BY title) AS rn FROM tasks WHERE user_id = $1) n
            WHERE tasks.id = n.id`,
          [frank.userId],
        ),
      );
      rows = await db(
        async (client) =>
          (
            await client.query<(typeof rows)[number]>(
              'SELECT id, created_at, due_at, priority, status FROM tasks WHERE user_id = $1',
              [frank.userId],
            )
          ).rows,
      );
      expect(rows).toHaveLength(45);
    });

    /** The order the contract promises, computed here independently of the SQL. */
    function expectedOrder(sort: TaskSort, subset = rows): string[] {
      const descending = sort.startsWith('-');
      const field = sort.replace('-', '');
      const keyOf = (row: (typeof rows)[number]): number => {
        if (field === 'createdAt') return row.created_at.getTime();
        if (field === 'priority') return row.priority;
        // No due date comes last in both directions.
        if (row.due_at === null) return descending ? -Infinity : Infinity;
        return row.due_at.getTime();
      };
      const sign = descending ? -1 : 1;
      return [...subset]
        .sort((a, b) => {
          const byKey = keyOf(a) - keyOf(b);
          if (byKey !== 0 && !Number.isNaN(byKey)) return sign * byKey;
          return sign * (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
        })
        .map((row) => row.id);
    }

    it('has ties to break: the fixture shares every sort key among many tasks', () => {
      const distinct = (values: unknown[]) => new Set(values.map(String)).size;
      expect(distinct(rows.map((r) => r.created_at.getTime()))).toBe(4);
      expect(distinct(rows.map((r) => r.due_at?.getTime() ?? null))).toBe(4);
      expect(distinct(rows.map((r) => r.priority))).toBe(3);
    });

    it.each(SORTS)(
      'sort=%s visits all 45 tasks across 5 pages exactly once, in order',
      async (sort) => {
        const { sizes, ids } = await listAll(frank, `sort=${sort}&limit=10`);
        expect(sizes).toEqual([10, 10, 10, 10, 5]);
        expect(new Set(ids).size).toBe(45);
        expect(ids).toEqual(expectedOrder(sort));
      },
    );

    it('defaults to -createdAt, 20 per page', async () => {
      const { sizes, ids } = await listAll(frank, '');
      expect(sizes).toEqual([20, 20, 5]);
      expect(ids).toEqual(expectedOrder('-createdAt'));
    });

    it('pages a filtered listing exactly too', async () => {
      const { sizes, ids } = await listAll(frank, 'status=done&sort=-dueAt&limit=4');
      const done = rows.filter((row) => row.status === 'done');
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(done.length);
      expect(ids).toEqual(expectedOrder('-dueAt', done));
    });

    it('answers a single page with nextCursor null, and limit=1 walks every task', async () => {
      const all = await request(frank, 'GET', `${TASKS}?limit=100&sort=priority`);
      expect(all.json<{ items: TaskBody[]; nextCursor: null }>()).toMatchObject({
        nextCursor: null,
      });
      expect(all.json<{ items: TaskBody[] }>().items.map((item) => item.id)).toEqual(
        expectedOrder('priority'),
      );

      const { sizes, ids } = await listAll(frank, 'sort=dueAt&limit=1');
      expect(sizes).toEqual(Array(45).fill(1));
      expect(ids).toEqual(expectedOrder('dueAt'));
    });

    it('keeps a page stable when tasks are created meanwhile', async () => {
      const first = await request(frank, 'GET', `${TASKS}?sort=createdAt&limit=10`);
      const { nextCursor } = first.json<{ nextCursor: string }>();
      const extra = await createTask(frank, { title: 'Late arrival' });
      try {
        const second = await request(
          frank,
          'GET',
          `${TASKS}?sort=createdAt&limit=10&cursor=${nextCursor}`,
        );
        expect(second.json<{ items: TaskBody[] }>().items.map((item) => item.id)).toEqual(
          expectedOrder('createdAt').slice(10, 20),
        );
      } finally {
        await request(frank, 'DELETE', `${TASKS}/${extra.id}`);
      }
    });
  });

  // ---------------------------------------------------------------- apply statements

  describe('apply statements (what the offline buffer replays)', () => {
    let repository: TasksRepository;
    let ctx: RequestContext;
    /** The pool, one statement at a time, as a direct write runs them. */
    let db: EntityManager;

    beforeAll(() => {
      repository = t.app.get(TasksRepository);
    });

    beforeEach(() => {
      ctx = RequestContext.background('tasks-e2e', 10_000);
      db = t.app.get(Database).manager;
    });

    afterEach(() => {
      ctx.release();
    });

    /** Positions as WriteOrder makes them: microseconds × 1024 (tag 0), in increasing order. */
    let clockMicros = BigInt(Date.now()) * 1_000n;
    function nextPosition(): string {
      clockMicros += 1_000n;
      return String(clockMicros * 1024n);
    }

    function newTask(userId: string, overrides: Partial<NewTask> = {}): NewTask {
      const now = new Date().toISOString();
      return {
        id: randomUUID(),
        userId,
        title: 'Replayed',
        description: null,
        status: 'todo',
        priority: 'medium',
        dueAt: null,
        createdAt: now,
        updatedAt: now,
        version: 1,
        idempotencyKey: null,
        position: nextPosition(),
        ...overrides,
      };
    }

    function update(task: NewTask, changes: TaskPatch, position: string, userId = task.userId): TaskUpdate {
      return { id: task.id, userId, changes, position, expectedVersion: null };
    }

    function deletion(task: NewTask, position: string, userId = task.userId): TaskDeletion {
      return { id: task.id, userId, position, expectedVersion: null };
    }

    async function tombstoneOf(userId: string, id: string): Promise<{ position: string } | undefined> {
      return withDatabase(t.databaseName, async (client) => (await client.query<{ position: string }>(
        'SELECT position FROM task_tombstones WHERE user_id = $1 AND id = $2', [userId, id],
      )).rows[0]);
    }

    it('a replayed create inserts nothing the second time', async () => {
      const task = newTask(alice.userId);
      await expect(repository.insert(db, task)).resolves.toBe(true);
      await expect(
        repository.insert(db, { ...task, title: 'changed on replay' }),
      ).resolves.toBe(false);
      expect(await rowOf(task.id)).toMatchObject({ title: 'Replayed', version: 1 });
    });

    it('merges updates by position, whatever order they arrive in: different fields both take, the later position wins a field, a replay changes nothing', async () => {
      const task = newTask(alice.userId);
      await repository.insert(db, task);
      const p1 = nextPosition();
      const p2 = nextPosition();
      const p3 = nextPosition();
      // Applied in the order p3, p1, p2 (three replicas draining in another order).
      await expect(repository.merge(db, update(task, { priority: 'high' }, p3))).resolves.toMatchObject({ priority: 'high', version: 2 });
      await expect(repository.merge(db, update(task, { title: 'first', status: 'done' }, p1))).resolves.toMatchObject({
        title: 'first',
        status: 'done',
        priority: 'high',
        version: 3,
      });
      await expect(repository.merge(db, update(task, { title: 'second', priority: 'low' }, p2))).resolves.toMatchObject({
        title: 'second',
        status: 'done',
        priority: 'high',
        version: 4,
      });
      // Replays of any of them, and a write of the same field positioned before the last one: no row takes them.
      for (const [changes, position] of [
        [{ title: 'first', status: 'done' }, p1],
        [{ title: 'second', priority: 'low' }, p2],
        [{ priority: 'high' }, p3],
        [{ title: 'stale', priority: 'low' }, p2],
      ] as const) {
        await expect(repository.merge(db, update(task, changes, position))).resolves.toBeUndefined();
      }
      expect(await rowOf(task.id)).toMatchObject({ title: 'second', status: 'done', priority: 3, version: 4, title_pos: p2, priority_pos: p3, status_pos: p1 });
    });

    it('records the position of a field set to the value it already has, without a new version for a direct write', async () => {
      const task = newTask(alice.userId, { title: 'Same' });
      await repository.insert(db, task);
      const later = nextPosition();
      await expect(repository.merge(db, update(task, { title: 'Same' }, later), 'when-changed')).resolves.toMatchObject({ title: 'Same', version: 1 });
      // An earlier write of that field, arriving after, loses to it.
      const earlier = String(BigInt(later) - 1024n);
      await expect(repository.merge(db, update(task, { title: 'Earlier' }, earlier))).resolves.toBeUndefined();
      expect(await rowOf(task.id)).toMatchObject({ title: 'Same', version: 1, title_pos: later });
    });

    it('a delete records a tombstone; a create or an update of the task arriving later does not bring it back', async () => {
      const task = newTask(alice.userId);
      await repository.insert(db, task);
      const at = nextPosition();
      await expect(repository.delete(db, deletion(task, at))).resolves.toBe(true);
      expect(await tombstoneOf(alice.userId, task.id)).toEqual({ position: at });
      await expect(repository.insert(db, task)).resolves.toBe(false);
      await expect(repository.merge(db, update(task, { title: 'after' }, nextPosition()))).resolves.toBeUndefined();
      expect(await rowOf(task.id)).toBeUndefined();
      await expect(repository.presenceOf(db, [{ userId: alice.userId, id: task.id }])).resolves.toEqual([
        { stored: false, aliasOf: undefined, deleted: true, deletedAt: at },
      ]);
    });

    it('a delete of a task whose create has not arrived yet writes its tombstone, and the create meets it', async () => {
      const task = newTask(alice.userId);
      await expect(repository.deleteMany(db, [deletion(task, nextPosition())])).resolves.toBe(0);
      await expect(repository.insertMany(db, [task, newTask(alice.userId)])).resolves.toBe(1);
      expect(await rowOf(task.id)).toBeUndefined();
    });

    it("an update or delete in another user's name matches nothing, and leaves no tombstone of theirs", async () => {
      const task = newTask(alice.userId);
      await repository.insert(db, task);
      await expect(repository.merge(db, update(task, { title: 'pwned' }, nextPosition(), bob.userId))).resolves.toBeUndefined();
      await expect(repository.delete(db, deletion(task, nextPosition(), bob.userId))).resolves.toBe(false);
      await expect(repository.deleteMany(db, [deletion(task, nextPosition(), bob.userId)])).resolves.toBe(0);
      expect(await rowOf(task.id)).toMatchObject({ title: 'Replayed', version: 1, user_id: alice.userId });
      expect(await tombstoneOf(alice.userId, task.id)).toBeUndefined();
      await expect(repository.insert(db, { ...task, id: randomUUID() })).resolves.toBe(true);
    });

    it('a replayed delete is no error', async () => {
      const task = newTask(alice.userId);
      await repository.insert(db, task);
      await expect(repository.delete(db, deletion(task, nextPosition()))).resolves.toBe(true);
      await expect(repository.delete(db, deletion(task, nextPosition()))).resolves.toBe(false);
      expect(await rowOf(task.id)).toBeUndefined();
    });

    it('applies a run of creates in one statement, in order: the earlier of two with one key wins, and a replay inserts nothing', async () => {
      const first = newTask(alice.userId, { title: 'first', idempotencyKey: 'run-key' });
      const plain = newTask(alice.userId, {
        title: 'plain',
        description: `it's {a} \\ "quoted", list`,
      });
      const sameKey = newTask(alice.userId, { title: 'second', idempotencyKey: 'run-key' });
      const bobs = newTask(bob.userId, {
        title: 'bob',
        idempotencyKey: 'run-key',
        dueAt: '2026-03-01T17:00:00.000Z',
      });

      await expect(repository.insertMany(db, [first, plain, sameKey, bobs])).resolves.toBe(3);
      await expect(repository.insertMany(db, [first, plain, bobs])).resolves.toBe(0);
      await expect(repository.recordKeyAliases(db, [first, plain, sameKey, bobs])).resolves.toBe(1);

      expect(await rowOf(first.id)).toMatchObject({ title: 'first', idempotency_key: 'run-key' });
      expect(await rowOf(plain.id)).toMatchObject({
        description: plain.description,
        idempotency_key: null,
        version: 1,
      });
      expect(await rowOf(sameKey.id)).toBeUndefined();
      await expect(repository.presenceOf(db, [{ userId: alice.userId, id: sameKey.id }])).resolves.toEqual([
        { stored: true, aliasOf: first.id, deleted: false },
      ]);
      expect(await rowOf(bobs.id)).toMatchObject({ user_id: bob.userId, priority: 2 });
      expect((await rowOf(bobs.id))!.due_at!.toISOString()).toBe('2026-03-01T17:00:00.000Z');
    });

    it("deletes many in one statement, each only within its own owner's tasks", async () => {
      const mine = newTask(alice.userId);
      const theirs = newTask(bob.userId);
      await repository.insertMany(db, [mine, theirs]);

      await expect(
        repository.deleteMany(db, [
          deletion(mine, nextPosition()),
          deletion(theirs, nextPosition(), alice.userId),
          { id: randomUUID(), userId: alice.userId, position: nextPosition(), expectedVersion: null },
        ]),
      ).resolves.toBe(1);
      expect(await rowOf(mine.id)).toBeUndefined();
      expect(await rowOf(theirs.id)).toMatchObject({ user_id: bob.userId });
    });
  });

  // ---------------------------------------------------------------- OpenAPI

  it('documents every task route in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/docs-json' })).json<{
      paths: Record<string, Record<string, Record<string, unknown>>>;
      components: {
        schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }>;
      };
    }>();
    const list = doc.paths[TASKS]!;
    const one = doc.paths[`${TASKS}/{id}`]!;
    expect(Object.keys(list).sort()).toEqual(['get', 'post']);
    expect(Object.keys(one).sort()).toEqual(['delete', 'get', 'patch']);
    for (const operation of [list.get, list.post, one.get, one.patch, one.delete]) {
      expect(operation!.security).toEqual([{ bearer: [] }]);
      expect(operation!.responses).toHaveProperty('401');
    }
    const post = list.post as {
      responses: Record<string, { headers?: Record<string, unknown> }>;
      parameters: Array<{ name: string; in: string }>;
    };
    expect(Object.keys(post.responses['201']!.headers ?? {})).toEqual(
      expect.arrayContaining(['Location', 'ETag', 'Idempotent-Replayed']),
    );
    expect(post.parameters).toContainEqual(
      expect.objectContaining({ name: 'Idempotency-Key', in: 'header' }),
    );
    expect((one.get as { responses: Record<string, unknown> }).responses).toHaveProperty('304');
    expect((one.patch as { responses: Record<string, unknown> }).responses).toHaveProperty('412');
    const listParams = (list.get as { parameters: Array<{ name: string }> }).parameters
      .map((p) => p.name)
      .sort();
    expect(listParams).toEqual(['cursor', 'limit', 'priority', 'q', 'sort', 'status']);
    expect(Object.keys(doc.components.schemas.TaskDto!.properties!).sort()).toEqual(TASK_KEYS);
    expect(Object.keys(doc.components.schemas.CreateTaskDto!.properties!).sort()).toEqual([
      'description',
      'dueAt',
      'priority',
      'status',
      'title',
    ]);
    expect(doc.components.schemas.CreateTaskDto!.required).toEqual(['title']);
  });

  // ---------------------------------------------------------------- schema

  describe('schema', () => {
    it('deletes a user’s tasks with the user', async () => {
      const gone = await registerAndLogin(t.app);
      const task = await createTask(gone, { title: 'Orphan?' });
      await db((client) => client.query('DELETE FROM users WHERE id = $1', [gone.userId]));
      expect(await rowOf(task.id)).toBeUndefined();
    });

    it('refuses in the table itself what the API refuses', async () => {
      const insert = (overrides: Record<string, unknown>) => {
        const row: Record<string, unknown> = { user_id: alice.userId, title: 'x', ...overrides };
        const columns = Object.keys(row);
        return db((client) =>
          client.query(
            `INSERT INTO tasks (id, created_at, updated_at, ${columns.join(', ')})
             VALUES (gen_random_uuid(), now(), now(), ${columns.map((_, i) => `$${i + 1}`).join(', ')})`,
            Object.values(row),
          ),
        );
      };
      await expect(insert({ priority: 4 })).rejects.toMatchObject({ code: '23514' });
      await expect(insert({ status: 'archived' })).rejects.toMatchObject({ code: '23514' });
      await expect(insert({ due_at: 'infinity' })).rejects.toMatchObject({ code: '23514' });
      await expect(insert({ title: '' })).rejects.toMatchObject({ code: '23514' });
      await expect(insert({ title: 'x'.repeat(201) })).rejects.toMatchObject({ code: '22001' });
      await expect(insert({ user_id: randomUUID() })).rejects.toMatchObject({ code: '23503' });
      const key = `dup-${randomUUID()}`;
      await insert({ idempotency_key: key });
      await expect(insert({ idempotency_key: key })).rejects.toMatchObject({ code: '23505' });
      await expect(insert({ idempotency_key: key, user_id: bob.userId })).resolves.toBeDefined();
    });

    describe('query plans of the list', () => {
      let probe: string;

      beforeAll(async () => {
        // Many other users with many tasks, so the planner has a real choice to make.
        await db(async (client) => {
          await client.query(
            `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
             SELECT gen_random_uuid(), 'seed-' || g || '@example.test', 'Seed', 'x', now(), now()
               FROM generate_series(1, 40) g`,
          );
          await client.query(
            `INSERT INTO tasks (id, user_id, title, status, priority, due_at, created_at, updated_at)
             SELECT gen_random_uuid(), u.id, 'seed task ' || g, (ARRAY['todo','in_progress','done'])[1 + g % 3],
                    1 + g % 3, CASE WHEN g % 4 = 0 THEN NULL ELSE now() + g * interval '1 hour' END,
                    now() - g * interval '1 minute', now()
               FROM users u CROSS JOIN generate_series(1, 500) g
              WHERE u.email LIKE 'seed-%'`,
          );
          await client.query('ANALYZE tasks');
        });
        probe = alice.userId;
      });

      type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };
      const nodesOf = (node: PlanNode): PlanNode[] => [
        node,
        ...(node.Plans ?? []).flatMap(nodesOf),
      ];

      const filters = [
        {},
        { status: 'todo' as const },
        { priority: 'high' as const },
        { q: '50%' },
        { status: 'done' as const, priority: 'low' as const, q: 'a' },
      ];
      const cases = SORTS.flatMap((sort) =>
        filters.flatMap((filter) => [
          { sort, filter, after: null },
          {
            sort,
            filter,
            after: {
              key: sort.includes('priority')
                ? 2
                : sort.includes('due')
                  ? null
                  : new Date().toISOString(),
              id: randomUUID(),
            },
          },
        ]),
      );

      it.each(
        cases.map((c) => [
          `${c.sort} ${JSON.stringify(c.filter)}${c.after ? ' after a cursor' : ''}`,
          c,
        ]),
      )(
        'reads only the caller’s rows through an index: %s',
        async (_name, { sort, filter, after }) => {
          const { sql, params } = listStatement(probe, { sort, filter, after, limit: 21 });
          const plan = await db(async (client) => {
            const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
              `EXPLAIN (FORMAT JSON) ${sql}`,
              params,
            );
            return rows[0]!['QUERY PLAN'][0]!.Plan;
          });
          const nodes = nodesOf(plan);
          expect(nodes.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([]);
          const scans = nodes.filter((node) =>
            ['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'].includes(
              node['Node Type'] as string,
            ),
          );
          expect(scans.length).toBeGreaterThan(0);
          for (const scan of scans) {
            // A filtered page fetches its own rows by id at the end, checking the owner on each.
            const lookup =
              scan['Index Name'] === 'tasks_pkey' && /^\(id = .+\.id\)$/.test(String(scan['Index Cond']));
            expect(String(scan[lookup ? 'Filter' : 'Index Cond'])).toContain('user_id =');
          }
        },
      );

      it.each(SORTS)('serves sort=%s in index order, without sorting', async (sort) => {
        const { sql, params } = listStatement(probe, { sort, filter: {}, after: null, limit: 21 });
        const plan = await db(async (client) => {
          const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
            `EXPLAIN (FORMAT JSON) ${sql}`,
            params,
          );
          return rows[0]!['QUERY PLAN'][0]!.Plan;
        });
        const nodes = nodesOf(plan);
        expect(nodes.map((node) => node['Node Type'])).not.toContain('Sort');
        expect(
          nodes.some((node) => String(node['Index Name'] ?? '').startsWith('tasks_user_')),
        ).toBe(true);
      });
    });
  });
});
