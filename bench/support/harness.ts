/**
 * What a bench needs around the server it measures: the built server started as a child process
 * with its production command line (`npm run start:prod`), and an autocannon load that reports
 * latencies from every response's own time, to the microsecond (autocannon's own percentiles
 * are whole milliseconds).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';

export interface Figures {
  /** Answers received in all. */
  requests: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  /** Answers other than the expected status. */
  unexpected: number;
  errors: number;
}

export interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Child processes still running, killed if the bench fails. */
const running = new Set<ChildProcess>();

export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once `check` holds, polling; fails after `timeoutMs`. */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The production command line (`npm run start:prod`, which the Dockerfile's ENV and CMD repeat):
 * the environment it sets, node's V8 flags and the entry file.
 */
export function productionCommand(dir = '.'): { env: Record<string, string>; args: string[] } {
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const words = pkg.scripts['start:prod']!.split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_][A-Z0-9_]*=/.test(words[0] ?? '')) {
    const [name, value] = words.shift()!.split('=', 2) as [string, string];
    env[name] = value;
  }
  const [node, ...args] = words;
  if (node !== 'node')
    throw new Error(`start:prod does not run node: ${pkg.scripts['start:prod']}`);
  return { env, args };
}

/** How a server is started beside its environment. */
export interface StartOptions {
  /** A command the server's command line is given to (a profiler: `valgrind --tool=…`). */
  wrapper?: string[];
  /** How long it may take to reach PostgreSQL. */
  timeoutMs?: number;
}

/**
 * Starts the built server with its production command line; resolves once PostgreSQL is up for
 * it. `dir`: another checkout's, run by its own Node from its lockfile.
 */
export async function startServer(env: Record<string, string>, dir?: string, options: StartOptions = {}): Promise<Server> {
  const production = productionCommand(dir);
  const port = await freePort();
  const node = dir ? path.resolve(dir, 'node_modules/.bin/node') : process.execPath;
  const [command, ...args] = [...(options.wrapper ?? []), node, ...production.args] as [string, ...string[]];
  const child = spawn(command, args, {
    ...(dir ? { cwd: dir } : {}),
    env: {
      PATH: process.env.PATH ?? '',
      ...production.env,
      ...env,
      PORT: String(port),
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const url = `http://127.0.0.1:${port}`;
  // Ready comes before PostgreSQL is connected, by design; a bench needs the database too.
  await until('the server to reach PostgreSQL', async () => {
    const ready = (await (await fetch(`${url}/health/ready`)).json()) as {
      details?: { postgres?: { status?: string } };
    };
    return ready.details?.postgres?.status === 'up';
  }, options.timeoutMs);
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** CPU time a process has used so far (user and system), in milliseconds; 0 once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 a second).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

export async function api(
  base: string,
  method: string,
  route: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

export async function load(
  url: string,
  options: {
    method?: 'GET' | 'POST';
    headers?: Record<string, string>;
    body?: string;
    connections: number;
    /** Seconds, unless `amount` is given. */
    duration: number;
    /** A number of requests to send instead of a duration. */
    amount?: number;
    expect?: number;
  },
): Promise<Figures> {
  const instance = autocannon({
    url,
    method: options.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body,
    connections: options.connections,
    ...(options.amount === undefined ? { duration: options.duration } : { amount: options.amount }),
  }) as Promise<autocannon.Result> & NodeJS.EventEmitter; // the tracker, thenable
  const times: number[] = [];
  instance.on(
    'response',
    (_client: unknown, _status: number, _bytes: number, ms: number) => void times.push(ms),
  );
  const result = await instance;
  times.sort((a, b) => a - b);
  const percentile = (q: number) =>
    Number((times[Math.max(0, Math.ceil(q * times.length) - 1)] ?? 0).toFixed(2));
  const expected = options.expect ?? 200;
  const codes =
    (result as unknown as { statusCodeStats?: Record<string, { count: number }> })
      .statusCodeStats ?? {};
  const unexpected = Object.entries(codes)
    .filter(([code]) => Number(code) !== expected)
    .reduce((sum, [, v]) => sum + v.count, 0);
  if (unexpected > 0)
    process.stderr.write(
      `  ${url}: ${unexpected} answers other than ${expected}: ${JSON.stringify(codes)}\n`,
    );
  return {
    requests: times.length,
    reqPerSec: Math.round(result.requests.average),
    p50: percentile(0.5),
    p99: percentile(0.99),
    unexpected,
    errors: result.errors + result.timeouts,
  };
}

const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** The routes the A/B benches load. */
export type Route = 'live' | 'list' | 'create';

/** A server with a user signed in and tasks to list. */
export interface SeededServer {
  server: Server;
  token: string;
  bufferPath: string;
}

/** The Redis key prefix of the A/B benches' server number `index`. */
export function abKeyPrefix(index: number): string {
  return `taskd-bench-ab-${index}:`;
}

/** The environment of the A/B benches' server number `index`: its own database, key prefix and buffer. */
export function abEnvironment(index: number): Record<string, string> {
  const url = new URL(ADMIN_URL);
  url.pathname = `/taskd_bench_ab_${index}`;
  return {
    NODE_ENV: 'development',
    DATABASE_URL: url.toString(),
    REDIS_URL,
    REDIS_KEY_PREFIX: abKeyPrefix(index),
    BUFFER_PATH: mkdtempSync(path.join(tmpdir(), `taskd-bench-ab-${index}-`)),
    JWT_SECRET: 'bench-ab-secret-'.padEnd(48, 'x'),
    LOG_LEVEL: 'info',
    REGISTER_MAX_PER_IP: '1000',
  };
}

/**
 * Server number `index` (of the checkout in `dir`, or this one) on a new database: a user
 * registered and signed in, and 25 tasks, as `npm run bench` seeds its list.
 */
export async function startSeeded(index: number, dir?: string, options: StartOptions = {}): Promise<SeededServer> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS taskd_bench_ab_${index} WITH (FORCE)`);
  await admin.end();
  const env = abEnvironment(index);
  const server = await startServer(env, dir, options);
  const email = `bench-ab-${Date.now()}@example.com`;
  const password = 'bench-password-1';
  await api(server.url, 'POST', '/api/v1/auth/register', { email, password, name: 'Bench' });
  const { json } = await api(server.url, 'POST', '/api/v1/auth/login', { email, password });
  const token = json.accessToken as string;
  for (let i = 0; i < 25; i++) {
    const task = { title: `Seeded task ${i}`, description: 'x'.repeat(120), priority: ['low', 'medium', 'high'][i % 3] };
    await api(server.url, 'POST', '/api/v1/tasks', task, token);
  }
  return { server, token, bufferPath: env.BUFFER_PATH! };
}

/** The request of each A/B route: liveness, the first page of the list, or a create (201 expected). */
export const ROUTE_REQUESTS: Record<Route, { method: 'GET' | 'POST'; path: string; body?: string; expect?: number }> = {
  live: { method: 'GET', path: '/health/live' },
  list: { method: 'GET', path: '/api/v1/tasks' },
  create: {
    method: 'POST',
    path: '/api/v1/tasks',
    body: JSON.stringify({ title: 'Benchmark task', description: 'created under load', priority: 'high' }),
    expect: 201,
  },
};

/** Loads one of the A/B routes (`ROUTE_REQUESTS`), authenticated but for liveness. */
export function loadRoute(
  route: Route,
  { server, token }: SeededServer,
  shape: { connections: number; duration: number; amount?: number },
): Promise<Figures> {
  const { method, path: target, body, expect } = ROUTE_REQUESTS[route];
  const headers: Record<string, string> = route === 'live' ? {} : { authorization: `Bearer ${token}` };
  return load(`${server.url}${target}`, { method, headers, body, expect, ...shape });
}

/** `items` in the order of round `round` of an A/B series: as given in even rounds, reversed in odd ones. */
export function inTurn<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}

/** The middle value; of an even count, the mean of the two middle ones. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Meters the CPU time PostgreSQL's client backends on `database` spend from now until `stop()`,
 * in milliseconds (from /proc; PostgreSQL on this machine): the backends there now and those
 * that open meanwhile. Background processes (WAL writer, checkpointer, autovacuum) are not
 * counted, nor a backend that exits before `stop()`.
 */
export async function databaseCpuMeter(admin: pg.Client, database: string): Promise<{ stop(): Promise<number> }> {
  const backends = async () =>
    (
      await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`,
        [database],
      )
    ).rows.map((row) => row.pid);
  const start = new Map((await backends()).map((pid) => [pid, cpuMs(pid)]));
  return {
    async stop() {
      let total = 0;
      for (const pid of await backends()) {
        const now = cpuMs(pid);
        if (now > 0) total += now - (start.get(pid) ?? 0);
      }
      return total;
    },
  };
}
