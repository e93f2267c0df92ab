/**
 * Sessions per user are bounded (SESSION_MAX_PER_USER): a login past the bound revokes the
 * user's oldest session, its access and refresh tokens included. Revoking many sessions at once
 * (log out everywhere) is published in a message whose size does not grow with their number,
 * and every instance still refuses each of their access tokens within a second.
 *
 * CI budget: 60 s
 */
import { Redis } from 'ioredis';
import type { LightMyRequestResponse } from 'fastify';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { decodeJwt } from '../support/jwt.js';
import { REDIS_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

const SECRET = 'session-bound-secret-0123456789-0123456789-01';
const BOUND = 20;

describe('sessions per user (e2e)', () => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    const env = { JWT_SECRET: SECRET, SESSION_MAX_PER_USER: String(BOUND) };
    a = await startTestApp({ env });
    b = await startTestApp({ databaseName: a.databaseName, env });
  });

  afterAll(async () => {
    await b?.close({ keepDatabase: true });
    await a?.close();
  });

  const login = async (user: TestUser) => {
    const res = await a.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, remoteAddress: '10.30.0.1' });
    expect(res.statusCode).toBe(200);
    return res.json() as { accessToken: string; refreshToken: string };
  };
  const profileVia = (t: TestApp, accessToken: string) =>
    t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${accessToken}` } }).then((r: LightMyRequestResponse) => r.statusCode);
  const sid = (accessToken: string) => decodeJwt(accessToken).payload.sid as string;

  it('revokes the oldest session when a login goes past the bound', async () => {
    const user = await registerAndLogin(a.app);
    const pairs = [{ accessToken: user.accessToken, refreshToken: user.refreshToken }];
    for (let i = 1; i < BOUND; i++) pairs.push(await login(user));
    expect(await profileVia(a, pairs[0]!.accessToken)).toBe(200);

    const newest = await login(user);
    expect(await profileVia(a, pairs[0]!.accessToken)).toBe(401);
    expect(await profileVia(b, pairs[0]!.accessToken)).toBe(401);
    const refreshed = await a.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken: pairs[0]!.refreshToken } });
    expect(refreshed.json()).toMatchObject({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
    expect(await profileVia(a, pairs[1]!.accessToken)).toBe(200);

    const listed = (await a.app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${newest.accessToken}` } })).json() as Array<{ id: string }>;
    expect(listed).toHaveLength(BOUND);
    expect(listed.map((s) => s.id).sort()).toEqual([...pairs.slice(1), newest].map((p) => sid(p.accessToken)).sort());
  });

  it('publishes "log out everywhere" compactly, and every instance refuses every token of it', async () => {
    const user = await registerAndLogin(a.app);
    const pairs = [{ accessToken: user.accessToken }];
    for (let i = 1; i < BOUND; i++) pairs.push(await login(user));
    for (const pair of pairs) expect(await profileVia(b, pair.accessToken)).toBe(200);

    const listener = new Redis(REDIS_URL, { lazyConnect: true });
    await listener.connect();
    const messages: string[] = [];
    try {
      listener.on('message', (_channel: string, message: string) => messages.push(message));
      await listener.subscribe(`${a.config.redis.keyPrefix}revoked-sessions`);
      const res = await a.app.inject({ method: 'DELETE', url: '/api/v1/auth/sessions', headers: user.auth });
      expect(res.statusCode).toBe(204);
      await waitUntil('the revocation is published', () => messages.length > 0, 2_000);
    } finally {
      listener.disconnect();
    }
    // One message naming the user, none of the twenty session ids.
    expect(messages).toHaveLength(1);
    expect(Buffer.byteLength(messages[0]!)).toBeLessThan(100);
    for (const pair of pairs) expect(messages[0]).not.toContain(sid(pair.accessToken));

    // Within the second the service promises (docs/security.md).
    await waitUntil(
      'instance B refuses every revoked token',
      async () => (await Promise.all(pairs.map((p) => profileVia(b, p.accessToken)))).every((status) => status === 401),
      1_000,
    );
  });
});
