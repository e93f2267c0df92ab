/**
 * Owns the PostgreSQL connection (a TypeORM `DataSource` on `pg`) and knows whether the
 * database can be reached. The service starts without PostgreSQL: it connects, creates the
 * database outside production and migrates (under an advisory lock) in the background, with
 * backoff. Connection-class failures open a circuit breaker (`isUp()` false) that a background
 * probe closes again; statement errors never touch it.
 */
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DataSource, MigrationExecutor, type EntityManager, type MixedList, type QueryRunner } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  RequestTimeoutError,
  ServiceUnavailableError,
} from '../../common/errors/domain-errors.js';
import { InvalidDataError, isConnectionError, isDataException, sqlState } from './connection-errors.js';
import type { SqlExecutor } from './sql-executor.js';
import { PG_TYPES, SESSION_OPTIONS } from './pg-types.js';

export const DATABASE_OPTIONS = Symbol('DATABASE_OPTIONS');

export interface DatabaseOptions {
  entities: MixedList<Function>;
  migrations: MixedList<Function>;
}

export type DatabaseState = 'connecting' | 'up' | 'down';

/** Serialises the migrations of replicas that start together. */
/** Statement texts this process prepares on its connections at most (see `statementName`). */
const MAX_PREPARED_STATEMENTS = 256;
/** "cached plan must not change result type", "prepared statement does not exist". */
const STALE_STATEMENT_SQLSTATES = new Set(['0A000', '26000']);
/**
 * Polled, not waited for in `pg_advisory_lock`: a statement waiting for the lock holds a
 * snapshot, and the holder's `CREATE INDEX CONCURRENTLY` waits for every older snapshot to go,
 * a deadlock PostgreSQL breaks by failing one of the two.
 */
const MIGRATION_TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('taskd:migrations')) AS locked";
const MIGRATION_LOCK_POLL_MS = 100;
const MIGRATION_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('taskd:migrations'))";
const QUERY_CANCELED = '57014';
const BACKOFF_MIN_MS = 100;
/**
 * The longest wait between two attempts to reach PostgreSQL again. It is also the longest that
 * buffered writes wait to be replayed once PostgreSQL is back, so it is kept short: an attempt
 * against a server that is down costs one refused (or timed-out) connection a second.
 */
const BACKOFF_MAX_MS = 1_000;

@Injectable()
export class DatabaseService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(DatabaseService.name);
  private source: DataSource;
  private state: DatabaseState = 'connecting';
  private recovering: Promise<void> | undefined;
  private stopped = false;
  private readonly stateListeners = new Set<(state: DatabaseState) => void>();
  /** Prepared statement names by text (see `statementName`). */
  private readonly statementNames = new Map<string, string>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(DATABASE_OPTIONS) private readonly options: DatabaseOptions,
  ) {
    this.source = this.createDataSource();
  }

  get dataSource(): DataSource {
    return this.source;
  }

  isUp(): boolean {
    return this.state === 'up';
  }

  getState(): DatabaseState {
    return this.state;
  }

  /** Calls `listener` on every change of state (up, down). */
  onStateChange(listener: (state: DatabaseState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  onModuleInit(): void {
    this.recover();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    await this.recovering?.catch(() => undefined);
    if (this.source.isInitialized) await this.source.destroy().catch(() => undefined);
  }

  /** Resolves true once the database is up, false if `timeoutMs` passes first. */
  async waitUntilUp(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (!this.isUp() && Date.now() < until) await sleep(20);
    return this.isUp();
  }

  /** Runs one statement for a request and returns its rows (also for `… RETURNING`). */
  async query<T>(ctx: RequestContext, sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.execute<T>(ctx, sql, params)).rows;
  }

  /**
   * Runs one statement for a request: refused at once while the breaker is open. Goes straight
   * to the pool TypeORM owns, which skips a query runner per statement on the hot paths, as a
   * named (prepared) statement: each connection parses and plans a statement text once, not on
   * every request.
   */
  async execute<T>(ctx: RequestContext, sql: string, params: unknown[] = []): Promise<{ rows: T[]; rowCount: number }> {
    ctx.throwIfAborted();
    this.assertUp();
    try {
      const result = await this.runPrepared(sql, params);
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw this.translate(error);
    }
  }

  /**
   * A migration run elsewhere (a rolling deploy) can change the type of a column a prepared
   * statement returns, and a pooler can lose a statement; PostgreSQL then refuses it before
   * executing anything. The pool has already dropped that connection (it drops a connection on
   * any error); the statement runs again, unprepared, on another.
   */
  private async runPrepared(sql: string, params: unknown[]): Promise<pg.QueryResult> {
    try {
      return await this.pool().query({ name: this.statementName(sql), text: sql, values: params });
    } catch (error) {
      if (!STALE_STATEMENT_SQLSTATES.has(sqlState(error) ?? '')) throw error;
      return this.pool().query(sql, params);
    }
  }

  /**
   * The statements of one request, each on its own (autocommit), with `query`'s breaker, deadline
   * and error translation: for a write that is a single statement, no transaction is needed.
   */
  executor(ctx: RequestContext): SqlExecutor {
    return { query: <T>(sql: string, params?: unknown[]) => this.query<T>(ctx, sql, params) };
  }

  /**
   * Runs `work` in one transaction whose statements are bounded by the time the request has
   * left (`SET LOCAL statement_timeout`), so no statement outlives its request.
   */
  async transaction<T>(ctx: RequestContext, work: (manager: EntityManager) => Promise<T>): Promise<T> {
    ctx.throwIfAborted();
    this.assertUp();
    const runner = this.source.createQueryRunner();
    let unsure: unknown;
    try {
      await runner.startTransaction();
      await runner.query(`SET LOCAL statement_timeout = ${Math.max(1, ctx.remainingMs())}`);
      const result = await work(runner.manager);
      await runner.commitTransaction();
      return result;
    } catch (error) {
      // When the ROLLBACK fails too (the driver gave up waiting on a statement the server is still
      // running, and the ROLLBACK queued behind it timed out in turn), the session may still be
      // inside this transaction: it must not go back to the pool, where the next transaction
      // would run inside this one (its BEGIN a mere warning) and commit what this one began.
      await runner.rollbackTransaction().catch((rollbackError: unknown) => (unsure = rollbackError));
      throw this.translate(error);
    } finally {
      await releaseRunner(runner, unsure);
    }
  }

  /**
   * A name per statement text, the same on every connection of this process. The texts are the
   * repositories' (a few dozen shapes); past MAX_PREPARED_STATEMENTS a text runs unnamed, so that
   * no connection accumulates prepared statements without bound.
   */
  private statementName(sql: string): string | undefined {
    let name = this.statementNames.get(sql);
    if (name === undefined && this.statementNames.size < MAX_PREPARED_STATEMENTS) {
      name = `taskd_${this.statementNames.size}`;
      this.statementNames.set(sql, name);
    }
    return name;
  }

  /** The pg pool behind the data source (TypeORM's postgres driver calls it `master`). */
  private pool(): pg.Pool {
    return (this.source.driver as unknown as { master: pg.Pool }).master;
  }

  /** A cheap round trip, bounded by `timeoutMs`; feeds the breaker. */
  async ping(timeoutMs: number): Promise<boolean> {
    if (!this.source.isInitialized) return false;
    try {
      await withTimeout(this.source.query('SELECT 1'), timeoutMs);
      return true;
    } catch (error) {
      this.reportFailure(error);
      return false;
    }
  }

  /** Opens the breaker when `error` says the database cannot be reached. */
  reportFailure(error: unknown): void {
    if (!isConnectionError(error) && !(error instanceof TimeoutError)) return;
    if (this.state === 'up') {
      this.logger.warn({ err: errorSummary(error) }, 'PostgreSQL unreachable; circuit opened');
      this.setState('down');
    }
    this.recover();
  }

  /**
   * Applies pending migrations under the advisory lock (idempotent, cheap when none). The lock,
   * the migrations and the lifted timeouts (the server's `statement_timeout` and the driver's
   * `query_timeout`) share one session: a migration may take longer than any request is allowed
   * to, such as an index built concurrently on a large table.
   */
  async migrate(): Promise<void> {
    const runner = this.source.createQueryRunner();
    let failure: unknown;
    let restoreQueryTimeout = () => {};
    try {
      restoreQueryTimeout = liftQueryTimeout((await runner.connect()) as pg.PoolClient);
      await runner.query('SET statement_timeout = 0');
      await this.takeMigrationLock(runner);
      try {
        const executor = new MigrationExecutor(this.source, runner);
        executor.transaction = 'each';
        const applied = await executor.executePendingMigrations();
        for (const migration of applied) this.logger.log(`migration applied: ${migration.name}`);
      } finally {
        await runner.query(MIGRATION_UNLOCK_SQL);
        await runner.query('RESET statement_timeout');
      }
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      restoreQueryTimeout();
      // After any failure the session is closed, not pooled: it may still hold the lock, or
      // run a statement the driver stopped waiting for.
      await releaseRunner(runner, failure);
    }
  }

  private async takeMigrationLock(runner: QueryRunner): Promise<void> {
    for (;;) {
      const [row] = (await runner.query(MIGRATION_TRY_LOCK_SQL)) as Array<{ locked: boolean }>;
      if (row?.locked) return;
      if (this.stopped) throw new Error('shutting down while waiting for the migrations lock');
      await sleep(MIGRATION_LOCK_POLL_MS);
    }
  }

  private assertUp(): void {
    if (this.state !== 'up') {
      throw new ServiceUnavailableError('the database is unavailable; try again shortly');
    }
  }

  private translate(error: unknown): unknown {
    if (isConnectionError(error)) {
      this.reportFailure(error);
      return new ServiceUnavailableError('the database is unavailable; try again shortly');
    }
    if (sqlState(error) === QUERY_CANCELED) return new RequestTimeoutError();
    if (isDataException(error)) return new InvalidDataError(sqlState(error)!);
    return error;
  }

  private setState(state: DatabaseState): void {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  /** Starts the background connect-and-migrate loop unless one is already running. */
  private recover(): void {
    if (this.recovering || this.stopped) return;
    this.recovering = this.connectLoop().finally(() => {
      this.recovering = undefined;
    });
  }

  private async connectLoop(): Promise<void> {
    let delay = BACKOFF_MIN_MS;
    let attempt = 0;
    while (!this.stopped) {
      attempt += 1;
      try {
        await this.connectOnce();
        await this.migrate();
        if (this.stopped) return;
        this.setState('up');
        this.logger.log('PostgreSQL connected and migrated');
        return;
      } catch (error) {
        if (this.state !== 'down') this.setState('down');
        if (attempt === 1 || attempt % 20 === 0) {
          this.logger.warn({ err: errorSummary(error), attempt }, 'PostgreSQL not reachable; retrying');
        }
        await sleep(delay);
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private async connectOnce(): Promise<void> {
    if (this.source.isInitialized) {
      await withTimeout(this.source.query('SELECT 1'), this.config.database.connectTimeoutMs);
      return;
    }
    await this.ensureDatabaseExists();
    const source = this.createDataSource();
    try {
      await source.initialize();
      this.source = source;
    } catch (error) {
      await source.destroy().catch(() => undefined);
      throw error;
    }
  }

  /** Outside production, creates the configured database when it does not exist yet. */
  private async ensureDatabaseExists(): Promise<void> {
    if (this.config.isProduction) return;
    const target = new URL(this.config.database.url);
    const name = decodeURIComponent(target.pathname.slice(1));
    if (!name) return;
    const maintenance = new URL(target);
    maintenance.pathname = '/postgres';
    const client = new pg.Client({
      connectionString: maintenance.toString(),
      connectionTimeoutMillis: this.config.database.connectTimeoutMs,
    });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (rowCount === 0) {
        await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`).catch((error: unknown) => {
          if (sqlState(error) !== '42P04') throw error; // created meanwhile by another replica
        });
        this.logger.log(`database created: ${name}`);
      }
    } finally {
      await client.end();
    }
  }

  private createDataSource(): DataSource {
    const { url, poolSize, connectTimeoutMs } = this.config.database;
    const timeoutMs = this.config.http.requestTimeoutMs;
    return new DataSource({
      type: 'postgres',
      url,
      entities: this.options.entities,
      migrations: this.options.migrations,
      migrationsTableName: 'migrations',
      synchronize: false,
      logging: false,
      poolSize,
      applicationName: 'taskd',
      extra: {
        connectionTimeoutMillis: connectTimeoutMs,
        // No statement may outlive the longest request; a black-holed connection fails too.
        statement_timeout: timeoutMs,
        query_timeout: timeoutMs + 1_000,
        keepAlive: true,
        idleTimeoutMillis: 30_000,
        // Sessions in UTC, and timestamptz read as the ISO strings the API answers with.
        options: SESSION_OPTIONS,
        types: PG_TYPES,
      },
    });
  }
}

class TimeoutError extends Error {}

/**
 * Lets one pooled session wait on its statements as long as they take: the pool's
 * `query_timeout` bounds a request's statement, not a migration's. Returns what undoes it.
 */
function liftQueryTimeout(client: pg.PoolClient): () => void {
  const parameters = (client as unknown as { connectionParameters: { query_timeout?: number } })
    .connectionParameters;
  const bound = parameters.query_timeout;
  parameters.query_timeout = undefined;
  return () => {
    parameters.query_timeout = bound;
  };
}

/**
 * Hands a query runner's connection back to the pool; given a failure, has the pool close it
 * instead (pg-pool discards a client released with an error).
 */
async function releaseRunner(runner: QueryRunner, failure: unknown): Promise<void> {
  if (failure === undefined) return runner.release();
  const reason = failure instanceof Error ? failure : new Error(String(failure));
  await (runner as unknown as { releasePostgresConnection(err: Error): Promise<void> }).releasePostgresConnection(reason);
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function errorSummary(error: unknown): { message: string; code?: string } {
  const message = error instanceof Error ? error.message : String(error);
  return { message, code: sqlState(error) ?? (error as { code?: string } | null)?.code };
}
