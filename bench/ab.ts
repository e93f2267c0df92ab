/**
 * A/B against another checkout of the service (an earlier release, say), on the same machine
 * at the same time: both built servers run with their production command lines, each on a
 * database of its own, and are loaded in turn by autocannon on the same routes, one warm-up
 * load each, then in rounds that alternate which goes first. Prints every load and the medians
 * of req/s, p99, CPU per request (from /proc) and peak RSS (VmHWM) per route and server. Then
 * start-up: each server started again `--startups` times, alternating, on its migrated database,
 * timed from the spawn to ready with PostgreSQL connected (polled every 20 ms).
 *
 *   git worktree add ../taskd-before <commit> && (cd ../taskd-before && npm ci && npm run build)
 *   npm run bench:ab -- --against ../taskd-before [--rounds 5] [--duration 10] [--routes live,list,create]
 *     [--startups 5]
 *
 * Run to run, one build's figures move by ±5–8% on a two-core machine: compare medians of
 * several rounds, and CPU per request more than req/s.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { api, cpuMs, killAll, load, startServer, type Figures, type Server } from './support/harness.js';

const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const CONNECTIONS = 50;

const { values: args } = parseArgs({
  options: {
    against: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '10' },
    routes: { type: 'string', default: 'live,list,create' },
    startups: { type: 'string', default: '5' },
  },
});
if (!args.against) throw new Error('--against <directory of another built checkout> is required');
const ROUNDS = Number(args.rounds);
const DURATION = Number(args.duration);
const ROUTES = args.routes.split(',') as Route[];
const STARTUPS = Number(args.startups);

type Route = 'live' | 'list' | 'create';

interface Subject {
  name: string;
  server: Server;
  token: string;
  index: number;
  dir: string | undefined;
  bufferPath: string;
}

interface Sample extends Figures {
  cpuMicrosPerRequest: number;
  peakRssMb: number;
}

function environment(index: number): Record<string, string> {
  const url = new URL(ADMIN_URL);
  url.pathname = `/taskd_bench_ab_${index}`;
  return {
    NODE_ENV: 'development',
    DATABASE_URL: url.toString(),
    REDIS_URL,
    REDIS_KEY_PREFIX: `taskd-bench-ab-${index}:`,
    BUFFER_PATH: mkdtempSync(path.join(tmpdir(), `taskd-bench-ab-${index}-`)),
    JWT_SECRET: 'bench-ab-secret-'.padEnd(48, 'x'),
    LOG_LEVEL: 'info',
    REGISTER_MAX_PER_IP: '1000',
  };
}

async function start(name: string, index: number, dir?: string): Promise<Subject> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS taskd_bench_ab_${index} WITH (FORCE)`);
  await admin.end();
  const env = environment(index);
  const server = await startServer(env, dir);
  const email = `bench-ab-${Date.now()}@example.com`;
  const password = 'bench-password-1';
  await api(server.url, 'POST', '/api/v1/auth/register', { email, password, name: 'Bench' });
  const { json } = await api(server.url, 'POST', '/api/v1/auth/login', { email, password });
  const token = json.accessToken as string;
  // As `npm run bench` seeds its list.
  for (let i = 0; i < 25; i++) {
    const task = { title: `Seeded task ${i}`, description: 'x'.repeat(120), priority: ['low', 'medium', 'high'][i % 3] };
    await api(server.url, 'POST', '/api/v1/tasks', task, token);
  }
  return { name, server, token, index, dir, bufferPath: env.BUFFER_PATH! };
}

/** Milliseconds from the spawn of another process of `subject`'s to its readiness, PostgreSQL connected. */
async function startupMs(subject: Subject): Promise<number> {
  const env = environment(subject.index);
  const started = performance.now();
  const server = await startServer(env, subject.dir);
  const elapsed = performance.now() - started;
  await server.stop();
  rmSync(env.BUFFER_PATH!, { recursive: true, force: true });
  return Math.round(elapsed);
}

async function measure(subject: Subject, route: Route): Promise<Sample> {
  const auth = { authorization: `Bearer ${subject.token}` };
  const { url, pid } = subject.server;
  const before = cpuMs(pid);
  const figures =
    route === 'live'
      ? await load(`${url}/health/live`, { connections: CONNECTIONS, duration: DURATION })
      : route === 'list'
        ? await load(`${url}/api/v1/tasks`, { headers: auth, connections: CONNECTIONS, duration: DURATION })
        : await load(`${url}/api/v1/tasks`, {
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ title: 'Benchmark task', description: 'created under load', priority: 'high' }),
            connections: CONNECTIONS,
            duration: DURATION,
            expect: 201,
          });
  const cpuMicrosPerRequest = Math.round(((cpuMs(pid) - before) * 1000) / Math.max(figures.requests, 1));
  const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { ...figures, cpuMicrosPerRequest, peakRssMb: Math.round(Number(hwm ?? 0) / 1024) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const subjects = [await start('this checkout', 0), await start(args.against!, 1, args.against)];
  const samples = new Map<string, Sample[]>();
  for (const route of ROUTES) for (const subject of subjects) await measure(subject, route);
  for (let round = 0; round < ROUNDS; round++) {
    for (const route of ROUTES) {
      for (const subject of round % 2 === 0 ? subjects : [...subjects].reverse()) {
        const sample = await measure(subject, route);
        const key = `${route}\t${subject.name}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        process.stdout.write(
          `round ${round + 1} ${route} ${subject.name}: ${sample.reqPerSec} req/s, p99 ${sample.p99} ms, ${sample.cpuMicrosPerRequest} µs/request, peak RSS ${sample.peakRssMb} MB\n`,
        );
      }
    }
  }
  process.stdout.write(`\nmedians of ${ROUNDS} rounds (${CONNECTIONS} connections, ${DURATION} s each):\n`);
  process.stdout.write(`${'route'.padEnd(8)}${'server'.padEnd(28)}${'req/s'.padStart(8)}${'p99 ms'.padStart(9)}${'µs/req'.padStart(8)}${'RSS MB'.padStart(8)}\n`);
  for (const [key, list] of samples) {
    const [route, name] = key.split('\t') as [string, string];
    process.stdout.write(
      `${route.padEnd(8)}${name.slice(-27).padEnd(28)}${String(median(list.map((s) => s.reqPerSec))).padStart(8)}` +
        `${median(list.map((s) => s.p99)).toFixed(2).padStart(9)}${String(median(list.map((s) => s.cpuMicrosPerRequest))).padStart(8)}` +
        `${String(Math.max(...list.map((s) => s.peakRssMb))).padStart(8)}\n`,
    );
  }
  await Promise.all(subjects.map((subject) => subject.server.stop()));
  for (const subject of subjects) rmSync(subject.bufferPath, { recursive: true, force: true });
  if (STARTUPS === 0) return;
  const startups = new Map<string, number[]>(subjects.map((subject) => [subject.name, []]));
  for (let round = 0; round < STARTUPS; round++) {
    for (const subject of round % 2 === 0 ? subjects : [...subjects].reverse()) {
      startups.get(subject.name)!.push(await startupMs(subject));
    }
  }
  process.stdout.write(`\nstart-up to ready, PostgreSQL connected (${STARTUPS} alternating starts each):\n`);
  for (const [name, times] of startups) {
    process.stdout.write(`${name.slice(-27).padEnd(28)} median ${median(times)} ms (${times.join(', ')})\n`);
  }
}

main().catch((error: unknown) => {
  killAll();
  console.error(error);
  process.exitCode = 1;
});
