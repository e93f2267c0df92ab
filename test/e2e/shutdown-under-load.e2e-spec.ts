/**
 * Graceful shutdown under load, on the built server in its own process: steady authenticated
 * reads and writes over keep-alive connections, then SIGTERM (or SIGINT). Readiness must turn
 * 503 first; the load (Node's fetch, which keeps connections alive) stops once readiness says so (as a load balancer would); every request
 * that was sent must complete with its normal answer; the process exits 0 within
 * SHUTDOWN_TIMEOUT_MS and closes the buffer cleanly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, spawnServer, waitForStatus } from '../support/server-process.js';
import { databaseUrlFor, dropDatabase, REDIS_URL, uniqueName } from '../support/test-app.js';

const DRAIN_MS = 1_000;
const TIMEOUT_MS = 10_000;
const WORKERS = 8;

interface Outcome {
  kind: 'read' | 'write';
  status?: number;
  error?: string;
  sentAt: number;
}

describe.each(['SIGTERM', 'SIGINT'] as const)('shutdown under load on %s (e2e)', (signal) => {
  const databaseName = uniqueName();
  const bufferPath = mkdtempSync(path.join(tmpdir(), 'taskd-buffer-'));

  afterAll(async () => {
    rmSync(bufferPath, { recursive: true, force: true });
    await dropDatabase(databaseName);
  });

  it('drains in order and drops nothing', async () => {
    const port = await freePort();
    const server = spawnServer(
      {
        NODE_ENV: 'test',
        DATABASE_URL: databaseUrlFor(databaseName),
        REDIS_URL,
        REDIS_KEY_PREFIX: `${databaseName}:`,
        BUFFER_PATH: bufferPath,
        SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
        SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
        LOG_LEVEL: 'info',
      },
      port,
    );
    try {
      await waitForStatus(`${server.url}/health/ready`, 200);
      await waitForPostgres(server.url);
      const token = await signUp(server.url);
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

      const outcomes: Outcome[] = [];
      let notReadyAt: number | undefined;
      let stop = false;
      const worker = async (index: number) => {
        for (let i = 0; !stop; i++) {
          const kind = (index + i) % 2 === 0 ? 'read' : 'write';
          const outcome: Outcome = { kind, sentAt: Date.now() };
          outcomes.push(outcome);
          try {
            const res = await fetch(`${server.url}/api/v1/tasks`, {
              method: kind === 'read' ? 'GET' : 'POST',
              headers,
              body: kind === 'write' ? JSON.stringify({ title: `task ${index}-${i}` }) : undefined,
            });
            await res.arrayBuffer();
            outcome.status = res.status;
          } catch (error) {
            outcome.error = (error as Error).cause ? String((error as Error).cause) : (error as Error).message;
          }
        }
      };
      const poller = async () => {
        while (!stop) {
          const res = await fetch(`${server.url}/health/ready`).catch(() => undefined);
          if (res?.status === 503) {
            notReadyAt = Date.now();
            stop = true; // the load balancer takes the instance out of rotation
          }
          await new Promise((r) => setTimeout(r, 25));
        }
      };

      const load = Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), poller()]);
      await new Promise((r) => setTimeout(r, 1_500));
      const signalledAt = Date.now();
      const before = outcomes.length;
      server.child.kill(signal);
      await load;
      const { code } = await server.exited;
      const exitedAt = Date.now();

      expect(before).toBeGreaterThan(50);
      expect(notReadyAt).toBeDefined();
      expect(notReadyAt! - signalledAt).toBeLessThan(DRAIN_MS);
      const failed = outcomes.filter((o) => o.error || !o.status || (o.kind === 'read' ? o.status !== 200 : o.status !== 201));
      expect(failed).toEqual([]);
      expect(outcomes.filter((o) => o.sentAt >= signalledAt).length).toBeGreaterThan(0);
      expect(code).toBe(0);
      expect(exitedAt - signalledAt).toBeLessThan(TIMEOUT_MS);
      expect(exitedAt - signalledAt).toBeGreaterThanOrEqual(DRAIN_MS);
      const log = server.output();
      const order = ['shutdown started', 'readiness now fails', 'LMDB closed', 'shutdown complete'].map((line) => log.indexOf(line));
      expect(order.every((position) => position >= 0)).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
    } finally {
      server.child.kill('SIGKILL');
    }
  });
});

async function waitForPostgres(url: string): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    const body = (await (await fetch(`${url}/health/ready`)).json()) as { details: { postgres: { status: string } } };
    if (body.details.postgres.status === 'up') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('PostgreSQL did not come up');
}

async function signUp(url: string): Promise<string> {
  const credentials = { email: `load-${Date.now()}@example.com`, password: 'load-password-1' };
  const post = (route: string, body: unknown) =>
    fetch(`${url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect((await post('/api/v1/auth/register', { ...credentials, name: 'Load' })).status).toBe(201);
  const login = await post('/api/v1/auth/login', credentials);
  return ((await login.json()) as { accessToken: string }).accessToken;
}
