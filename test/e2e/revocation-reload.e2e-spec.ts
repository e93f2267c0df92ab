/**
 * A revoked session's access token is refused by every instance (docs/architecture.md, "Sessions"),
 * the in-memory set being "reloaded from Redis after any reconnect". Instance B is cut off from
 * Redis while the user logs out on instance A. When B's connections come back, its subscriber
 * connection happens to be ready before its command connection (they reconnect independently,
 * each on its own backoff timer): B must still learn of the revocation. And an instance that
 * starts while Redis is unreachable is not ready until it has loaded the revoked sessions.
 */
import net from 'node:net';
import { registerAndLogin } from '../support/auth.js';
import { REDIS_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { RedisService } from '../../src/infrastructure/redis/redis.service.js';
import { SessionRepository } from '../../src/modules/auth/session.repository.js';
import { waitUntil } from '../support/wait.js';

const SECRET = 'revocation-secret-0123456789-0123456789-012345';

type Mode = 'pass' | 'refuse' | 'subscriber-only' | 'main-only';

/** A Redis proxy that can tell ioredis connections apart by their CLIENT SETNAME. */
class NamedRedisProxy {
  mode: Mode = 'pass';
  readonly sockets = new Set<net.Socket>();
  subscriberConnects = 0;
  private constructor(private readonly server: net.Server, private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<NamedRedisProxy> {
    const server = net.createServer();
    const proxy = new NamedRedisProxy(server, target);
    server.on('connection', (client) => proxy.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  cutAll(): void {
    for (const socket of [...this.sockets]) socket.destroy();
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const text = head.toString('latin1');
      const isMain = text.includes('taskd-main');
      const isSubscriber = text.includes('taskd-subscriber');
      if (!isMain && !isSubscriber && head.length < 4096) return;
      client.off('data', onData);
      client.pause();
      if ((this.mode === 'subscriber-only' && !isSubscriber) || (this.mode === 'main-only' && !isMain)) {
        client.destroy();
        return;
      }
      if (isSubscriber) this.subscriberConnects += 1;
      const upstream = net.connect(this.target);
      this.sockets.add(upstream);
      upstream.on('error', () => undefined);
      upstream.once('close', () => (this.sockets.delete(upstream), client.destroy()));
      client.once('close', () => upstream.destroy());
      upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    };
    client.on('data', onData);
  }
}

const waitFor = async (predicate: () => boolean | Promise<boolean>, ms: number) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await predicate()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
};

describe('revocation reload after a Redis reconnect (e2e)', () => {
  let a: TestApp;
  let b: TestApp;
  let proxy: NamedRedisProxy;

  beforeAll(async () => {
    const target = new URL(REDIS_URL);
    proxy = await NamedRedisProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
    a = await startTestApp({ env: { JWT_SECRET: SECRET } });
    b = await startTestApp({
      databaseName: a.databaseName,
      env: { JWT_SECRET: SECRET, REDIS_URL: `redis://127.0.0.1:${proxy.port}${target.pathname}` },
    });
  });

  afterAll(async () => {
    proxy.mode = 'pass';
    await b.close({ keepDatabase: true });
    await a.close();
    await proxy.close();
  });

  const scenario = async (first: 'subscriber-only' | 'main-only') => {
    const user = await registerAndLogin(a.app);
    const viaB = () => b.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth }).then((r) => r.statusCode);
    expect(await viaB()).toBe(200);

    // B loses Redis (both of its connections).
    proxy.mode = 'refuse';
    proxy.cutAll();
    const redisB = b.app.get(RedisService);
    expect(await waitFor(() => !redisB.isUp(), 3_000)).toBe(true);

    // Meanwhile the user logs out on A.
    const logout = await a.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: user.auth });
    expect(logout.statusCode).toBe(204);

    // One of B's connections reconnects first, the other a moment later.
    const before = proxy.subscriberConnects;
    proxy.mode = first;
    if (first === 'subscriber-only') expect(await waitFor(() => proxy.subscriberConnects > before, 5_000)).toBe(true);
    else expect(await waitFor(() => redisB.isUp(), 5_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    proxy.mode = 'pass';
    expect(await waitFor(() => redisB.isUp() && proxy.subscriberConnects > before, 5_000)).toBe(true);

    // Everything is connected again; give B well over the promised second.
    await new Promise((r) => setTimeout(r, 2_000));
    return viaB();
  };

  it('control: command connection back first -> B refuses the logged-out token', async () => {
    expect(await scenario('main-only')).toBe(401);
  });

  it('subscriber connection back first -> B must still refuse the logged-out token', async () => {
    expect(await scenario('subscriber-only')).toBe(401);
  });
});

describe('readiness before the revoked sessions are loaded (e2e)', () => {
  let a: TestApp;
  let c: TestApp | undefined;
  let proxy: NamedRedisProxy;

  beforeAll(async () => {
    const target = new URL(REDIS_URL);
    proxy = await NamedRedisProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
    a = await startTestApp({ env: { JWT_SECRET: SECRET } });
  });

  afterAll(async () => {
    proxy.mode = 'pass';
    await c?.close({ keepDatabase: true });
    await a.close();
    await proxy.close();
  });

  it('answers 503 until it has loaded them, then refuses a session revoked before it started', async () => {
    const user = await registerAndLogin(a.app);
    expect((await a.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: user.auth })).statusCode).toBe(204);

    proxy.mode = 'refuse';
    const target = new URL(REDIS_URL);
    c = await startTestApp({
      databaseName: a.databaseName,
      env: { JWT_SECRET: SECRET, REDIS_URL: `redis://127.0.0.1:${proxy.port}${target.pathname}` },
    });
    const ready = () => c!.app.inject({ method: 'GET', url: '/health/ready' });
    const before = await ready();
    expect(before.statusCode).toBe(503);
    expect(before.json().status).toBe('error');

    proxy.mode = 'pass';
    await waitUntil('the instance is ready', async () => (await ready()).statusCode === 200, 10_000);
    const profile = await c.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth });
    expect(profile.statusCode).toBe(401);
  });
});

describe('periodic reload of the revoked sessions (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { JWT_SECRET: SECRET, REVOCATION_RELOAD_INTERVAL_MS: '200' } });
  });

  afterAll(async () => {
    await t.close();
  });

  it('refuses a session revoked in Redis whose publication was lost, within the configured interval', async () => {
    const user = await registerAndLogin(t.app);
    const profile = () => t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth }).then((r) => r.statusCode);
    expect(await profile()).toBe(200);
    const sid = (JSON.parse(Buffer.from(user.accessToken.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

    // Recorded as revoked in Redis, as a logout on another instance would, but never announced.
    await t.app.get(SessionRepository).revoke(user.userId, [sid], Date.now());

    await waitUntil('the instance refuses the revoked session', async () => (await profile()) === 401, 5_000);
  });
});
