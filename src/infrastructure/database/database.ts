/**
 * How use cases and repositories reach PostgreSQL for a request (or for background work with a
 * context of its own): every call through `run` or `transaction`, which
 *
 * - refuse at once while the circuit breaker is open (503, so that a write can be buffered);
 * - bound the work by the context's deadline: a pool checkout waits no longer than the request
 *   has left, and a transaction's statements get `SET LOCAL statement_timeout` from it;
 * - translate failures: a failure that may mean an outage raises a suspicion (the probe decides)
 *   and becomes 503; a statement timeout (57014) becomes 504; a value PostgreSQL refuses
 *   (SQLSTATE class 22) becomes a 400. Everything else propagates as it is.
 *
 * A connection whose ROLLBACK failed is closed by the driver itself (pg-driver.ts).
 *
 * Autocommit statements (`read`, and `manager.query()`, which the repositories' apply
 * statements use for a direct write) run on the pool TypeORM created without a query runner
 * each: the runner's bookkeeping (its logger and broadcaster calls, a result object, a longer
 * promise chain) was a tenth of a list's or a create's CPU (docs/performance.md). Transactions,
 * and everything else TypeORM's manager does (find, save, builders), go through TypeORM.
 */
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager, QueryFailedError, type ObjectLiteral } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { RequestTimeoutError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { InvalidDataError, isConnectionError, isDataException, sqlState } from './connection-errors.js';
import { PgDriver, PoolCheckoutTimeoutError, runWithDeadline } from './pg-driver.js';
import { PostgresAvailability } from './postgres-availability.js';

const QUERY_CANCELED = '57014';
/** How long a client is asked to wait when every pool connection stayed busy. */
const POOL_BUSY_RETRY_AFTER_SECONDS = 1;

/** PostgreSQL cannot be reached (breaker open, or a connection failure just now). */
export class DatabaseUnavailableError extends ServiceUnavailableError {
  constructor() {
    super('the database is unavailable; try again shortly');
  }
}

/**
 * TypeORM's manager, whose `query()` runs each statement on a pooled connection without a query
 * runner, and answers as TypeORM's runner does (rows; `[rows, count]` for UPDATE and DELETE;
 * failures as `QueryFailedError`).
 */
class AutocommitManager extends EntityManager {
  constructor(
    dataSource: DataSource,
    private readonly driver: PgDriver,
  ) {
    super(dataSource);
  }

  override async query<T = unknown>(query: string, parameters?: unknown[] | ObjectLiteral): Promise<T> {
    if (parameters !== undefined && !Array.isArray(parameters)) return super.query<T>(query, parameters);
    const result = await this.driver.query(query, parameters ?? [], statementFailure(query, parameters));
    return (result.command === 'UPDATE' || result.command === 'DELETE' ? [result.rows, result.rowCount] : result.rows) as T;
  }
}

/** A failure of the statement itself, as TypeORM's runner reports it. */
function statementFailure(query: string, parameters: unknown[] | undefined): (error: unknown) => QueryFailedError {
  return (error) => new QueryFailedError(query, parameters, error as Error);
}

@Injectable()
export class Database {
  /** The manager of autocommit statements: each runs on its own pooled connection. */
  readonly manager: EntityManager;

  constructor(
    private readonly dataSource: DataSource,
    private readonly availability: PostgresAvailability,
    private readonly driver: PgDriver,
  ) {
    this.manager = new AutocommitManager(dataSource, driver);
  }

  isUp(): boolean {
    return this.availability.isUp();
  }

  /**
   * After a `DatabaseUnavailableError`: whether PostgreSQL is known to be down once the probe has
   * decided (the breaker open), as opposed to a passing failure of one connection.
   */
  async confirmedDown(): Promise<boolean> {
    return !(await this.availability.settled());
  }

  /** Runs `work` (statements of a request, each on its own) under the rules of the header. */
  run<T>(ctx: RequestContext, work: () => Promise<T>): Promise<T> {
    return this.guarded(ctx, () => runWithDeadline(ctx, work));
  }

  /**
   * Runs one read statement under the rules of `run`, as `manager.query()` would (see the
   * header), with the deadline handed to the checkout directly: the hottest read.
   */
  async read<Row>(ctx: RequestContext, sql: string, params: unknown[]): Promise<Row[]> {
    // `guarded`'s rules, written out: an async frame and a closure less on the hottest read.
    ctx.throwIfAborted();
    this.assertUp();
    try {
      return (await this.driver.query(sql, params, statementFailure(sql, params), ctx)).rows as Row[];
    } catch (error) {
      throw this.translate(error);
    }
  }

  /**
   * Runs `work` in one transaction whose statements are bounded by the time the context has
   * left, so that no statement outlives its request.
   */
  transaction<T>(ctx: RequestContext, work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return this.run(ctx, () =>
      this.dataSource.transaction(async (manager) => {
        await manager.query(`SET LOCAL statement_timeout = ${Math.max(1, ctx.remainingMs())}`);
        return work(manager);
      }),
    );
  }

  /** `work`, refused at once past the deadline or while the breaker is open; failures translated. */
  private async guarded<T>(ctx: RequestContext, work: () => Promise<T>): Promise<T> {
    ctx.throwIfAborted();
    this.assertUp();
    try {
      return await work();
    } catch (error) {
      throw this.translate(error);
    }
  }

  private assertUp(): void {
    if (!this.availability.isUp()) throw new DatabaseUnavailableError();
  }

  private translate(error: unknown): unknown {
    if (error instanceof ServiceUnavailableError || error instanceof RequestTimeoutError) return error;
    if (isConnectionError(error)) {
      void this.availability.suspect();
      return new DatabaseUnavailableError();
    }
    if (error instanceof PoolCheckoutTimeoutError) {
      return new ServiceUnavailableError('the database is busy; try again shortly', POOL_BUSY_RETRY_AFTER_SECONDS);
    }
    if (sqlState(error) === QUERY_CANCELED) return new RequestTimeoutError();
    if (isDataException(error)) return new InvalidDataError(sqlState(error)!);
    return error;
  }
}
