/**
 * Instructions a request costs, this checkout against another built one, counted by valgrind's
 * callgrind: counts that do not move with the machine's load, where `npm run bench:ab`'s req/s
 * and CPU times move by ±20% on a busy day. Each server runs its production command line under
 * callgrind with counting off, on a database of its own (seeded as `bench:ab` seeds it), takes
 * a warm-up load, then counting is turned on for exactly `--requests` requests (10
 * connections) and off again. Rounds alternate which checkout goes first; each run is a new
 * process.
 *
 * Every thread counts, and the count is split by part of the process, from the cost of each
 * function (`callgrind_annotate`):
 * - request: the requests' own work (the JIT's code, V8's builtins and runtime, Node, libc):
 *   the figure to compare. One build repeats it within 1% mostly, but now and then a run
 *   comes out some 20% higher (a hot function left to the interpreter for a while): take the
 *   median of three rounds or more;
 * - compiler: V8's optimising compilers, still at work after the warm-up, and more so in a
 *   larger application; it fades with a longer warm-up and moves by tens of percent run to run;
 * - collector: the garbage collector, whose scavenges V8 schedules partly by time, which
 *   valgrind stretches some 40 times: also tens of percent run to run.
 * Periodic jobs (PostgreSQL's heartbeat, replay, reloads) run by the wall clock too, so each run
 * first counts the server at rest for 10 s and takes each part's rate at rest, over the load's
 * duration, out of the load's count.
 *
 *   git worktree add ../taskd-before <commit> && (cd ../taskd-before && npm ci && npm run build)
 *   npm run bench:instructions -- --against ../taskd-before [--routes live,list,create]
 *     [--requests 1000] [--warmup 4000] [--rounds 3]
 *
 * Needs valgrind (Debian's package); about 80 s a run.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { inTurn, killAll, loadRoute, median, sleep, startSeeded, type Figures, type Route } from './support/harness.js';

const CONNECTIONS = 10;
/** How long the background work of an idle server is counted for, before each load. */
const IDLE_MS = 10_000;

/** Instructions a request, by part, each less the same part's work at rest over the load's duration. */
interface Count extends Parts {
  /** Instructions a second of the server at rest: its periodic jobs (heartbeats, replay, reloads). */
  idlePerSecond: number;
}

const { values: args } = parseArgs({
  options: {
    against: { type: 'string' },
    routes: { type: 'string', default: 'live,list,create' },
    requests: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
  },
});
if (!args.against) throw new Error('--against <directory of another built checkout> is required');
const ROUTES = args.routes.split(',') as Route[];
const REQUESTS = Number(args.requests);
const WARMUP = Number(args.warmup);
const ROUNDS = Number(args.rounds);

/**
 * valgrind's gdbserver, which `callgrind_control` talks to, names its pipes after the user and
 * the host from the environment: both sides must see the same (the server's HOST is its bind
 * address).
 */
const VGDB_ENV = { USER: 'bench', LOGNAME: 'bench', HOST: '127.0.0.1' };

/** Instructions per request of one run: a new server of `dir`'s (or this checkout's). */
async function instructionsPerRequest(route: Route, dir: string | undefined): Promise<Count> {
  const work = mkdtempSync(path.join(tmpdir(), 'taskd-bench-callgrind-'));
  const prefix = path.join(work, 'vgdb');
  const dumps = path.join(work, 'dumps');
  mkdirSync(dumps);
  try {
    const seeded = await startSeeded(2, dir, {
      wrapper: [
        'env',
        ...Object.entries(VGDB_ENV).map(([name, value]) => `${name}=${value}`),
        'valgrind',
        '--tool=callgrind',
        '--instr-atstart=no',
        // V8 writes the machine code it runs.
        '--smc-check=all-non-file',
        '--vgdb=yes',
        `--vgdb-prefix=${prefix}`,
        `--callgrind-out-file=${path.join(dumps, 'callgrind.out.%p')}`,
        `--log-file=${path.join(work, 'valgrind.log')}`,
      ],
      timeoutMs: 180_000,
    });
    const control = (option: string) => {
      const run = spawnSync('callgrind_control', [`--vgdb-prefix=${prefix}`, option, String(seeded.server.pid)], {
        env: { PATH: process.env.PATH ?? '', ...VGDB_ENV },
        encoding: 'utf8',
      });
      if (run.status !== 0) throw new Error(`callgrind_control ${option} failed: ${run.stderr || run.stdout}`);
    };
    /** The instructions of `work` done with counting on, by part. */
    const counted = async (work: () => Promise<unknown>): Promise<{ parts: Parts; seconds: number }> => {
      const startedAt = performance.now();
      control('--instr=on');
      await work();
      control('--instr=off');
      control('--dump');
      const seconds = (performance.now() - startedAt) / 1000;
      return { parts: takeDumps(dumps), seconds };
    };
    try {
      await loadRoute(route, seeded, { connections: CONNECTIONS, duration: 0, amount: WARMUP });
      const idle = await counted(() => sleep(IDLE_MS));
      let figures: Figures | undefined;
      const loaded = await counted(async () => {
        figures = await loadRoute(route, seeded, { connections: CONNECTIONS, duration: 0, amount: REQUESTS });
      });
      const failed = figures!.unexpected + figures!.errors;
      if (failed > 0) throw new Error(`${route}: ${failed} requests failed`);
      // What the server does at rest, at the same rate over the load's duration, is not the requests'.
      const perRequest = (part: keyof Parts) =>
        Math.round((loaded.parts[part] - (idle.parts[part] / idle.seconds) * loaded.seconds) / figures!.requests);
      return {
        request: perRequest('request'),
        compiler: perRequest('compiler'),
        collector: perRequest('collector'),
        idlePerSecond: Math.round(total(idle.parts) / idle.seconds),
      };
    } finally {
      await seeded.server.stop();
      rmSync(seeded.bufferPath, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Instructions by part of the process. */
interface Parts {
  /** The requests' own work: the JIT's code, V8's builtins and runtime, Node, libuv, libc. */
  request: number;
  /** V8's optimising compilers (TurboFan, Maglev), on whichever thread. */
  compiler: number;
  /** The garbage collector. */
  collector: number;
}

const OPTIMISING_COMPILER = /v8::internal::(compiler|maglev|turboshaft)::|OptimizedCompilationJob|Compiler::/;
const COLLECTOR = /Scaveng|MarkCompact|Sweeper|IterateObjectCache|RootVisitor|VisitRootPointer|heap::base::|cppgc::|MemoryAllocator|Heap::/;

function total(parts: Parts): number {
  return parts.request + parts.compiler + parts.collector;
}

/**
 * The dumps callgrind wrote in `dir` since the last call, by part, from `callgrind_annotate`'s
 * cost of each function (its own cost, not its callees'); takes them away.
 */
function takeDumps(dir: string): Parts {
  const parts: Parts = { request: 0, compiler: 0, collector: 0 };
  for (const file of readdirSync(dir)) {
    const dump = path.join(dir, file);
    const totals = Number(/^totals:\s+(\d+)/m.exec(readFileSync(dump, 'utf8'))?.[1] ?? 0);
    if (totals > 0) {
      const annotated = spawnSync('callgrind_annotate', ['--threshold=100', '--inclusive=no', dump], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      if (annotated.status !== 0) throw new Error(`callgrind_annotate failed: ${annotated.stderr}`);
      let listed = 0;
      for (const line of annotated.stdout.split('\n')) {
        const cost = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
        if (!cost || cost[2]!.includes('PROGRAM TOTALS')) continue;
        const instructions = Number(cost[1]!.replaceAll(',', ''));
        listed += instructions;
        if (OPTIMISING_COMPILER.test(cost[2]!)) parts.compiler += instructions;
        else if (COLLECTOR.test(cost[2]!)) parts.collector += instructions;
        else parts.request += instructions;
      }
      // Lines too small for the listing, if any, are the requests'.
      parts.request += Math.max(0, totals - listed);
    }
    rmSync(dump);
  }
  return parts;
}

async function main(): Promise<void> {
  const subjects: Array<{ name: string; dir: string | undefined }> = [
    { name: 'this checkout', dir: undefined },
    { name: args.against!, dir: args.against },
  ];
  const counts = new Map<string, Count[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const route of ROUTES) {
      for (const subject of inTurn(subjects, round)) {
        const count = await instructionsPerRequest(route, subject.dir);
        const key = `${route}\t${subject.name}`;
        counts.set(key, [...(counts.get(key) ?? []), count]);
        process.stdout.write(
          `round ${round + 1} ${route} ${subject.name}: request ${thousands(count.request)}, compiler ${thousands(count.compiler)}, ` +
            `collector ${thousands(count.collector)} instructions a request (at rest ${thousands(count.idlePerSecond)} a second, taken out)\n`,
        );
      }
    }
  }
  process.stdout.write(`\nmedians of ${ROUNDS} rounds (${REQUESTS} requests after ${WARMUP} of warm-up, ${CONNECTIONS} connections), this checkout against ${args.against}:\n`);
  for (const route of ROUTES) {
    for (const part of ['request', 'compiler', 'collector'] as const) {
      const [mine, theirs] = subjects.map((subject) => median(counts.get(`${route}\t${subject.name}`)!.map((count) => count[part])));
      process.stdout.write(
        `${route.padEnd(8)}${part.padEnd(11)}${thousands(mine!).padStart(12)} against ${thousands(theirs!).padStart(12)}   ratio ${(mine! / theirs!).toFixed(3)}\n`,
      );
    }
  }
}

function thousands(value: number): string {
  return Math.round(value).toLocaleString('en');
}

main().catch((error: unknown) => {
  killAll();
  console.error(error);
  process.exitCode = 1;
});
