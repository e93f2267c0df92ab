/**
 * Outside production, creates the configured database when it does not exist yet, so that a
 * developer's first `npm start` (or a test suite's own database) needs no manual step. In
 * production the database is an operator's to create: the service never does it there.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import pg from 'pg';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { sqlState } from './connection-errors.js';

const DUPLICATE_DATABASE = '42P04';

@Injectable()
export class DatabaseCreator {
  private readonly logger = new Logger(DatabaseCreator.name);
  private known = false;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  async ensureDatabaseExists(): Promise<void> {
    if (this.config.isProduction || this.known) return;
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
          if (sqlState(error) !== DUPLICATE_DATABASE) throw error; // another replica was quicker
        });
        this.logger.log(`database created: ${name}`);
      }
      this.known = true;
    } finally {
      await client.end();
    }
  }
}
