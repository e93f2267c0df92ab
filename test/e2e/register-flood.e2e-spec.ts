/**
 * Registration under abuse. Registrations are throttled per client IP (429 with Retry-After,
 * every attempt counted, a 409 included: the throttle is what bounds how fast accounts can be
 * enumerated). Behind it, the password-hash queue is bounded: past it a registration is refused
 * without waiting for a hash (503 with Retry-After), every refusal answered after a pause that
 * keeps a client resending at once from turning refusals into the load, a login waiting to be checked is served before waiting
 * registrations, and no hash is computed for a request that has passed its deadline or whose
 * client has gone (argon2's calls are counted to see it).
 *
 * CI budget: 90 s
 */
import { jest } from '@jest/globals';
import argon2 from 'argon2';
import type { LightMyRequestResponse } from 'fastify';
import { registerAndLogin } from '../support/auth.js';
import { startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const registration = (i: number) => ({ email: `flood-${i}-${Date.now()}@example.test`, password: 'a flood of passwords', name: 'Flood' });

describe('registration throttled per IP (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { REGISTER_MAX_PER_IP: '3', REGISTER_WINDOW_SECONDS: '60' } });
  });

  afterAll(async () => {
    await t?.close();
  });

  const register = (payload: object, remoteAddress: string) =>
    t.app.inject({ method: 'POST', url: '/api/v1/auth/register', payload, remoteAddress });

  it('answers 429 with Retry-After past the limit, counting a 409 too, and stores nothing', async () => {
    const taken = registration(0);
    expect((await register(taken, '10.20.0.1')).statusCode).toBe(201);
    expect((await register({ ...taken, name: 'Again' }, '10.20.0.1')).statusCode).toBe(409);
    expect((await register(registration(1), '10.20.0.1')).statusCode).toBe(201);
    const refused = await register(registration(2), '10.20.0.1');
    expect([refused.statusCode, refused.json().code]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Enumeration is throttled as well: a taken address is no longer told apart.
    expect((await register({ ...taken, name: 'Probe' }, '10.20.0.1')).statusCode).toBe(429);
    const stored = await withDatabase(t.databaseName, (c) => c.query("SELECT count(*)::int AS n FROM users WHERE name IN ('Flood', 'Again', 'Probe')"));
    expect(stored.rows[0].n).toBe(2);
    // Another address is not affected.
    expect((await register(registration(3), '10.20.0.2')).statusCode).toBe(201);
  });
});

describe('a refused registration is answered after the pause (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      env: { REGISTER_REFUSAL_PAUSE_MS: '400', REGISTER_MAX_PER_IP: '1', PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '0' },
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  const timed = async (payload: object, remoteAddress: string) => {
    const started = performance.now();
    const res = await t.app.inject({ method: 'POST', url: '/api/v1/auth/register', payload, remoteAddress });
    return { status: res.statusCode, code: res.json().code as string | undefined, ms: performance.now() - started };
  };

  it('pauses a 429 past the per-IP limit and a 503 past the hash queue, never a 201', async () => {
    // The queue holds the hash running and none waiting: of two at once, one is refused.
    const [a, b] = await Promise.all([timed(registration(300), '10.24.0.1'), timed(registration(301), '10.24.0.2')]);
    const [created, full] = a.status === 201 ? [a, b] : [b, a];
    expect([created.status, full.status, full.code]).toEqual([201, 503, 'SERVICE_UNAVAILABLE']);
    expect(full.ms).toBeGreaterThanOrEqual(390);
    const limited = await timed(registration(302), '10.24.0.1');
    expect([limited.status, limited.code]).toEqual([429, 'RATE_LIMITED']);
    expect(limited.ms).toBeGreaterThanOrEqual(390);
    const alone = await timed(registration(303), '10.24.0.3');
    expect(alone.status).toBe(201);
    expect(alone.ms).toBeLessThan(390);
    const stored = await withDatabase(t.databaseName, (c) => c.query("SELECT count(*)::int AS n FROM users WHERE name = 'Flood'"));
    expect(stored.rows[0].n).toBe(2);
  });
});

describe('the password-hash queue under a registration flood (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      // Refusals answered at once: the first one tells the test the queue is full.
      env: { REGISTER_MAX_PER_IP: '100000', PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '4', REGISTER_REFUSAL_PAUSE_MS: '0' },
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('refuses registrations past the bound with 503 and Retry-After, and checks a login before the waiting ones', async () => {
    const user = await registerAndLogin(t.app);
    const finished: string[] = [];
    const flood = Array.from({ length: 40 }, (_, i) =>
      t.app
        .inject({ method: 'POST', url: '/api/v1/auth/register', payload: registration(100 + i), remoteAddress: `10.21.0.${i + 1}` })
        .then((res: LightMyRequestResponse) => (finished.push(`register ${res.statusCode}`), res)),
    );
    // Once a registration has been refused the queue is full of registrations: now a login.
    await waitUntil('the queue is full', () => finished.includes('register 503'), 10_000);
    const login = t.app
      .inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, remoteAddress: '10.22.0.1' })
      .then((res: LightMyRequestResponse) => (finished.push('login'), res));
    const answers = await Promise.all(flood);
    expect((await login).statusCode).toBe(200);

    const refused = answers.filter((res) => res.statusCode === 503);
    expect(refused.length).toBeGreaterThan(0);
    for (const res of refused) {
      expect(res.json().code).toBe('SERVICE_UNAVAILABLE');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(answers.every((res) => [201, 503].includes(res.statusCode))).toBe(true);
    // The login was answered before registrations that were waiting when it came.
    expect(finished.slice(finished.indexOf('login') + 1)).toContain('register 201');
  });
});

describe('no hash for a request that can no longer be answered (e2e)', () => {
  let t: TestApp;
  let hashes: number;

  beforeAll(async () => {
    t = await startTestApp({
      listen: true,
      env: { REGISTER_MAX_PER_IP: '100000', PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '1000', REQUEST_TIMEOUT_MS: '400' },
    });
  });

  beforeEach(() => {
    hashes = 0;
    const real = argon2.hash;
    jest.spyOn(argon2, 'hash').mockImplementation(((...args: Parameters<typeof real>) => ((hashes += 1), real(...args))) as typeof real);
  });

  afterEach(() => {
    jest.restoreAllMocks();
  });

  afterAll(async () => {
    await t?.close();
  });

  it('computes no hash for a registration past its deadline (504)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        t.app.inject({ method: 'POST', url: '/api/v1/auth/register', payload: registration(200 + i), remoteAddress: `10.23.0.${i + 1}` }),
      ),
    );
    const created = answers.filter((res) => res.statusCode === 201).length;
    const timedOut = answers.filter((res) => res.statusCode === 504).length;
    expect(created + timedOut).toBe(60);
    expect(timedOut).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Each created user took one hash. Wasted are at most the few that were running, or being
    // stored, when their deadline came (deadlines differ by the requests' arrival), never the
    // 60 - created that were still waiting.
    expect(hashes).toBeGreaterThanOrEqual(created);
    expect(hashes).toBeLessThanOrEqual(created + 3);
    expect(60 - created).toBeGreaterThan(10);
  });

  it('computes no hash for a registration whose client has gone', async () => {
    const controller = new AbortController();
    const sent = Array.from({ length: 30 }, (_, i) =>
      fetch(`${t.url}/api/v1/auth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(registration(300 + i)),
        signal: controller.signal,
      }).catch(() => undefined),
    );
    await new Promise((resolve) => setTimeout(resolve, 60));
    controller.abort();
    await Promise.all(sent);
    // Time for the server to see the connections close.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const startedByThen = hashes;
    expect(startedByThen).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // What was running when the clients went finishes; nothing queued behind it starts (about
    // 25 ms a hash, one at a time: a handful ran before the clients went, not 30).
    expect(hashes).toBeLessThanOrEqual(startedByThen + 1);
    expect(hashes).toBeLessThan(15);
  });
});
