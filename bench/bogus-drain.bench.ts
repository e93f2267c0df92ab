/**
 * What impossible writes cost a replica once PostgreSQL returns. With PostgreSQL cut by a fault
 * proxy, one user queues 1,000 updates and deletes of task ids that never existed (202 each),
 * then another user queues a create and an update behind them; PostgreSQL returns and the bench
 * times:
 *   - the drain: from PostgreSQL's return (the proxy passing again) until the buffer holds
 *     nothing, and from the moment the replica noticed (its breaker closing, up to a heartbeat
 *     of 1 s later) until then;
 *   - the other user's visibility delay: from PostgreSQL's return until both of their writes are
 *     read back by GET.
 * The same with 1,000 creates instead of the impossible writes, for comparison. Each scenario
 * runs on a fresh server (its own database, buffer and Redis prefix), logging at `info` to
 * /dev/null so that the log lines are paid for. Needs PostgreSQL and Redis, as the e2e suites do.
 *
 *   npm run bench:drain [-- 1000]
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { PostgresAvailability } from '../src/infrastructure/database/postgres-availability.js';
import { LmdbBuffer } from '../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin, type TestUser } from '../test/support/auth.js';
import { FaultProxy } from '../test/support/fault-proxy.js';
import { PG_URL, startTestApp, type TestApp } from '../test/support/test-app.js';

const COUNT = Number(process.argv[2] ?? 1_000);
const CONCURRENCY = 25;
const TASKS = '/api/v1/tasks';

type Scenario = 'impossible updates and deletes' | 'creates';

interface Figures {
  drainFromReturnMs: number;
  drainFromDetectionMs: number;
  visibleFromReturnMs: number;
  setAside: number;
}

async function inject(t: TestApp, user: TestUser, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) {
  return t.app.inject({ method, url, headers: user.auth, ...(payload ? { payload: payload as Record<string, unknown> } : {}) });
}

function write(t: TestApp, user: TestUser, scenario: Scenario, n: number) {
  if (scenario === 'creates') return inject(t, user, 'POST', TASKS, { title: `created while cut ${n}` });
  return n % 2 === 0
    ? inject(t, user, 'PATCH', `${TASKS}/${randomUUID()}`, { title: `never there ${n}` })
    : inject(t, user, 'DELETE', `${TASKS}/${randomUUID()}`);
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now();
}

async function measure(scenario: Scenario): Promise<Figures> {
  const target = new URL(PG_URL);
  const proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  const t = await startTestApp({
    databaseHostPort: proxy.hostPort,
    env: { LOG_LEVEL: 'info', BUFFER_USER_MAX_ENTRIES: String(COUNT * 2), BUFFER_SET_ASIDE_MAX_ENTRIES: String(COUNT * 2) },
    logDestination: pino.destination({ dest: '/dev/null', sync: false }),
  });
  try {
    const [flooder, other] = [await registerAndLogin(t.app), await registerAndLogin(t.app)];
    const kept = await inject(t, other, 'POST', TASKS, { title: 'kept' });
    const keptId = kept.json<{ id: string }>().id;
    const postgres = t.app.get(PostgresAvailability);
    const buffer = t.app.get(LmdbBuffer);
    proxy.cut();
    await waitFor(() => !postgres.isUp());

    for (let start = 0; start < COUNT; start += CONCURRENCY) {
      const wave = Array.from({ length: Math.min(CONCURRENCY, COUNT - start) }, (_, i) => write(t, flooder, scenario, start + i));
      for (const res of await Promise.all(wave)) if (res.statusCode !== 202) throw new Error(`expected 202, got ${res.statusCode}`);
    }
    const created = await inject(t, other, 'POST', TASKS, { title: 'created while cut' });
    const updated = await inject(t, other, 'PATCH', `${TASKS}/${keptId}`, { status: 'done' });
    if (created.statusCode !== 202 || updated.statusCode !== 202) throw new Error("the other user's writes were not buffered");
    const createdId = created.json<{ id: string }>().id;
    const setAsideBefore = buffer.deadLetterCount;

    let detectedAt = 0;
    const unsubscribe = postgres.onStateChange((state) => {
      if (state === 'up') detectedAt = performance.now();
    });
    const returnedAt = performance.now();
    proxy.pass();
    const visibleAt = await waitFor(async () => {
      const [task, keptNow] = [await inject(t, other, 'GET', `${TASKS}/${createdId}`), await inject(t, other, 'GET', `${TASKS}/${keptId}`)];
      return task.statusCode === 200 && keptNow.statusCode === 200 && keptNow.json<{ status: string }>().status === 'done';
    });
    const drainedAt = await waitFor(() => postgres.isUp() && buffer.holdsNothing());
    unsubscribe();
    return {
      drainFromReturnMs: drainedAt - returnedAt,
      drainFromDetectionMs: drainedAt - detectedAt,
      visibleFromReturnMs: visibleAt - returnedAt,
      setAside: buffer.deadLetterCount - setAsideBefore,
    };
  } finally {
    proxy.pass();
    await t.close();
    await proxy.close();
  }
}

const ms = (value: number) => `${Math.round(value).toString().padStart(5)} ms`;
for (const scenario of ['impossible updates and deletes', 'creates'] as const) {
  const figures = await measure(scenario);
  console.log(
    `${String(COUNT)} ${scenario.padEnd(30)} drain ${ms(figures.drainFromReturnMs)} from PostgreSQL's return` +
      ` (${ms(figures.drainFromDetectionMs)} from detection); other user's writes visible after ${ms(figures.visibleFromReturnMs)};` +
      ` set aside ${figures.setAside}`,
  );
}
