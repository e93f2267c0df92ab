/**
 * `npm run bench`: measures the built server against local PostgreSQL and Redis, beside a bare
 * Fastify + pg + JWT baseline serving the same list query and insert, in the same run.
 *
 *   npm run bench [-- --duration 10] [--connections 50] [--json bench/results/latest.json] [--server <dir>]
 *
 * Prints req/s, p50, p99 and the ratio to the baseline for each route, the CPU time a request
 * costs in the server's process and in its PostgreSQL backends (for the baseline too: the
 * service's own cost apart from the schema's), RSS under load, start-up
 * time, login throughput and its effect on a cheap authenticated route, a login's p99 alone and
 * during a flood of registrations, buffered-write throughput and the replay drain rate; writes
 * the same figures as JSON. The service and the
 * baseline both reach PostgreSQL directly while they are compared; the buffered writes are
 * measured on a second instance that reaches it through a TCP proxy, which is cut and then
 * restored. Uses its own database (`taskd_bench`, recreated) and Redis key prefix.
 *
 * `--server <dir>`: the server of another built checkout (an earlier release, say), started with
 * its own production command line and Node, measured by this runner beside the same baseline;
 * alternate runs with and without it to compare two builds with one yardstick.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { deleteRedisKeys } from '../test/support/redis-keys.js';
import { cpuMs, databaseCpuMeter } from './support/harness.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    json: { type: 'string', default: 'bench/results/latest.json' },
    server: { type: 'string' },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB_NAME = 'taskd_bench';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
/** The bench's own keys, deleted at the end. */
const REDIS_KEY_PREFIX = 'taskd-bench:';
const JWT_SECRET = 'bench-secret-0123456789-0123456789-0123456789';
/** The checkout whose server is measured: this one, or `--server`'s with its own Node. */
const SERVER_DIR = path.resolve(args.server ?? '.');
const SERVER_NODE = args.server ? path.join(SERVER_DIR, 'node_modules/.bin/node') : process.execPath;
/** Logins in flight at once while measuring a login's p99 alone and during a flood. */
const LOGIN_UNDER_FLOOD_CONNECTIONS = 2;
/** Registrations a second in the flood: several times what argon2 hashes on two cores. */
const REGISTRATION_FLOOD_RATE = 200;

interface Figures {
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** Answers by status code. */
  statuses: Record<string, number>;
}

/** CPU time a request cost, in microseconds: the server's process and its PostgreSQL backends. */
interface CpuPerRequest {
  server: number;
  database: number;
}

interface Row extends Figures {
  name: string;
  cpu?: CpuPerRequest;
  baseline?: Figures & { cpu: CpuPerRequest };
}

const rows: Row[] = [];
const notes: Record<string, number | string> = {};

// ---------- processes ----------

interface Server {
  child: ChildProcess;
  url: string;
  peakRssMb: number;
  peakAnonRssMb: number;
  /** Peak VmRSS while each named load ran. */
  peakRssByLoad: Map<string, number>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string, status = 200, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).status === status) return;
    } catch {
      // not listening yet
    }
    await sleep(10);
  }
  throw new Error(`${url} did not answer ${status}`);
}

/** Resident set in MB: all of it (VmRSS) and its anonymous part (the heap; not the mapped binary). */
function rssMb(pid: number): { total: number; anon: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
    return { total: field('VmRSS'), anon: field('RssAnon') };
  } catch {
    return { total: 0, anon: 0 };
  }
}

/** Child processes still running, killed if the bench fails. */
const running = new Set<ChildProcess>();

/** The service's production command line, from `SERVER_DIR`, with its Node. */
interface Command {
  node: string;
  args: string[];
  cwd: string;
}

async function startServer(command: Command, env: Record<string, string>, readyPath: string): Promise<Server & { startupMs: number }> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(command.node, command.args, {
    cwd: command.cwd,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}${readyPath}`);
  const startupMs = performance.now() - started;
  const server = {
    child,
    url,
    startupMs,
    peakRssMb: 0,
    peakAnonRssMb: 0,
    peakRssByLoad: new Map<string, number>(),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
  const sampler = setInterval(() => {
    const rss = rssMb(child.pid!);
    server.peakRssMb = Math.max(server.peakRssMb, rss.total);
    server.peakAnonRssMb = Math.max(server.peakAnonRssMb, rss.anon);
    for (const name of runningLoads) server.peakRssByLoad.set(name, Math.max(server.peakRssByLoad.get(name) ?? 0, rss.total));
  }, 200);
  child.once('exit', () => clearInterval(sampler));
  return server;
}

/** A TCP proxy between the service and PostgreSQL that can refuse connections on command. */
function startProxy(target: { host: string; port: number }): Promise<{ port: number; cut(): void; restore(): void; close(): void }> {
  let open = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        cut() {
          open = false;
          for (const s of sockets) s.resetAndDestroy();
        },
        restore() {
          open = true;
        },
        close() {
          server.close();
          for (const s of sockets) s.destroy();
        },
      }),
    ),
  );
}

// ---------- load ----------

/** The loads running now, by name, for the RSS samplers. */
const runningLoads = new Set<string>();

async function load(
  name: string,
  url: string,
  options: {
    method?: 'GET' | 'POST';
    headers?: Record<string, string>;
    body?: string;
    connections?: number;
    duration?: number;
    /** The status, or statuses, expected; others are reported. */
    expect?: number | number[];
    /** Replace `[<id>]` in the body with a fresh id on every request. */
    idReplacement?: boolean;
    /** Requests per second from all connections together; unpaced when absent. */
    overallRate?: number;
  } = {},
): Promise<Figures> {
  runningLoads.add(name);
  const instance = autocannon({
    url,
    method: options.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body,
    connections: options.connections ?? CONNECTIONS,
    duration: options.duration ?? DURATION,
    idReplacement: options.idReplacement ?? false,
    ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
  }) as Promise<autocannon.Result> & NodeJS.EventEmitter; // the tracker, thenable (its typings say only the promise)
  // Every response's time, to the microsecond: autocannon's own percentiles are whole
  // milliseconds, too coarse for a 1–2 ms p99 and the ratios made of it.
  const times: number[] = [];
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => void times.push(ms));
  const result = await instance;
  runningLoads.delete(name);
  times.sort((a, b) => a - b);
  const percentile = (q: number) => Number((times[Math.max(0, Math.ceil(q * times.length) - 1)] ?? 0).toFixed(2));
  const expected = [options.expect ?? 200].flat();
  const codes = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {};
  const wrong = Object.entries(codes)
    .filter(([code]) => !expected.includes(Number(code)))
    .reduce((sum, [, v]) => sum + v.count, 0);
  const figures = {
    reqPerSec: Math.round(result.requests.average),
    p50: percentile(0.5),
    p99: percentile(0.99),
    non2xx: wrong,
    errors: result.errors + result.timeouts,
    statuses: Object.fromEntries(Object.entries(codes).map(([code, v]) => [code, v.count])),
  };
  if (wrong > 0) process.stderr.write(`  ${name}: ${wrong} answers other than ${expected.join(', ')}: ${JSON.stringify(codes)}\n`);
  return figures;
}

// ---------- set-up ----------

async function recreateDatabase(): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await admin.end();
}

async function api(base: string, method: string, route: string, body?: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

interface Readiness {
  details?: { postgres?: { status?: string }; buffer?: { depth?: number } };
}

async function readiness(base: string): Promise<Readiness> {
  return (await (await fetch(`${base}/health/ready`)).json()) as Readiness;
}

async function waitForPostgres(base: string, status: 'up' | 'down'): Promise<void> {
  const until = Date.now() + 20_000;
  const reached = (seen: string | undefined) => (status === 'up' ? seen === 'up' : seen !== 'up');
  while (!reached((await readiness(base)).details?.postgres?.status)) {
    if (Date.now() > until) throw new Error(`PostgreSQL did not turn ${status} for ${base}`);
    await sleep(20);
  }
}

async function bufferDepth(base: string): Promise<number> {
  return (await readiness(base)).details?.buffer?.depth ?? 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The production command line (`npm run start:prod`, which the Dockerfile's ENV and CMD repeat):
 * the environment it sets, node's V8 flags and the entry file. BENCH_NODE_FLAGS replaces the
 * flags, to try others.
 */
function productionCommand(): { env: Record<string, string>; args: string[] } {
  const pkg = JSON.parse(readFileSync(path.join(SERVER_DIR, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const words = pkg.scripts['start:prod']!.split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_][A-Z0-9_]*=/.test(words[0] ?? '')) {
    const [name, value] = words.shift()!.split('=', 2) as [string, string];
    env[name] = value;
  }
  const [node, ...rest] = words;
  if (node !== 'node') throw new Error(`start:prod does not run node: ${pkg.scripts['start:prod']}`);
  const entry = rest.pop()!;
  const flags = process.env.BENCH_NODE_FLAGS === undefined ? rest : process.env.BENCH_NODE_FLAGS.split(/\s+/).filter(Boolean);
  return { env, args: [...flags, entry] };
}

// ---------- main ----------

async function main(): Promise<void> {
  await recreateDatabase();
  const pgUrl = new URL(ADMIN_URL);
  const proxy = await startProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
  const direct = new URL(ADMIN_URL);
  direct.pathname = `/${DB_NAME}`;
  const viaProxy = new URL(direct);
  viaProxy.host = `127.0.0.1:${proxy.port}`;
  const bufferPath = mkdtempSync(path.join(tmpdir(), 'taskd-bench-'));

  // The service talks to PostgreSQL directly while it is compared with the baseline, which does
  // too; only the buffered-write phase below runs a second instance through the proxy it cuts.
  const production = productionCommand();
  const serviceEnv = (databaseUrl: URL): Record<string, string> => ({
    ...production.env,
    NODE_ENV: 'development',
    DATABASE_URL: databaseUrl.toString(),
    REDIS_URL,
    REDIS_KEY_PREFIX,
    BUFFER_PATH: bufferPath,
    JWT_SECRET,
    LOG_LEVEL: 'info',
    // Every login here is the bench's own, many at once from one address: the throttle's
    // budgets (which hold places for logins in flight) are lifted, as is the registration
    // throttle, so that the flood below reaches the hash queue it measures.
    LOGIN_MAX_FAILURES_PER_IP: '100000',
    LOGIN_MAX_FAILURES_PER_EMAIL: '10000',
    REGISTER_MAX_PER_IP: '1000000',
    // Thousands of logins of one user: at the default bound each would revoke the oldest
    // session, the one whose access token every authenticated load here uses.
    SESSION_MAX_PER_USER: '100000',
  });
  const SERVICE_COMMAND: Command = { node: SERVER_NODE, args: production.args, cwd: SERVER_DIR };
  if (args.server) notes.server = args.server;
  notes.appNodeFlags = production.args.slice(0, -1).join(' ');
  notes.appEnvironment = Object.entries(production.env).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)';
  const app = await startServer(SERVICE_COMMAND, serviceEnv(direct), '/health/ready');
  notes.appStartupMs = Math.round(app.startupMs);
  // Ready before PostgreSQL is connected is by design; the bench needs the database too.
  await waitForPostgres(app.url, 'up');

  const email = `bench-${Date.now()}@example.com`;
  const password = 'bench-password-1';
  await api(app.url, 'POST', '/api/v1/auth/register', { email, password, name: 'Bench' });
  const { json: tokens } = await api(app.url, 'POST', '/api/v1/auth/login', { email, password });
  const token = tokens.accessToken as string;
  for (let i = 0; i < 25; i++) {
    await api(app.url, 'POST', '/api/v1/tasks', { title: `Seeded task ${i}`, description: 'x'.repeat(120), priority: ['low', 'medium', 'high'][i % 3] }, token);
  }
  const auth = { authorization: `Bearer ${token}` };

  const baseline = await startServer({ node: process.execPath, args: ['bench/baseline.ts'], cwd: process.cwd() }, { DATABASE_URL: direct.toString(), JWT_SECRET }, '/live');
  notes.baselineStartupMs = Math.round(baseline.startupMs);

  process.stderr.write('measuring…\n');
  const createBody = JSON.stringify({ title: 'Benchmark task', description: 'created under load', priority: 'high' });
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  // A load with the CPU it cost a request in `server`'s process and in the database's backends
  // (the other server's are idle meanwhile).
  const metered = async (server: Server, name: string, url: string, options: Parameters<typeof load>[2]) => {
    const database = await databaseCpuMeter(admin, DB_NAME);
    const before = cpuMs(server.child.pid!);
    const figures = await load(name, url, options);
    const serverMs = cpuMs(server.child.pid!) - before;
    const databaseMs = await database.stop();
    const answers = Math.max(1, Object.values(figures.statuses).reduce((sum, count) => sum + count, 0));
    const perRequest = (ms: number) => Math.round((ms * 1000) / answers);
    return { ...figures, cpu: { server: perRequest(serverMs), database: perRequest(databaseMs) } };
  };
  const compare = async (name: string, appUrl: string, baseUrl: string, options: Parameters<typeof load>[2] = {}) => {
    const base = await metered(baseline, `${name} (baseline)`, baseUrl, options);
    const mine = await metered(app, name, appUrl, options);
    rows.push({ name, ...mine, baseline: base });
  };
  await compare('GET /health/live', `${app.url}/health/live`, `${baseline.url}/live`);
  await compare('GET /api/v1/tasks (20 rows)', `${app.url}/api/v1/tasks`, `${baseline.url}/tasks`, { headers: auth });
  await compare('POST /api/v1/tasks', `${app.url}/api/v1/tasks`, `${baseline.url}/tasks`, { method: 'POST', headers: auth, body: createBody, expect: 201 });
  await admin.end();

  // Login: argon2id-bound. Then a cheap authenticated route alone and beside a login burst.
  const loginBody = JSON.stringify({ email, password });
  rows.push({ name: 'POST /api/v1/auth/login', ...(await load('login', `${app.url}/api/v1/auth/login`, { method: 'POST', body: loginBody, connections: 10 })) });
  const quiet = await load('profile alone', `${app.url}/api/v1/profile`, { headers: auth, connections: 10 });
  const [busy] = await Promise.all([
    load('profile during logins', `${app.url}/api/v1/profile`, { headers: auth, connections: 10 }),
    load('login burst', `${app.url}/api/v1/auth/login`, { method: 'POST', body: loginBody, connections: 20 }),
  ]);
  rows.push({ name: 'GET /api/v1/profile alone', ...quiet });
  rows.push({ name: 'GET /api/v1/profile during a login burst', ...busy });
  notes.profileP99RatioUnderLoginBurst = Number((busy.p99 / Math.max(quiet.p99, 1)).toFixed(2));

  // A login while registrations flood in: their hashes wait behind login checks, and past the
  // queue's bound they are refused at once (503), so a login waits for at most the hashes
  // already running. The flood has more connections than the queue has places and sends
  // REGISTRATION_FLOOD_RATE a second, several times what argon2 can hash here. Then the same
  // flood unpaced, each connection sending again as soon as it is answered: that one also
  // measures how far its refusals slow everything else on two shared cores (each is answered
  // after REGISTER_REFUSAL_PAUSE_MS; answered at once they were thousands a second).
  const loginUrl = `${app.url}/api/v1/auth/login`;
  const loginLoad = { method: 'POST', body: loginBody, connections: LOGIN_UNDER_FLOOD_CONNECTIONS } as const;
  const flood = (rate?: number) =>
    load(rate ? 'registration flood' : 'unpaced registration flood', `${app.url}/api/v1/auth/register`, {
      method: 'POST',
      body: JSON.stringify({ email: 'flood-[<id>]@example.test', password: 'a flood of passwords', name: 'Flood' }),
      connections: 100,
      idReplacement: true,
      expect: [201, 503],
      overallRate: rate,
    });
  const loginAlone = await load('login alone', loginUrl, loginLoad);
  const [loginFlooded, paced] = await Promise.all([load('login during a registration flood', loginUrl, loginLoad), flood(REGISTRATION_FLOOD_RATE)]);
  const [loginSwamped, unpaced] = await Promise.all([load('login during an unpaced registration flood', loginUrl, loginLoad), flood()]);
  rows.push({ name: `POST /api/v1/auth/login alone (${LOGIN_UNDER_FLOOD_CONNECTIONS} conn.)`, ...loginAlone });
  rows.push({ name: `POST …/login during ${REGISTRATION_FLOOD_RATE} registrations/s`, ...loginFlooded });
  rows.push({ name: `POST …/register at ${REGISTRATION_FLOOD_RATE}/s (100 conn.)`, ...paced });
  rows.push({ name: 'POST …/login during an unpaced register flood', ...loginSwamped });
  rows.push({ name: 'POST …/register unpaced (100 conn.)', ...unpaced });
  const ratio = (busy: Figures) => Number((busy.p99 / Math.max(loginAlone.p99, 1)).toFixed(2));
  const answers = (figures: Figures) => Object.entries(figures.statuses).map(([code, count]) => `${code}: ${count}`).join(', ');
  notes.loginP99RatioUnderRegistrationFlood = ratio(loginFlooded);
  notes.registrationFloodAnswers = answers(paced);
  notes.loginP99RatioUnderUnpacedFlood = ratio(loginSwamped);
  notes.unpacedFloodAnswers = answers(unpaced);
  notes.appPeakRssMb = Math.round(app.peakRssMb);
  notes.appPeakAnonRssMb = Math.round(app.peakAnonRssMb);
  // RSS rarely shrinks: each figure is the peak reached by the end of that load.
  notes.appPeakRssMbByLoad = [...app.peakRssByLoad]
    .filter(([name]) => !name.endsWith('(baseline)'))
    .map(([name, mb]) => `${name} ${Math.round(mb)}`)
    .join(', ');
  notes.baselinePeakRssMb = Math.round(baseline.peakRssMb);
  notes.baselinePeakAnonRssMb = Math.round(baseline.peakAnonRssMb);
  await Promise.all([app.stop(), baseline.stop()]);

  // Buffered writes: a second instance (same database, buffer and key prefix, so the same access
  // token holds) reaches PostgreSQL through the proxy, which is then cut; every POST answers 202.
  // Room for everything the load can send: a full buffer answers 503, which is not what this
  // phase measures (the default bound, 100,000 entries, fills within 10 s); nor is the per-user
  // share (429 past 2,000 entries by default), and the load is one user's.
  const offline = await startServer(
    SERVICE_COMMAND,
    {
      ...serviceEnv(viaProxy),
      BUFFER_MAX_ENTRIES: '1000000',
      BUFFER_MAX_BYTES: String(1024 * 1024 * 1024),
      BUFFER_USER_MAX_ENTRIES: '1000000',
      BUFFER_USER_MAX_BYTES: String(1024 * 1024 * 1024),
    },
    '/health/ready',
  );
  await waitForPostgres(offline.url, 'up');
  proxy.cut();
  await waitForPostgres(offline.url, 'down');
  await fetch(`${offline.url}/api/v1/tasks`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: createBody });
  const buffered = await load('buffered POST', `${offline.url}/api/v1/tasks`, { method: 'POST', headers: auth, body: createBody, expect: 202 });
  rows.push({ name: 'POST /api/v1/tasks, buffered (PostgreSQL cut)', ...buffered });
  const depth = await bufferDepth(offline.url);
  notes.bufferedEntries = depth;

  // Replay: the service notices PostgreSQL is back (its reconnect backoff and replay schedule),
  // then drains the buffer. The rate counts from the first drop in depth to empty; the delay
  // before it is reported on its own.
  const restoredAt = performance.now();
  proxy.restore();
  let firstDrop: { at: number; depth: number } | undefined;
  for (;;) {
    const left = await bufferDepth(offline.url);
    if (left === 0) break;
    if (!firstDrop && left < depth) firstDrop = { at: performance.now(), depth: left };
    await sleep(10);
  }
  const emptyAt = performance.now();
  const drainSeconds = (emptyAt - (firstDrop?.at ?? restoredAt)) / 1000;
  notes.replayOpsPerSec = Math.round((firstDrop?.depth ?? depth) / drainSeconds);
  notes.replayStartDelayMs = Math.round((firstDrop?.at ?? emptyAt) - restoredAt);
  notes.replayTotalSeconds = Number(((emptyAt - restoredAt) / 1000).toFixed(2));
  notes.bufferingAppPeakRssMb = Math.round(offline.peakRssMb);
  await offline.stop();
  proxy.close();
  rmSync(bufferPath, { recursive: true, force: true });
  await recreateDatabase();
  await deleteRedisKeys(REDIS_URL, REDIS_KEY_PREFIX);

  report();
}

function report(): void {
  const pad = (v: string | number, n: number) => String(v).padStart(n);
  const lines = [
    `taskd bench: ${CONNECTIONS} connections, ${DURATION} s per run (login runs: 10–20 connections)`,
    '',
    `${'route'.padEnd(48)}${pad('req/s', 9)}${pad('p50 ms', 8)}${pad('p99 ms', 8)}${pad('base req/s', 12)}${pad('base p99', 10)}${pad('ratio', 8)}${pad('p99 ×', 7)}`,
  ];
  for (const r of rows) {
    const b = r.baseline;
    lines.push(
      `${r.name.padEnd(48)}${pad(r.reqPerSec, 9)}${pad(r.p50, 8)}${pad(r.p99, 8)}` +
        (b
          ? `${pad(b.reqPerSec, 12)}${pad(b.p99, 10)}${pad((r.reqPerSec / b.reqPerSec).toFixed(2), 8)}${pad((r.p99 / Math.max(b.p99, 1)).toFixed(2), 7)}`
          : ''),
    );
  }
  // "CPU ×": the server's CPU a request over the baseline's, whose code is the same whatever the
  // build; a figure that does not move with the machine's speed as req/s does.
  lines.push('', `${'CPU a request, µs'.padEnd(48)}${pad('server', 9)}${pad('its PG', 8)}${pad('base', 8)}${pad('its PG', 8)}${pad('CPU ×', 8)}`);
  for (const r of rows) {
    if (r.cpu && r.baseline) {
      const times = (r.cpu.server / Math.max(r.baseline.cpu.server, 1)).toFixed(2);
      lines.push(`${r.name.padEnd(48)}${pad(r.cpu.server, 9)}${pad(r.cpu.database, 8)}${pad(r.baseline.cpu.server, 8)}${pad(r.baseline.cpu.database, 8)}${pad(times, 8)}`);
    }
  }
  lines.push('');
  for (const [key, value] of Object.entries(notes)) lines.push(`${key.padEnd(36)} ${value}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(path.dirname(args.json!), { recursive: true });
  writeFileSync(args.json!, JSON.stringify({ at: new Date().toISOString(), connections: CONNECTIONS, durationSeconds: DURATION, rows, notes }, null, 2));
  process.stdout.write(`\nfigures written to ${args.json}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  for (const child of running) child.kill('SIGKILL');
  process.exit(1);
});
