/**
 * Applies pending migrations, one transaction each (a migration may opt out, to build an index
 * CONCURRENTLY), under a PostgreSQL advisory lock so that replicas starting together do not race.
 * The lock, the migrations and the lifted statement timeout share one session: a migration may
 * take longer than any request is allowed to. After any failure that session is closed, not
 * pooled: a lock request the driver stopped waiting for (another replica migrating for longer
 * than the query timeout) is still queued on the server, and a pooled session would take the
 * lock later and keep it.
 */
import { Injectable, Logger } from '@nestjs/common';
import { DataSource, MigrationExecutor } from 'typeorm';
import { PgDriver } from './pg-driver.js';

const LOCK_SQL = "SELECT pg_advisory_lock(hashtext('taskd:migrations'))";
const UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('taskd:migrations'))";

@Injectable()
export class SchemaMigrator {
  private readonly logger = new Logger(SchemaMigrator.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly driver: PgDriver,
  ) {}

  async migrate(): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    const connection: unknown = await runner.connect();
    try {
      await runner.query('SET statement_timeout = 0');
      await runner.query(LOCK_SQL);
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
      await runner.release();
    }
  }
}
