/**
 * Gauges that mirror the connections this instance depends on: the PostgreSQL pool, the
 * PostgreSQL circuit and the Redis connection. Set at scrape time from their owners.
 */
import { Gauge, type Registry } from 'prom-client';
import type { PoolUsage } from '../../infrastructure/database/pg-driver.js';

export class DependencyMetrics {
  private readonly poolInUse: Gauge;
  private readonly poolIdle: Gauge;
  private readonly poolWaiting: Gauge;
  private readonly postgresUp: Gauge;
  private readonly redisUp: Gauge;

  constructor(registry: Registry, poolSize: number) {
    const registers = [registry];
    this.poolInUse = new Gauge({
      name: 'taskd_pg_pool_connections_in_use',
      help: 'PostgreSQL pool connections checked out by a query or transaction.',
      registers,
    });
    this.poolIdle = new Gauge({
      name: 'taskd_pg_pool_connections_idle',
      help: 'PostgreSQL pool connections open and idle.',
      registers,
    });
    this.poolWaiting = new Gauge({
      name: 'taskd_pg_pool_waiting_requests',
      help: 'Queries waiting for a PostgreSQL pool connection.',
      registers,
    });
    new Gauge({
      name: 'taskd_pg_pool_connections_max',
      help: 'Size limit of the PostgreSQL pool (DATABASE_POOL_SIZE).',
      registers,
    }).set(poolSize);
    this.postgresUp = new Gauge({
      name: 'taskd_postgres_up',
      help: '1 while PostgreSQL is reachable (circuit closed), 0 while writes are buffered.',
      registers,
    });
    this.redisUp = new Gauge({
      name: 'taskd_redis_up',
      help: '1 while the Redis connection is ready, 0 while connecting or reconnecting.',
      registers,
    });
  }

  update(pool: PoolUsage, postgresUp: boolean, redisUp: boolean): void {
    this.poolInUse.set(pool.inUse);
    this.poolIdle.set(pool.idle);
    this.poolWaiting.set(pool.waiting);
    this.postgresUp.set(postgresUp ? 1 : 0);
    this.redisUp.set(redisUp ? 1 : 0);
  }
}
