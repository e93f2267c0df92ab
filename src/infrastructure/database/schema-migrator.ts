/**
 * Applies pending migrations, one transaction each (a migration may opt out, to build an index
 * CONCURRENTLY), under a PostgreSQL advisory lock so that replicas starting together do not race.
 * The lock, the migrations and the lifted timeouts (the server's `statement_timeout`, the
 * driver's `query_timeout`) share one session: a migration may take longer than any request is
 * allowed to, such as an index built concurrently on a large table.
 *
 * The lock is polled (`pg_try_advisory_lock`), not waited for: a statement waiting for it holds a
 * snapshot, and the holder's `CREATE INDEX CONCURRENTLY` waits for every older snapshot to go, a
 * deadlock PostgreSQL breaks by failing one of the two. After any failure the session is closed,
 * not pooled: it may still hold the lock, or run a statement the driver stopped waiting for.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource, MigrationExecutor, type QueryRunner } from 'typeorm';
import { PgDriver } from './pg-driver.js';

const TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('taskd:migrations')) AS locked";
const LOCK_POLL_MS = 100;
const UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('taskd:migrations'))";

@Injectable()
export class SchemaMigrator implements OnApplicationShutdown {
  private readonly logger = new Logger(SchemaMigrator.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly driver: PgDriver,
  ) {}

  private stopped = false;

  /** No wait for the lock goes on past shutdown. */
  onApplicationShutdown(): void {
    this.stopped = true;
  }

  async migrate(): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    const connection: unknown = await runner.connect();
    const restoreQueryTimeout = this.driver.liftQueryTimeout(connection);
    try {
      await runner.query('SET statement_timeout = 0');
      await this.takeLock(runner);
      try {
        const executor = new MigrationExecutor(this.dataSource, runner);
        executor.transaction = 'each';
        for (const migration of await executor.executePendingMigrations()) {
          this.logger.log(`migration applied: ${migration.name}`);
        }
      } finally {
        await runner.query(UNLOCK_SQL);
        await runner.query('RESET statement_timeout');
      }
    } catch (error) {
      this.driver.closeOnRelease(connection);
      throw error;
    } finally {
      restoreQueryTimeout();
      await runner.release();
    }
  }

  private async takeLock(runner: QueryRunner): Promise<void> {
    for (;;) {
      const [row] = (await runner.query(TRY_LOCK_SQL)) as Array<{ locked: boolean }>;
      if (row?.locked) return;
      if (this.stopped) throw new Error('shutting down while waiting for the migrations lock');
      await sleep(LOCK_POLL_MS);
    }
  }
}
