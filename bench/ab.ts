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
import { readFileSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  abEnvironment,
  cpuMs,
  killAll,
  loadRoute,
  median,
  startSeeded,
  startServer,
  type Figures,
  type Route,
  type SeededServer,
} from './support/harness.js';

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

interface Subject extends SeededServer {
  name: string;
  index: number;
  dir: string | undefined;
}

interface Sample extends Figures {
  cpuMicrosPerRequest: number;
  peakRssMb: number;
}

async function start(name: string, index: number, dir?: string): Promise<Subject> {
  return { name, index, dir, ...(await startSeeded(index, dir)) };
}

/** Milliseconds from the spawn of another process of `subject`'s to its readiness, PostgreSQL connected. */
async function startupMs(subject: Subject): Promise<number> {
  const env = abEnvironment(subject.index);
  const started = performance.now();
  const server = await startServer(env, subject.dir);
  const elapsed = performance.now() - started;
  await server.stop();
  rmSync(env.BUFFER_PATH!, { recursive: true, force: true });
  return Math.round(elapsed);
}

async function measure(subject: Subject, route: Route): Promise<Sample> {
  const { pid } = subject.server;
  const before = cpuMs(pid);
  const figures = await loadRoute(route, subject, { connections: CONNECTIONS, duration: DURATION });
  const cpuMicrosPerRequest = Math.round(((cpuMs(pid) - before) * 1000) / Math.max(figures.requests, 1));
  const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { ...figures, cpuMicrosPerRequest, peakRssMb: Math.round(Number(hwm ?? 0) / 1024) };
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
      `${route.padEnd(8)}${name.slice(-27).padEnd(28)}${String(Math.round(median(list.map((s) => s.reqPerSec)))).padStart(8)}` +
        `${median(list.map((s) => s.p99)).toFixed(2).padStart(9)}${String(Math.round(median(list.map((s) => s.cpuMicrosPerRequest)))).padStart(8)}` +
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
    process.stdout.write(`${name.slice(-27).padEnd(28)} median ${Math.round(median(times))} ms (${times.join(', ')})\n`);
  }
}

main().catch((error: unknown) => {
  killAll();
  console.error(error);
  process.exitCode = 1;
});
