/**
 * The `pg` module TypeORM is given through its public `driver` option: `pg` itself, with a
 * `Pool` and a `Client` of our own. This is the one place that shapes how connections behave;
 * TypeORM's private members are never touched.
 *
 * - **Checkout bounded by the caller's deadline, not by the connect timeout.** pg-pool has one
 *   `connectionTimeoutMillis` for two different waits: opening a connection (a server that does
 *   not answer) and waiting for a free one (every connection busy). Here the client times out its
 *   own connection attempt (DATABASE_CONNECT_TIMEOUT_MS), and a checkout waits for a free
 *   connection until the deadline of the work that asked (`runWithDeadline`), or
 *   `maxCheckoutWaitMs` without one. A busy pool is not an outage, and the two fail differently
 *   (`PoolCheckoutTimeoutError` is never taken for a connection failure).
 * - **A connection whose ROLLBACK failed is closed, not pooled.** When the driver gave up
 *   waiting on a statement the server is still running, the ROLLBACK queued behind it can time
 *   out too, and the session may still be inside its transaction: pooled, the next transaction
 *   would run inside it (its BEGIN a mere warning) and commit what the failed one began. TypeORM
 *   swallows that failure and releases the connection as healthy, so the client remembers it
 *   and the pool's release closes such a client instead.
 * - **Statements prepared once per connection.** A parameterised statement outside a
 *   transaction runs as a named (protocol-level prepared) statement: each connection parses and
 *   plans it once, not on every request. A migration run elsewhere can change a column type
 *   under a prepared statement, and a pooler can lose one; PostgreSQL then refuses it before
 *   executing anything, so it is renamed (prepared afresh everywhere) and run once more unnamed.
 * - **Pool statistics** for metrics, from the pool TypeORM created.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import type { RequestContext } from '../../common/context/request-context.js';
import { within } from '../../common/util/within.js';
import { RequestTimeoutError } from '../../common/errors/domain-errors.js';

/** "cached plan must not change result type", "prepared statement does not exist". */
const STALE_STATEMENT_SQLSTATES = new Set(['0A000', '26000']);
/** The largest delay a Node timer takes (about 24.8 days): for all purposes, no timeout. */
const UNBOUNDED_MS = 2 ** 31 - 1;
/** Statement texts prepared at most; past it a text runs unnamed, so no connection grows without bound. */
const MAX_PREPARED_STATEMENTS = 256;

export interface PgDriverSettings {
  /** How long opening one connection may take. */
  connectTimeoutMs: number;
  /** How long a checkout without a deadline (background work) waits for a free connection. */
  maxCheckoutWaitMs: number;
}

export interface PoolUsage {
  inUse: number;
  idle: number;
  waiting: number;
}

/** Every connection was busy until the caller's deadline: the pool is saturated, PostgreSQL is not down. */
export class PoolCheckoutTimeoutError extends Error {
  override readonly name = 'PoolCheckoutTimeoutError';
  constructor(waitedMs: number) {
    super(`no pool connection became free within ${waitedMs} ms`);
  }
}

type Release = (error?: Error | boolean) => void;
type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, release: Release) => void;

const deadlines = new AsyncLocalStorage<RequestContext>();

/** pg's own checkout and statement, past this driver's overrides (see `PgDriver.query`). */
const poolConnect = pg.Pool.prototype.connect as (this: pg.Pool) => Promise<pg.PoolClient>;
const clientQuery = pg.Client.prototype.query as (this: pg.ClientBase, config: pg.QueryConfig) => Promise<pg.QueryResult>;

/** Runs `work` with `ctx`'s deadline bounding every pool checkout it makes. */
export function runWithDeadline<T>(ctx: RequestContext, work: () => Promise<T>): Promise<T> {
  return deadlines.run(ctx, work);
}

export class PgDriver {
  /** The module for TypeORM's `driver` option. */
  readonly module: typeof pg;
  private current: pg.Pool | undefined;
  private readonly statementNames = new Map<string, string>();
  private statementCount = 0;

  constructor(readonly settings: PgDriverSettings) {
    this.module = { ...pg, Pool: poolClassFor(this, clientClassFor(this)) } as typeof pg;
  }

  /** Called by the pool class for each pool TypeORM creates: the latest is the one in use. */
  adoptPool(pool: pg.Pool): void {
    const previous = this.current;
    this.current = pool;
    // A pool created when an earlier attempt to initialise failed half-way is ended.
    if (previous && previous !== pool) void previous.end().catch(() => undefined);
  }

  /** Connections of the pool in use: none before TypeORM has created its pool. */
  usage(): PoolUsage {
    const pool = this.current;
    if (!pool) return { inUse: 0, idle: 0, waiting: 0 };
    return { inUse: pool.totalCount - pool.idleCount, idle: pool.idleCount, waiting: pool.waitingCount };
  }

  /**
   * Has the pool close `connection` (a client of this driver, as a TypeORM query runner's
   * `connect()` resolves with) when it is released, instead of pooling it.
   */
  closeOnRelease(connection: unknown): void {
    if (connection && typeof connection === 'object' && 'unsafeToReuse' in connection) {
      (connection as TaskdClientState).unsafeToReuse = true;
    }
  }

  /**
   * Lets the statements of `connection` (a client of this driver) wait as long as they take, for
   * a migration: the pool's `query_timeout` bounds a request's statement, not a migration's.
   * Returns what undoes it.
   */
  liftQueryTimeout(connection: unknown): () => void {
    if (!connection || typeof connection !== 'object' || !('unboundedQueries' in connection)) return () => undefined;
    const client = connection as TaskdClientState;
    client.unboundedQueries = true;
    return () => {
      client.unboundedQueries = false;
    };
  }

  /** A name per statement text, the same on every connection of this process. */
  statementName(text: string): string | undefined {
    let name = this.statementNames.get(text);
    if (name === undefined && this.statementCount < MAX_PREPARED_STATEMENTS) {
      this.statementCount += 1;
      name = `taskd_${this.statementCount}`;
      this.statementNames.set(text, name);
    }
    return name;
  }

  /** The prepared form of `text` is stale: the next use prepares it afresh under a new name. */
  forgetStatement(text: string): void {
    this.statementNames.delete(text);
  }

  /**
   * Runs one statement on a connection of the pool TypeORM created, as TypeORM's query runner
   * would (the same checkout, client and prepared statements) without the runner: for the hot
   * paths, where the runner's bookkeeping was a tenth of the request (docs/performance.md,
   * "What TypeORM costs a request"). Resolves with the result; a failure of the statement itself
   * (not of the checkout) is passed through `statementFailure`, as the runner wraps it.
   */
  async query(
    text: string,
    values: readonly unknown[],
    statementFailure = (error: unknown): unknown => error,
    ctx: RequestContext | undefined = deadlines.getStore(),
  ): Promise<pg.QueryResult> {
    const pool = this.current;
    // Before TypeORM has created its pool (a replica starting while the probe already answers):
    // a connection error, as TypeORM's own "Driver not Connected" is, so the write is buffered.
    if (!pool) throw new Error('the database is not connected');
    // The pool's and the client's own methods, not this driver's overrides: an autocommit
    // statement needs neither the release wrapper (no ROLLBACK can fail here) nor the
    // transaction watch, and each override is a promise more on the hottest path.
    const client = await this.acquire(pool, () => poolConnect.call(pool), ctx);
    // As TypeORM's runner does: a connection that fails while checked out is not pooled again
    // (and its error event, unheard, would end the process).
    let broken: Error | undefined;
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      const name = values.length > 0 ? this.statementName(text) : undefined;
      return await this.sendNamed(name, text, values as unknown[], (config) => clientQuery.call(client, config));
    } catch (error) {
      throw statementFailure(error);
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  /**
   * Sends `text` as the prepared statement `name`, or unnamed without one. PostgreSQL refuses a
   * stale prepared form before executing anything: it is forgotten (prepared afresh next time)
   * and the text sent once more, unnamed.
   */
  sendNamed(
    name: string | undefined,
    text: string,
    values: unknown[] | undefined,
    send: (config: pg.QueryConfig) => Promise<pg.QueryResult>,
  ): Promise<pg.QueryResult> {
    if (name === undefined) return send({ text, values });
    // A `catch`, not an async frame: every statement goes through here.
    return send({ name, text, values }).catch((error: unknown) => {
      if (!STALE_STATEMENT_SQLSTATES.has((error as { code?: string }).code ?? '')) throw error;
      this.forgetStatement(text);
      return send({ text, values });
    });
  }

  /**
   * A connection from `connect`, waiting for a free one until `ctx`'s deadline (or
   * `maxCheckoutWaitMs` without one). An idle connection is handed over at once, with no wait to
   * bound (the common case, and a timer less per statement). Work without a deadline that opens
   * a new connection (the pool has room) waits for the attempt alone, which the client bounds
   * (DATABASE_CONNECT_TIMEOUT_MS): the checkout bound is for a busy pool, and a connection
   * slower to open than it (a loaded machine, a short REQUEST_TIMEOUT_MS) must not keep the
   * service from ever connecting.
   */
  private acquire(pool: pg.Pool, connect: () => Promise<pg.PoolClient>, ctx: RequestContext | undefined): Promise<pg.PoolClient> {
    const waitMs = ctx ? ctx.remainingMs() : this.settings.maxCheckoutWaitMs;
    if (ctx?.aborted || waitMs <= 0) return Promise.reject(new RequestTimeoutError());
    if (pool.idleCount > pool.waitingCount) return connect();
    if (!ctx && pool.totalCount < (pool.options.max ?? PG_POOL_DEFAULT_MAX)) return connect();
    return boundedWait(connect(), ctx, waitMs);
  }

  /** A checkout, bounded by the deadline of the work that asked, whose release closes unsafe clients. */
  async checkout(pool: pg.Pool, connect: () => Promise<pg.PoolClient>): Promise<pg.PoolClient> {
    const client = await this.acquire(pool, connect, deadlines.getStore());
    const release = client.release.bind(client) as Release;
    client.release = ((error?: Error | boolean) => {
      const unsafe = (client as unknown as TaskdClientState).unsafeToReuse;
      release(error || (unsafe ? new Error('the connection may still be inside a transaction') : undefined));
    }) as pg.PoolClient['release'];
    return client;
  }
}

/** pg-pool's size when none is given. */
const PG_POOL_DEFAULT_MAX = 10;

/** The checkout `pending`, or a timeout error once `waitMs` has passed (its connection then goes straight back). */
function boundedWait(pending: Promise<pg.PoolClient>, ctx: RequestContext | undefined, waitMs: number): Promise<pg.PoolClient> {
  const expired = () => (ctx ? new RequestTimeoutError() : new PoolCheckoutTimeoutError(waitMs));
  return within(pending, waitMs, expired).catch((error: unknown) => {
    void pending.then((late) => late.release(), () => undefined);
    throw error;
  });
}

function poolClassFor(driver: PgDriver, Client: typeof pg.Client): typeof pg.Pool {
  return class TaskdPool extends pg.Pool {
    constructor(options: pg.PoolConfig = {}) {
      // The queue wait is bounded per checkout (PgDriver.checkout), the connection attempt by the client.
      super({ ...options, connectionTimeoutMillis: 0, Client } as pg.PoolConfig);
      driver.adoptPool(this);
    }

    override connect(): Promise<pg.PoolClient>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | void {
      const checkout = driver.checkout(this, super.connect.bind(this) as () => Promise<pg.PoolClient>);
      if (!callback) return checkout;
      checkout.then(
        (client) => callback(undefined, client, client.release.bind(client)),
        (error: Error) => callback(error, undefined, () => undefined),
      );
    }
  } as unknown as typeof pg.Pool;
}

function clientClassFor(driver: PgDriver): typeof pg.Client {
  const { connectTimeoutMs } = driver.settings;
  return class TaskdClient extends pg.Client implements TaskdClientState {
    unsafeToReuse = false;
    unboundedQueries = false;
    private inTransaction = false;

    constructor(config?: string | pg.ClientConfig) {
      super(typeof config === 'string' ? config : { ...config, connectionTimeoutMillis: connectTimeoutMs });
      // Always heard: pg-pool takes its listener off a connection it hands out, and whoever
      // checked it out adds one a moment later; an error in between (a FATAL in the packet that
      // made it ready, a terminated backend) would otherwise end the process. The connection is
      // then not queryable: its next statement fails as a connection error, and the pool closes
      // it on release instead of pooling it.
      this.on('error', ignoreError);
    }

    override query(...args: unknown[]): never {
      const [text, values, callback] = args;
      // Only the promise form with a text, which is how TypeORM queries; anything else as it is.
      if (typeof text !== 'string' || typeof values === 'function' || callback !== undefined) {
        return (super.query as (...a: unknown[]) => never)(...args);
      }
      return this.run(text, values as unknown[] | undefined) as never;
    }

    private async run(text: string, values: unknown[] | undefined): Promise<pg.QueryResult> {
      // BEGIN, COMMIT and ROLLBACK take no parameters: a statement with some is none of them.
      const parameterised = values !== undefined && values.length > 0;
      const control = parameterised ? undefined : transactionControl(text);
      if (control === 'begin') this.inTransaction = true;
      try {
        const name = parameterised && !this.inTransaction ? driver.statementName(text) : undefined;
        return await driver.sendNamed(name, text, values, (config) => this.send(config));
      } catch (error) {
        if (control === 'rollback') this.unsafeToReuse = true;
        throw error;
      } finally {
        if (control === 'end') this.inTransaction = false;
        if (control === 'rollback' && !this.unsafeToReuse) this.inTransaction = false;
      }
    }

    private send(config: pg.QueryConfig & { query_timeout?: number }): Promise<pg.QueryResult> {
      // pg takes a query's own `query_timeout` over the connection's; the largest timer value is "none".
      if (this.unboundedQueries) config.query_timeout = UNBOUNDED_MS;
      return super.query(config);
    }
  } as unknown as typeof pg.Client;
}

function ignoreError(): void {}

interface TaskdClientState {
  /** Set when a ROLLBACK failed: the session may still be inside its transaction. */
  unsafeToReuse: boolean;
  /** Set while a migration runs on the connection: its statements wait as long as they take. */
  unboundedQueries: boolean;
}

const TRANSACTION_CONTROL = /^\s*(?:(START TRANSACTION|BEGIN)|ROLLBACK TO|(ROLLBACK)|(COMMIT|END))/i;

function transactionControl(text: string): 'begin' | 'rollback' | 'end' | undefined {
  const match = TRANSACTION_CONTROL.exec(text);
  if (!match) return undefined;
  return match[1] ? 'begin' : match[2] ? 'rollback' : match[3] ? 'end' : undefined;
}
