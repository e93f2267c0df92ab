/**
 * The login throttle's policy (docs/security.md), with short windows so that it plays out in
 * seconds: failures count for the whole window, blocks or no blocks; repeated blocks grow
 * longer; and an attacker guessing from other addresses cannot lock the owner out of an address
 * they have logged in from, while from a new address the lock-out ends within the policy's
 * bound once the guessing stops.
 *
 * CI budget: 90 s
 */
import type { LightMyRequestResponse } from 'fastify';
import { registerAndLogin } from '../support/auth.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const retryAfter = (res: LightMyRequestResponse) => Number(res.headers['retry-after']);

function loginVia(t: () => TestApp) {
  return (email: string, password: string, remoteAddress: string) =>
    t().app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password }, remoteAddress });
}

describe('login throttle: the whole window and the lock-out bound (e2e)', () => {
  let t: TestApp;
  const login = loginVia(() => t);

  beforeAll(async () => {
    t = await startTestApp({
      env: {
        LOGIN_MAX_FAILURES_PER_EMAIL: '2',
        LOGIN_MAX_FAILURES_PER_IP: '1000',
        LOGIN_WINDOW_SECONDS: '3',
        LOGIN_BLOCK_SECONDS: '1',
        LOGIN_BLOCK_MAX_SECONDS: '8',
      },
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('keeps counting failures for the whole window after the block ends', async () => {
    const user = await registerAndLogin(t.app, { ip: '10.40.0.1' });
    expect((await login(user.email, 'wrong 1', '10.41.0.1')).statusCode).toBe(401);
    expect((await login(user.email, 'wrong 2', '10.41.0.2')).statusCode).toBe(401);
    const blocked = await login(user.email, 'wrong 3', '10.41.0.3');
    expect([blocked.statusCode, blocked.json().code]).toEqual([429, 'RATE_LIMITED']);
    // The answer names the end of the window (3 s), not of the 1 s block.
    expect(retryAfter(blocked)).toBeGreaterThanOrEqual(2);
    expect(retryAfter(blocked)).toBeLessThanOrEqual(3);

    await sleep(1_300); // the block is over; the window is not
    const stillCounted = await login(user.email, 'wrong 4', '10.41.0.4');
    expect(stillCounted.statusCode).toBe(429);
    expect(retryAfter(stillCounted)).toBeGreaterThanOrEqual(1);

    await sleep(retryAfter(stillCounted) * 1000 + 100);
    expect((await login(user.email, 'wrong 5', '10.41.0.5')).statusCode).toBe(401);
  });

  it('lets the owner log in from an address they logged in from while others spend the email’s budget', async () => {
    const owner = await registerAndLogin(t.app, { ip: '10.50.0.1' });
    const attack = async (round: number) => {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await login(owner.email, `guess ${round}.${i}`, `10.51.${round}.${i + 1}`)).statusCode);
      return statuses;
    };
    expect(await attack(0)).toEqual([401, 401, 429, 429]);

    // The owner's known address has a budget of its own, which the guesses did not touch.
    expect((await login(owner.email, owner.password, '10.50.0.1')).statusCode).toBe(200);
    expect(await attack(1)).toEqual([429, 429, 429, 429]);
    expect((await login(owner.email, owner.password, '10.50.0.1')).statusCode).toBe(200);

    // From an address the account never logged in from, the owner shares the spent budget...
    const fromNewAddress = await login(owner.email, owner.password, '10.52.0.1');
    expect(fromNewAddress.statusCode).toBe(429);
    // ...until at most the window or the block (the longest: 8 s here) after the last guess.
    expect(retryAfter(fromNewAddress)).toBeLessThanOrEqual(8);
    await sleep(retryAfter(fromNewAddress) * 1000 + 100);
    expect((await login(owner.email, owner.password, '10.52.0.1')).statusCode).toBe(200);
  });

  it('still bounds guesses made from a known address: its own budget blocks too', async () => {
    const owner = await registerAndLogin(t.app, { ip: '10.60.0.1' });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await login(owner.email, `typo ${i}`, '10.60.0.1')).statusCode);
    expect(statuses).toEqual([401, 401, 429]);
    // The shared budget was not spent by them: another device of the owner's still gets in.
    expect((await login(owner.email, owner.password, '10.61.0.1')).statusCode).toBe(200);
  });
});

describe('login throttle: escalating blocks (e2e)', () => {
  let t: TestApp;
  const login = loginVia(() => t);

  beforeAll(async () => {
    t = await startTestApp({
      env: {
        LOGIN_MAX_FAILURES_PER_EMAIL: '2',
        LOGIN_MAX_FAILURES_PER_IP: '1000',
        LOGIN_WINDOW_SECONDS: '1',
        LOGIN_BLOCK_SECONDS: '1',
        LOGIN_BLOCK_MAX_SECONDS: '4',
      },
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('doubles each further block of the same email, up to the longest', async () => {
    const user = await registerAndLogin(t.app, { ip: '10.70.0.1' });
    const waits: number[] = [];
    for (let round = 0; round < 4; round++) {
      expect((await login(user.email, `wrong ${round}a`, `10.71.${round}.1`)).statusCode).toBe(401);
      expect((await login(user.email, `wrong ${round}b`, `10.71.${round}.2`)).statusCode).toBe(401);
      const blocked = await login(user.email, user.password, `10.71.${round}.3`);
      expect(blocked.statusCode).toBe(429);
      waits.push(retryAfter(blocked));
      await sleep(retryAfter(blocked) * 1000 + 150);
    }
    expect(waits).toEqual([1, 2, 4, 4]);
    // Blocks never lock the owner out for good.
    expect((await login(user.email, user.password, '10.72.0.1')).statusCode).toBe(200);
  });
});
