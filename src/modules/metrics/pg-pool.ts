/**
 * The connection counts of the `pg` pool behind TypeORM's PostgreSQL driver. TypeORM types the
 * pool as `any` (`PostgresDriver.master`); this narrows it by shape to the three counters that
 * `pg.Pool` documents, so a driver without a pool (not connected yet) reads as no connections.
 */
import type pg from 'pg';
import type { DataSource } from 'typeorm';

export type PoolCounts = Pick<pg.Pool, 'totalCount' | 'idleCount' | 'waitingCount'>;

export interface PoolUsage {
  inUse: number;
  idle: number;
  waiting: number;
}

const NO_POOL: PoolUsage = { inUse: 0, idle: 0, waiting: 0 };

export function poolUsage(dataSource: DataSource): PoolUsage {
  if (!dataSource.isInitialized) return NO_POOL;
  const pool = (dataSource.driver as { master?: unknown }).master;
  if (!isPool(pool)) return NO_POOL;
  return {
    inUse: pool.totalCount - pool.idleCount,
    idle: pool.idleCount,
    waiting: pool.waitingCount,
  };
}

function isPool(value: unknown): value is PoolCounts {
  if (typeof value !== 'object' || value === null) return false;
  const pool = value as Record<keyof PoolCounts, unknown>;
  return (
    typeof pool.totalCount === 'number' &&
    typeof pool.idleCount === 'number' &&
    typeof pool.waitingCount === 'number'
  );
}
