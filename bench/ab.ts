/**
 * A/B against another checkout of the service (an earlier release, say), on the same machine
 * at the same time: both built servers run with their production command lines, each on a
 * database of its own, and are loaded in turn by autocannon on the same routes, one warm-up
 * load each, then in rounds that alternate which goes first. Prints every load and the medians
 * of req/s, p99, CPU per request (from /proc) and peak RSS (VmHWM) per route and server. Then
 * start-up: each server started again `--startups` times, alternating, on its migrated database,
 * timed from the spawn to ready with PostgreSQL connected (polled every 20 ms). Then, with
 * `--fresh-pairs N`, fresh processes as `npm run bench` sees them: N pairs, in alternating
 * order, of one server at a time started on a new database and given each route's load once,
 * without warm-up; the figures of every load, VmHWM after each, and their medians. (In the
 * rounds above the two servers share the machine for the whole run, each warmed up, and each
 * reports one running maximum of RSS; a fresh process per pair samples the peak, whose spread
 * is large.)
 *
 *   git worktree add ../taskd-before <commit> && (cd ../taskd-before && npm ci && npm run build)
 *   npm run bench:ab -- --against ../taskd-before [--rounds 5] [--duration 10] [--routes live,list,create]
 *     [--startups 5] [--fresh-pairs 0]
 *
 * Run to run, one build's figures move by ±5–8% on a two-core machine: compare medians of
 * several rounds, and CPU per request more than req/s.
 */
import { readFileSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  abEnvironment,
  abKeyPrefix,
  REDIS_URL,
  cpuMs,
  inTurn,
  killAll,
  loadRoute,
  median,
  startSeeded,
  startServer,
  type Figures,
  type Route,
  type SeededServer,
} from './support/harness.js';
import { deleteRedisKeys } from '../test/support/redis-keys.js';

const CONNECTIONS = 50;

const { values: args } = parseArgs({
  options: {
    against: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '10' },
    routes: { type: 'string', default: 'live,list,create' },
    startups: { type: 'string', default: '5' },
    'fresh-pairs': { type: 'string', default: '0' },
  },
});
if (!args.against) throw new Error('--against <directory of another built checkout> is required');
const ROUNDS = Number(args.rounds);
const DURATION = Number(args.duration);
const ROUTES = args.routes.split(',') as Route[];
const STARTUPS = Number(args.startups);
const FRESH_PAIRS = Number(args['fresh-pairs']);

/** A build measured: this checkout (index 0) or the other (index 1, in `dir`). */
interface Subject {
  name: string;
  index: number;
  dir: string | undefined;
}

interface Running extends Subject, SeededServer {}

interface Sample extends Figures {
  cpuMicrosPerRequest: number;
  peakRssMb: number;
}

async function start(subject: Subject): Promise<Running> {
  return { ...subject, ...(await startSeeded(subject.index, subject.dir)) };
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

async function measure(subject: Running, route: Route): Promise<Sample> {
  const { pid } = subject.server;
  const before = cpuMs(pid);
  const figures = await loadRoute(route, subject, { connections: CONNECTIONS, duration: DURATION });
  const cpuMicrosPerRequest = Math.round(((cpuMs(pid) - before) * 1000) / Math.max(figures.requests, 1));
  return { ...figures, cpuMicrosPerRequest, peakRssMb: peakRssMb(pid) };
}

/** The process's peak resident set so far (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Math.round(Number(hwm ?? 0) / 1024);
}

/**
 * Each route's load once, in order, on a fresh process of `subject`'s alone on the machine, as
 * `npm run bench` loads a server it has just started (no warm-up): the figures of each load,
 * with VmHWM after it.
 */
async function freshRun(subject: Subject): Promise<Sample[]> {
  const fresh = await start(subject);
  const samples: Sample[] = [];
  for (const route of ROUTES) samples.push(await measure(fresh, route));
  await fresh.server.stop();
  rmSync(fresh.bufferPath, { recursive: true, force: true });
  return samples;
}

async function freshPairs(subjects: Subject[]): Promise<void> {
  const runs = new Map<string, Sample[][]>(subjects.map((subject) => [subject.name, []]));
  for (let pair = 0; pair < FRESH_PAIRS; pair++) {
    for (const subject of inTurn(subjects, pair)) {
      const samples = await freshRun(subject);
      runs.get(subject.name)!.push(samples);
      const loads = samples.map((sample, i) => `${ROUTES[i]} ${sample.reqPerSec} req/s, p99 ${sample.p99} ms, ${sample.cpuMicrosPerRequest} µs, ${sample.peakRssMb} MB`);
      process.stdout.write(`pair ${pair + 1} ${subject.name}: ${loads.join('; ')}\n`);
    }
  }
  process.stdout.write(`\nfresh processes, medians of ${FRESH_PAIRS} alternating pairs (peak RSS after the last load):\n`);
  for (const [name, list] of runs) {
    const figures = ROUTES.map((route, i) => {
      const loads = list.map((samples) => samples[i]!);
      return `${route} ${Math.round(median(loads.map((l) => l.reqPerSec)))} req/s, p99 ${median(loads.map((l) => l.p99)).toFixed(2)} ms, ${Math.round(median(loads.map((l) => l.cpuMicrosPerRequest)))} µs`;
    });
    const peaks = list.map((samples) => samples.at(-1)!.peakRssMb).sort((a, b) => a - b);
    process.stdout.write(`${name.slice(-27).padEnd(28)} ${figures.join('; ')}; peak RSS ${median(peaks)} MB (${peaks.join(', ')})\n`);
  }
}

async function main(): Promise<void> {
  const subjects: Subject[] = [
    { name: 'this checkout', index: 0, dir: undefined },
    { name: args.against!, index: 1, dir: args.against },
  ];
  if (ROUNDS > 0) await rounds(subjects);
  if (STARTUPS > 0) await startupTimes(subjects);
  if (FRESH_PAIRS > 0) await freshPairs(subjects);
  for (const subject of subjects) await deleteRedisKeys(REDIS_URL, abKeyPrefix(subject.index));
}

/** Both servers running side by side, loaded in turn. */
async function rounds(builds: Subject[]): Promise<void> {
  const subjects = [await start(builds[0]!), await start(builds[1]!)];
  const samples = new Map<string, Sample[]>();
  for (const route of ROUTES) for (const subject of subjects) await measure(subject, route);
  for (let round = 0; round < ROUNDS; round++) {
    for (const route of ROUTES) {
      for (const subject of inTurn(subjects, round)) {
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
}

async function startupTimes(subjects: Subject[]): Promise<void> {
  const startups = new Map<string, number[]>(subjects.map((subject) => [subject.name, []]));
  for (let round = 0; round < STARTUPS; round++) {
    for (const subject of inTurn(subjects, round)) {
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
