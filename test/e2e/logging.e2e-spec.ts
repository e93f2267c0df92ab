/**
 * What the service writes to its log, through its own logger (format, redaction): one JSON line
 * per request with the route template and the request id the client saw, and never a password
 * or a token; background work (reconnection, replay) under a job id of its own, even when a
 * request set it off.
 */
import { jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { TasksService } from '../../src/modules/tasks/tasks.service.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

interface LogLine {
  level: string;
  time: string;
  service: string;
  msg: string;
  requestId?: string;
  method?: string;
  route?: string;
  url?: string;
  statusCode?: number;
  responseTime?: number;
  userId?: string;
  [field: string]: unknown;
}

class CapturedLog {
  readonly raw: string[] = [];

  write(chunk: string): void {
    this.raw.push(chunk);
  }

  lines(): LogLine[] {
    return this.raw
      .join('')
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as LogLine);
  }

  completed(requestId: unknown): LogLine[] {
    return this.lines().filter((line) => line.msg === 'request completed' && line.requestId === requestId);
  }
}

describe('request logging (e2e)', () => {
  const log = new CapturedLog();
  let proxy: FaultProxy;
  let t: TestApp;
  let user: TestUser;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({ env: { LOG_LEVEL: 'info' }, logDestination: log, databaseHostPort: proxy.hostPort });
    user = await registerAndLogin(t.app);
  });

  afterAll(async () => {
    proxy.pass();
    await t.close();
    await proxy.close();
  });

  it("writes what Nest's Logger logs during a request under the request's id, after awaits too", async () => {
    const tasks = t.app.get(TasksService);
    const list = tasks.list.bind(tasks);
    const probe = new Logger('Probe');
    const spy = jest.spyOn(tasks, 'list').mockImplementation(async (...args) => {
      probe.log('before the query');
      const page = await list(...args);
      await new Promise((resolve) => setTimeout(resolve, 5));
      probe.warn({ items: page.items.length }, 'after the query');
      return page;
    });
    try {
      const [first, second] = await Promise.all([
        t.app.inject({ method: 'GET', url: '/api/v1/tasks', headers: user.auth }),
        t.app.inject({ method: 'GET', url: '/api/v1/tasks', headers: user.auth }),
      ]);
      for (const res of [first, second]) {
        expect(res.statusCode).toBe(200);
        const probed = log.lines().filter((line) => line.context === 'Probe' && line.requestId === res.headers['x-request-id']);
        expect(probed.map((line) => [line.level, line.msg])).toEqual([
          ['info', 'before the query'],
          ['warn', 'after the query'],
        ]);
      }
      // Outside any request, no request id.
      probe.log('outside');
      expect(log.lines().find((line) => line.msg === 'outside')).not.toHaveProperty('requestId');
    } finally {
      spy.mockRestore();
    }
  });

  it('writes one JSON line per request, under the id the client saw, with the route template', async () => {
    const created = await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: user.auth, payload: { title: 'Logged' } });
    expect(created.statusCode).toBe(201);
    const id = created.json<{ id: string }>().id;
    const read = await t.app.inject({ method: 'GET', url: `/api/v1/tasks/${id}?x=%22q%22`, headers: user.auth });
    expect(read.statusCode).toBe(200);

    const lines = log.completed(read.headers['x-request-id']);
    expect(lines).toEqual([
      {
        level: 'info',
        time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
        service: 'taskd',
        requestId: read.headers['x-request-id'],
        method: 'GET',
        route: '/api/v1/tasks/:id',
        url: `/api/v1/tasks/${id}?x=%22q%22`,
        statusCode: 200,
        responseTime: expect.any(Number),
        userId: user.userId,
        msg: 'request completed',
      },
    ]);
    expect(log.completed(created.headers['x-request-id'])).toEqual([
      expect.objectContaining({ method: 'POST', route: '/api/v1/tasks', statusCode: 201, userId: user.userId }),
    ]);
  });

  it('logs an unknown route without a template and an anonymous request without a user', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/v1/nope' });
    expect(res.statusCode).toBe(404);
    const [line] = log.completed(res.headers['x-request-id']);
    expect(line).toMatchObject({ statusCode: 404, url: '/api/v1/nope' });
    expect(line).not.toHaveProperty('route');
    expect(line).not.toHaveProperty('userId');
  });

  it('logs the reconnection and the replay a request set off under a job id, not the request id', async () => {
    const from = log.raw.length;
    // PostgreSQL comes back the moment the breaker opens: the reconnection the opening starts
    // succeeds, and the replay follows, both set off by the request below.
    const availability = t.app.get(PostgresAvailability);
    const stopListening = availability.onStateChange((state) => {
      if (state === 'down') proxy.pass();
    });
    proxy.cut();
    // An update no task will ever take: buffered now, set aside by the replay (a line naming it).
    const orphan = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tasks/01936f3e-8b1c-7def-8a12-3456789abcde',
      headers: user.auth,
      payload: { title: 'Nobody' },
    });
    stopListening();
    proxy.pass();
    expect(orphan.statusCode).toBe(202);
    await waitUntil('the replay has ended', () => log.raw.slice(from).join('').includes('"msg":"buffer replayed"'), 10_000);

    const raw = log.raw.slice(from).join('').split('\n').filter((line) => line.length > 0);
    const background = raw
      .map((line) => JSON.parse(line) as LogLine)
      .filter((line) => line.context === 'PostgresAvailability' || line.context === 'BufferService');
    expect(background.map((line) => line.msg)).toEqual(
      expect.arrayContaining([
        'PostgreSQL unreachable; circuit opened',
        'PostgreSQL connected and migrated',
        'buffer replayed',
        'buffered operation set aside: it can never apply',
      ]),
    );
    for (const line of background) {
      expect({ msg: line.msg, requestId: line.requestId, jobId: line.jobId }).toEqual({
        msg: line.msg,
        requestId: undefined,
        jobId: expect.stringMatching(/^(postgres|buffer)-[a-z-]+-[0-9a-f-]{36}$/),
      });
    }
    expect(background.find((line) => line.msg.startsWith('buffered operation set aside'))).toMatchObject({
      acceptedByRequest: orphan.headers['x-request-id'],
    });
    // JSON.parse keeps the last of two equal keys: the raw lines must not hold any twice.
    expect(raw.filter((line) => line.split('"requestId":').length > 2)).toEqual([]);
  });

  it('never writes a password or a token', async () => {
    const other = await registerAndLogin(t.app);
    const refreshed = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: other.refreshToken },
    });
    expect(refreshed.statusCode).toBe(200);
    const wrong = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: other.email, password: `${other.password}-wrong` },
    });
    expect(wrong.statusCode).toBe(401);
    await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: other.auth });

    const text = log.raw.join('');
    expect(text).toContain(other.userId);
    const secrets = [
      user.password,
      user.accessToken,
      user.refreshToken,
      other.password,
      other.accessToken,
      other.refreshToken,
      refreshed.json<{ accessToken: string }>().accessToken,
      refreshed.json<{ refreshToken: string }>().refreshToken,
    ];
    for (const secret of secrets) expect(text).not.toContain(secret);
  });
});

describe('request logging of failures (e2e)', () => {
  it('logs a 5xx at level error, under the request id, without the password', async () => {
    const log = new CapturedLog();
    // A login spends an argon2id verification (tens of milliseconds), well past 5 ms: 504.
    const t = await startTestApp({ env: { LOG_LEVEL: 'info', REQUEST_TIMEOUT_MS: '5' }, logDestination: log });
    // What start-up logged (Redis's durability for the hand-off, say) is not these requests'.
    const fromStartUp = log.lines().length;
    try {
      const password = 'a-password-never-logged';
      const res = await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: 'slow@example.com', password } });
      expect(res.statusCode).toBe(504);
      expect(log.completed(res.headers['x-request-id'])).toEqual([
        expect.objectContaining({ level: 'error', method: 'POST', route: '/api/v1/auth/login', statusCode: 504, service: 'taskd' }),
      ]);
      expect(log.raw.join('')).not.toContain(password);

      // A registration hashes with argon2id past the deadline too, then succeeds: its late
      // result (and the login's late 401) is dropped without a second answer or a warning.
      const late = await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/register',
        payload: { email: 'late@example.com', password, name: 'Late' },
      });
      expect(late.statusCode).toBe(504);
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const answered of [res, late]) {
        expect(log.lines().filter((line) => line.requestId === answered.headers['x-request-id'])).toEqual([
          expect.objectContaining({ msg: 'request completed', statusCode: 504 }),
        ]);
      }
      expect(log.lines().slice(fromStartUp).filter((line) => line.level !== 'info' && line.msg !== 'request completed')).toEqual([]);
      expect(log.raw.join('')).not.toContain(password);
    } finally {
      await t.close();
    }
  });
});
