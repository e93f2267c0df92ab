/**
 * Starts the real application (Fastify, PostgreSQL, Redis, LMDB) for an e2e suite, isolated:
 * a database of its own (created by the service itself, dropped at the end), a Redis key
 * prefix of its own (its keys deleted at the end, with the database), and a fresh LMDB
 * directory. Only databases named `taskd_test_…` are ever
 * dropped, so a suite can never touch development data. Every response `app.inject` returns is
 * checked against the app's own OpenAPI document (`contract.ts`): a response the document does
 * not promise fails the test that received it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import pg from 'pg';
import pino from 'pino';
import { createApp } from '../../src/bootstrap.js';
import { loadConfig, type AppConfig } from '../../src/config/app-config.js';
import { createLogger } from '../../src/logger.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { ContractViolation, enforceContract } from './contract.js';
import { deleteRedisKeys } from './redis-keys.js';

export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const TEST_DB_PREFIX = 'taskd_test_';

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  databaseName: string;
  databaseUrl: string;
  bufferPath: string;
  /** Base URL when started with `listen: true`. */
  url: string;
  close(options?: { keepDatabase?: boolean; keepBuffer?: boolean }): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Reuse an existing suite database (a second instance, a restart). */
  databaseName?: string;
  bufferPath?: string;
  /** Point DATABASE_URL elsewhere (a fault-injection proxy); the database name stays. */
  databaseHostPort?: string;
  listen?: boolean;
  /** Wait for PostgreSQL to be connected and migrated before returning (default true). */
  waitForDatabase?: boolean;
  /** Where the service's own logger (format, redaction) writes; default: a silent plain pino. */
  logDestination?: pino.DestinationStream;
}

export function uniqueName(prefix = TEST_DB_PREFIX): string {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

export function databaseUrlFor(name: string, hostPort?: string): string {
  const url = new URL(PG_URL);
  if (hostPort) url.host = hostPort;
  url.pathname = `/${name}`;
  return url.toString();
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const databaseName = options.databaseName ?? uniqueName();
  const bufferPath = options.bufferPath ?? mkdtempSync(path.join(tmpdir(), 'taskd-buffer-'));
  const databaseUrl = databaseUrlFor(databaseName, options.databaseHostPort);
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_KEY_PREFIX: `${databaseName}:`,
    BUFFER_PATH: bufferPath,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_CONNECT_TIMEOUT_MS: '1000',
    BUFFER_REPLAY_INTERVAL_MS: '100',
    ...options.env,
  });
  const logger = options.logDestination ? createLogger(config, options.logDestination) : pino({ level: config.logLevel });
  const { app } = await createApp(config, logger);
  const contract = enforceContract(app, config);
  let url = '';
  if (options.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.getHttpServer().address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }
  if (options.waitForDatabase ?? true) {
    if (!(await databaseUp(app, 15_000))) throw new Error(`the test database ${databaseName} did not come up`);
  }
  return {
    app,
    config,
    databaseName,
    databaseUrl,
    bufferPath,
    url,
    async close(closeOptions = {}) {
      await app.close();
      if (!closeOptions.keepDatabase) {
        await dropDatabase(databaseName);
        await deleteSuiteKeys(config.redis);
      }
      if (!closeOptions.keepBuffer) rmSync(bufferPath, { recursive: true, force: true });
      // Also those a test caught (Promise.allSettled, say) instead of failing on them.
      if (contract.violations.length > 0) throw new ContractViolation(contract.violations);
    },
  };
}

/** Resolves true once the app has connected and migrated, false if `timeoutMs` passes first. */
export async function databaseUp(app: NestFastifyApplication, timeoutMs: number): Promise<boolean> {
  const postgres = app.get(PostgresAvailability);
  const until = Date.now() + timeoutMs;
  while (!postgres.isUp() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  return postgres.isUp();
}

export async function dropDatabase(name: string): Promise<void> {
  if (!name.startsWith(TEST_DB_PREFIX)) throw new Error(`refusing to drop a non-test database: ${name}`);
  await withAdminClient((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** Deletes the suite's own keys (see `deleteRedisKeys`), on the server itself rather than a fault proxy the app was given. */
async function deleteSuiteKeys({ url, keyPrefix }: AppConfig['redis']): Promise<void> {
  if (!keyPrefix.startsWith(TEST_DB_PREFIX)) return;
  const server = Object.assign(new URL(REDIS_URL), { pathname: new URL(url).pathname });
  await deleteRedisKeys(server.toString(), keyPrefix);
}

/** A short-lived client on the suite's own database, for assertions on what is stored. */
export async function withDatabase<T>(name: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrlFor(name) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function withAdminClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
