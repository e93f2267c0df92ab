/**
 * Start-up without PostgreSQL, configuration errors, readiness during shutdown, and the built
 * server's exit on SIGTERM.
 */
import { freePort, spawnServer, waitForStatus } from '../support/server-process.js';
import { databaseUrlFor, dropDatabase, REDIS_URL, startTestApp, uniqueName } from '../support/test-app.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';

describe('life cycle (e2e)', () => {
  it('becomes ready with PostgreSQL unreachable, reporting postgres down; liveness unaffected', async () => {
    const closedPort = await freePort();
    const t = await startTestApp({ databaseHostPort: `127.0.0.1:${closedPort}`, waitForDatabase: false });
    try {
      const ready = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toMatchObject({
        status: 'ok',
        details: { postgres: { status: 'down' }, redis: { status: 'up' }, buffer: { status: 'up' } },
      });
      const live = await t.app.inject({ method: 'GET', url: '/health/live' });
      expect(live.statusCode).toBe(200);
    } finally {
      await t.close({ keepDatabase: true });
    }
  });

  it('turns readiness to 503 as soon as shutdown starts, while still serving during the drain', async () => {
    const t = await startTestApp({ listen: true, env: { SHUTDOWN_DRAIN_MS: '1500' } });
    const closing = t.app.close();
    try {
      await waitForStatus(`${t.url}/health/ready`, 503, 1_000);
      const body = (await (await fetch(`${t.url}/health/ready`)).json()) as { status: string };
      expect(body.status).toBe('shutting_down');
      const live = await fetch(`${t.url}/health/live`);
      expect(live.status).toBe(200);
    } finally {
      await closing;
      await dropDatabase(t.databaseName);
      rmSync(t.bufferPath, { recursive: true, force: true });
    }
  });

  it('answers 504 TIMEOUT when a request runs past REQUEST_TIMEOUT_MS', async () => {
    const t = await startTestApp({ env: { REQUEST_TIMEOUT_MS: '5' } });
    try {
      // A login spends an argon2id verification (tens of milliseconds), well past 5 ms.
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'slow@example.com', password: 'whatever-123' },
      });
      expect(res.statusCode).toBe(504);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json()).toMatchObject({ status: 504, code: 'TIMEOUT', requestId: res.headers['x-request-id'] });
    } finally {
      await t.close();
    }
  });

  describe('the built server', () => {
    let bufferPath: string;
    const databaseName = uniqueName();

    beforeAll(() => {
      bufferPath = mkdtempSync(path.join(tmpdir(), 'taskd-buffer-'));
    });

    afterAll(async () => {
      rmSync(bufferPath, { recursive: true, force: true });
      await dropDatabase(databaseName);
    });

    /** The environment of a server connected to this suite's database, Redis and buffer. */
    const connected = (env: Record<string, string>): Record<string, string> => ({
      NODE_ENV: 'development',
      DATABASE_URL: databaseUrlFor(databaseName),
      REDIS_URL,
      REDIS_KEY_PREFIX: `${databaseName}:`,
      BUFFER_PATH: bufferPath,
      ...env,
    });

    it.each([
      ['PORT', 'not-a-port'],
      ['BUFFER_MAX_ENTRIES', '-3'],
      ['JWT_ACCESS_TTL', 'soon'],
      ['DATABASE_URL', 'mysql://nope'],
    ])('refuses to start when %s=%s, naming the variable', async (name, value) => {
      const server = spawnServer({ [name]: value, BUFFER_PATH: bufferPath, NODE_ENV: 'development' });
      const { code } = await server.exited;
      expect(code).not.toBe(0);
      const lines = server.output().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(name);
    });

    it('refuses a missing JWT_SECRET in production', async () => {
      const server = spawnServer({ NODE_ENV: 'production', BUFFER_PATH: bufferPath });
      const { code } = await server.exited;
      expect(code).not.toBe(0);
      expect(server.output()).toContain('JWT_SECRET');
    });

    it('keeps running when the deadline passes while an answer is still streaming to a slow client', async () => {
      const port = await freePort();
      const server = spawnServer(connected({ REQUEST_TIMEOUT_MS: '1000' }), port);
      const client = new net.Socket();
      try {
        await waitForStatus(`${server.url}/health/ready`, 200);
        const asset = '/docs/swagger-ui-bundle.js';
        const whole = await fetch(`${server.url}${asset}`);
        expect(whole.status).toBe(200);
        expect((await whole.arrayBuffer()).byteLength).toBeGreaterThan(500_000);
        // Tens of MB asked for on one connection that is never read: the first answer's headers
        // are out, its body stalls in full socket buffers, and the deadline passes meanwhile.
        await new Promise<void>((resolve, reject) => client.once('error', reject).connect(port, '127.0.0.1', resolve));
        client.pause();
        client.write(`GET ${asset} HTTP/1.1\r\nHost: localhost\r\n\r\n`.repeat(24));
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        expect(server.child.exitCode).toBeNull();
        expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
        expect(server.output()).not.toContain('ERR_HTTP_HEADERS_SENT');
      } finally {
        client.destroy();
        server.child.kill('SIGKILL');
      }
    });

    it('starts, serves, and exits 0 on SIGTERM within SHUTDOWN_TIMEOUT_MS', async () => {
      const port = await freePort();
      const server = spawnServer(connected({ SHUTDOWN_DRAIN_MS: '200', SHUTDOWN_TIMEOUT_MS: '5000' }), port);
      try {
        await waitForStatus(`${server.url}/health/ready`, 200);
        expect((await fetch(`${server.url}/docs`)).status).toBe(200);
        const started = Date.now();
        server.child.kill('SIGTERM');
        const { code } = await server.exited;
        expect(code).toBe(0);
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(server.output()).toContain('shutdown complete');
      } finally {
        server.child.kill('SIGKILL');
      }
    });
  });
});
