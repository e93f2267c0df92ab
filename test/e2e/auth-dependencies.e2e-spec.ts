/**
 * While PostgreSQL is down (docs/architecture.md, "Dependencies down"): what needs only Redis (refresh,
 * logout, sessions) and only the token (authentication) keeps working. And with Redis down,
 * authentication still works (in-memory), while login answers 503 with Retry-After, also when a
 * command was in flight as Redis went away. A command in flight when the connection drops fails
 * at once and is not resent; a reply no command waits for resets the connection, not the process.
 */
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, REDIS_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { RedisService } from '../../src/infrastructure/redis/redis.service.js';

const waitFor = async (predicate: () => boolean, ms: number) => {
  const until = Date.now() + ms;
  while (Date.now() < until && !predicate()) await new Promise((r) => setTimeout(r, 25));
  return predicate();
};

describe('auth routes with a dependency down (e2e)', () => {
  let t: TestApp;
  let pgProxy: FaultProxy;
  let redisProxy: FaultProxy;

  beforeAll(async () => {
    const pgTarget = new URL(PG_URL);
    const redisTarget = new URL(REDIS_URL);
    pgProxy = await FaultProxy.start({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
    redisProxy = await FaultProxy.start({ host: redisTarget.hostname, port: Number(redisTarget.port || 6379) });
    t = await startTestApp({
      databaseHostPort: pgProxy.hostPort,
      env: { REDIS_URL: `redis://${redisProxy.hostPort}${redisTarget.pathname}` },
    });
  });

  afterAll(async () => {
    pgProxy.pass();
    redisProxy.pass();
    await t.close();
    await pgProxy.close();
    await redisProxy.close();
  });

  it('with PostgreSQL down: refresh, sessions, revoke one, logout and revoke-all keep working', async () => {
    const user = await registerAndLogin(t.app);
    const second = (await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password } })).json();
    const third = (await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password } })).json();
    pgProxy.cut();
    const db = t.app.get(PostgresAvailability);
    // Make the app notice.
    await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth });
    expect(await waitFor(() => !db.isUp(), 5_000)).toBe(true);

    const refreshed = await t.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken: user.refreshToken } });
    const list = await t.app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth });
    const sid = JSON.parse(Buffer.from(second.accessToken.split('.')[1], 'base64url').toString()).sid;
    const revokeOne = await t.app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${sid}`, headers: user.auth });
    const logout = await t.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${third.accessToken}` } });
    const all = await t.app.inject({ method: 'DELETE', url: '/api/v1/auth/sessions', headers: user.auth });
    expect({
      refresh: refreshed.statusCode,
      sessions: list.statusCode,
      revokeOne: revokeOne.statusCode,
      logout: logout.statusCode,
      revokeAll: all.statusCode,
    }).toEqual({ refresh: 200, sessions: 200, revokeOne: 204, logout: 204, revokeAll: 204 });
    pgProxy.pass();
    expect(await waitFor(() => db.isUp(), 10_000)).toBe(true);
  });

  it('with Redis down: authentication works, login is 503 with Retry-After, register works', async () => {
    const user = await registerAndLogin(t.app);
    redisProxy.cut();
    const redis = t.app.get(RedisService);
    expect(await waitFor(() => !redis.isUp(), 5_000)).toBe(true);
    const profile = await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth });
    const login = await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password } });
    const register = await t.app.inject({ method: 'POST', url: '/api/v1/auth/register', payload: { email: `r-${Date.now()}@example.test`, password: 'password-123', name: 'R' } });
    const refresh = await t.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken: user.refreshToken } });
    expect({
      profile: profile.statusCode,
      login: [login.statusCode, login.json().code, login.headers['retry-after'] !== undefined],
      register: register.statusCode,
      refresh: [refresh.statusCode, refresh.json().code, refresh.headers['retry-after'] !== undefined],
    }).toEqual({
      profile: 200,
      login: [503, 'SERVICE_UNAVAILABLE', true],
      register: 201,
      refresh: [503, 'SERVICE_UNAVAILABLE', true],
    });
    redisProxy.pass();
    expect(await waitFor(() => redis.isUp(), 10_000)).toBe(true);
  });

  it('with a Redis command in flight when the connection drops: it fails at once, is not resent, and later commands get their own replies', async () => {
    const redis = t.app.get(RedisService);
    expect(await waitFor(() => redis.isUp(), 10_000)).toBe(true);
    // Blocks in Redis (for 1 s) until the connection drops.
    const blocked = redis.client.blpop('in-flight:nothing', 1).then(
      (reply) => ({ reply }),
      (error: Error) => ({ error: error.message }),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    redisProxy.reset();
    // Not resent after the reconnect (it would then answer after its second second): a command
    // whose reply was lost may have run already.
    expect(await blocked).toMatchObject({ error: expect.any(String) });
    expect(await waitFor(() => redis.isUp(), 10_000)).toBe(true);
    const key = `in-flight:${Date.now()}`;
    expect(await redis.client.set(key, 'mine')).toBe('OK');
    expect(await redis.client.get(key)).toBe('mine');
    await redis.client.del(key);
  });

  it('with a Redis reply no command waits for: the connection is dropped and made again, the process goes on', async () => {
    const redis = t.app.get(RedisService);
    expect(await waitFor(() => redis.isUp(), 10_000)).toBe(true);
    const before = redisProxy.accepted.pass;
    // A GET of a missing key written past the client: a nil reply with no command waiting, which
    // ioredis turned into an uncaught TypeError.
    redis.client.stream.write('*2\r\n$3\r\nGET\r\n$21\r\nin-flight:nobody-asked\r\n');
    expect(await waitFor(() => redisProxy.accepted.pass > before && redis.isUp(), 10_000)).toBe(true);
    const key = `in-flight:${Date.now()}`;
    expect(await redis.client.set(key, 'mine')).toBe('OK');
    expect(await redis.client.get(key)).toBe('mine');
    await redis.client.del(key);
  });

  it('with a Redis command in flight when Redis goes away behind a proxy: login is still a prompt 503', async () => {
    const user = await registerAndLogin(t.app);
    const redis = t.app.get(RedisService);
    // A command sent and unanswered when the connection drops, as a background job's may be.
    redisProxy.blackhole();
    const inFlight = redis.client.get('in-flight').then(() => 'answered', () => 'failed');
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Reconnects now reach the proxy, which closes them at once: the command is never resent,
    // and without a command timeout every later command waited behind it (504 at the deadline).
    redisProxy.cut();
    expect(await waitFor(() => !redis.isUp(), 5_000)).toBe(true);
    const login = await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password } });
    expect([login.statusCode, login.json().code, login.headers['retry-after'] !== undefined]).toEqual([503, 'SERVICE_UNAVAILABLE', true]);
    expect(await inFlight).toBe('failed');
    redisProxy.pass();
    expect(await waitFor(() => redis.isUp(), 10_000)).toBe(true);
  });
});
