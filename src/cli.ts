/**
 * Operator commands on a replica's write buffer, run with the same environment as the server
 * (BUFFER_PATH, DATABASE_URL, REDIS_URL, …), typically where no server holds the buffer: the
 * retained volume of a replica that will not come back (deploy/k8s/drain-job.yaml), or a stopped
 * pod's volume. LMDB allows a running server on the same volume too.
 *
 *   node dist/src/cli.js buffer status
 *   node dist/src/cli.js buffer drain [--timeout-seconds 600]
 *   node dist/src/cli.js buffer set-aside list [--limit 100] [--after KEY] [--payload]
 *   node dist/src/cli.js buffer set-aside retry KEY… | --all
 *   node dist/src/cli.js buffer set-aside drop KEY… | --all
 *
 * `drain` applies everything the volume holds to PostgreSQL (waiting for it up to the timeout),
 * hands whatever still waits for another replica (a parked write whose task is being created
 * elsewhere) to the Redis stream if Redis is durable, and exits 0 once the volume holds nothing,
 * 2 when writes remain on it (it says which). Output is one JSON object per line.
 */
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { Logger, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import pino from 'pino';
import { AppModule } from './app.module.js';
import { ConfigError, loadConfig, type AppConfig } from './config/app-config.js';
import { LmdbService } from './infrastructure/lmdb/lmdb.service.js';
import { PostgresAvailability } from './infrastructure/database/postgres-availability.js';
import { createLogger } from './logger.js';
import { BufferHandoff } from './modules/buffer/buffer-handoff.js';
import { BufferService } from './modules/buffer/buffer.service.js';
import { LmdbBuffer, type DeadLetter } from './modules/buffer/lmdb-buffer.js';

const USAGE = `usage:
  cli.js buffer status
  cli.js buffer drain [--timeout-seconds 600]
  cli.js buffer set-aside list [--limit 100] [--after KEY] [--payload]
  cli.js buffer set-aside retry KEY... | --all
  cli.js buffer set-aside drop KEY... | --all`;

const EXIT_USAGE = 64;
const EXIT_WRITES_REMAIN = 2;

/** Stdout carries the command's JSON lines only: every log line goes to stderr. */
interface StderrLogger {
  logger: ReturnType<typeof createLogger>;
  nest: LoggerService;
}

function stderrLogger(config: AppConfig): StderrLogger {
  const logger = createLogger(config, pino.destination({ fd: 2, sync: true }));
  const at = (level: 'info' | 'error' | 'warn' | 'debug' | 'trace') => (message: unknown, ...rest: unknown[]) => {
    const context = rest.at(-1);
    logger[level](typeof context === 'string' ? { context } : {}, String(message));
  };
  return { logger, nest: { log: at('info'), error: at('error'), warn: at('warn'), debug: at('debug'), verbose: at('trace') } };
}

function print(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function openBuffer(config: AppConfig): { lmdb: LmdbService; buffer: LmdbBuffer } {
  const lmdb = new LmdbService(config);
  const buffer = new LmdbBuffer(lmdb.root, {
    maxEntries: config.buffer.maxEntries,
    maxBytes: config.buffer.maxBytes,
    setAsideMaxEntries: config.buffer.setAsideMaxEntries,
    setAsideMaxBytes: config.buffer.setAsideMaxBytes,
    setAsideMaxAgeMs: config.replication.retentionMs,
  });
  return { lmdb, buffer };
}

function describeLetter(letter: DeadLetter, withPayload: boolean): Record<string, unknown> {
  const { op } = letter;
  return {
    key: letter.key,
    kind: op.kind,
    opId: op.id,
    userId: op.userId,
    acceptedAt: op.acceptedAt,
    setAsideAt: new Date(letter.deadLetteredAt).toISOString(),
    error: letter.error,
    ...(withPayload ? { payload: op.payload } : {}),
  };
}

async function status(config: AppConfig): Promise<number> {
  const { lmdb, buffer } = openBuffer(config);
  try {
    const oldest = buffer.oldestEnqueuedAt();
    print({
      path: config.buffer.path,
      queued: buffer.depth,
      parked: buffer.parkedCount,
      setAside: buffer.deadLetterCount,
      bytes: buffer.bytes,
      oldestAgeSeconds: oldest === null ? null : Math.round((Date.now() - oldest) / 1000),
    });
    return 0;
  } finally {
    await lmdb.onApplicationShutdown();
  }
}

async function setAside(config: AppConfig, action: string, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      limit: { type: 'string', default: '100' },
      after: { type: 'string' },
      payload: { type: 'boolean', default: false },
      all: { type: 'boolean', default: false },
    },
  });
  const { lmdb, buffer } = openBuffer(config);
  try {
    if (action === 'list') {
      const after = values.after === undefined ? undefined : Number(values.after);
      for (const letter of buffer.listDeadLetters(Number(values.limit), after)) print(describeLetter(letter, values.payload));
      return 0;
    }
    if (action !== 'retry' && action !== 'drop') return usage();
    const keys = values.all ? allKeys(buffer) : positionals.map(Number);
    if (keys.length === 0 || keys.some((key) => !Number.isSafeInteger(key))) return usage();
    let failed = 0;
    for (const key of keys) {
      const letter = buffer.getDeadLetter(key);
      if (!letter) {
        print({ key, outcome: 'not-found' });
        failed += 1;
        continue;
      }
      if (action === 'drop') {
        await buffer.dropDeadLetter(key);
        print({ key, outcome: 'dropped' });
        continue;
      }
      // What made a late replay harmless (a tombstone, the ledger) may be gone past the retention.
      const age = Date.now() - Date.parse(letter.op.acceptedAt);
      if (!(age <= config.replication.retentionMs)) {
        print({ key, outcome: 'refused', reason: 'accepted longer ago than WRITE_RETENTION: it can never be applied' });
        failed += 1;
        continue;
      }
      await buffer.retryDeadLetter(key);
      print({ key, outcome: 'queued' });
    }
    return failed === 0 ? 0 : 1;
  } finally {
    await lmdb.onApplicationShutdown();
  }
}

function allKeys(buffer: LmdbBuffer): number[] {
  const keys: number[] = [];
  let after: number | undefined;
  for (;;) {
    const page = buffer.listDeadLetters(1_000, after);
    if (page.length === 0) return keys;
    keys.push(...page.map((letter) => letter.key));
    after = page.at(-1)!.key;
  }
}

async function drain(config: AppConfig, args: string[], { logger, nest }: StderrLogger): Promise<number> {
  const { values } = parseArgs({ args, options: { 'timeout-seconds': { type: 'string', default: '600' } } });
  const deadline = Date.now() + Number(values['timeout-seconds']) * 1000;
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, logger), { logger: nest });
  try {
    const postgres = app.get(PostgresAvailability);
    const service = app.get(BufferService);
    const buffer = app.get(LmdbBuffer);
    while (!postgres.isUp() && Date.now() < deadline) await sleep(200);
    if (!postgres.isUp()) {
      print({ outcome: 'postgres-unreachable', queued: buffer.depth, parked: buffer.parkedCount });
      return EXIT_WRITES_REMAIN;
    }
    // Replay until nothing is left, or only writes waiting for another replica's creates.
    let idleRuns = 0;
    while (!service.holdsNothing() && Date.now() < deadline && idleRuns < 5) {
      const before = buffer.depth + buffer.parkedCount;
      await service.replay();
      idleRuns = buffer.depth + buffer.parkedCount < before ? 0 : idleRuns + 1;
      if (buffer.depth === 0) await sleep(1_000);
    }
    let handedOff = 0;
    if (!service.holdsNothing()) handedOff = await app.get(BufferHandoff).handOff(deadline);
    const left = { queued: buffer.depth, parked: buffer.parkedCount };
    print({ outcome: service.holdsNothing() ? 'drained' : 'writes-remain', handedOff, ...left, setAside: buffer.deadLetterCount });
    return service.holdsNothing() ? 0 : EXIT_WRITES_REMAIN;
  } finally {
    await app.close();
  }
}

function usage(): number {
  process.stderr.write(`${USAGE}\n`);
  return EXIT_USAGE;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(argv: string[]): Promise<number> {
  const [area, command, ...rest] = argv;
  if (area !== 'buffer' || command === undefined) return usage();
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 78; // EX_CONFIG
    }
    throw error;
  }
  const log = stderrLogger(config);
  Logger.overrideLogger(log.nest);
  if (command === 'status') return status(config);
  if (command === 'drain') return drain(config, rest, log);
  if (command === 'set-aside') {
    const [action, ...args] = rest;
    return action === undefined ? usage() : setAside(config, action, args);
  }
  return usage();
}

/**
 * Exits once stdout has taken every line: a pipe is written asynchronously, and `process.exit`
 * with lines still queued would cut a long listing short.
 */
function exitAfterOutput(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

main(process.argv.slice(2)).then(exitAfterOutput, (error: unknown) => {
  process.stderr.write(`fatal: ${error instanceof Error ? error.message : String(error)}\n`);
  exitAfterOutput(1);
});
