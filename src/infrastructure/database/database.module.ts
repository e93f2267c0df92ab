/**
 * PostgreSQL for the whole application: TypeORM's data source (`@nestjs/typeorm`), built from the
 * typed configuration and initialised in the background rather than at module initialisation, so
 * that the service starts, and buffers writes, while PostgreSQL is down (PostgresAvailability
 * connects, creates the database outside production and migrates). Feature modules register their
 * own entities with `TypeOrmModule.forFeature`; the app module names the migrations.
 */
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { MixedList } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { Database } from './database.js';
import { DatabaseCreator } from './database-creator.js';
import { PgDriver } from './pg-driver.js';
import { PG_TYPES, SESSION_OPTIONS } from './pg-types.js';
import { PostgresAvailability } from './postgres-availability.js';
import { PostgresProbe } from './postgres-probe.js';
import { SchemaMigrator } from './schema-migrator.js';

export interface DatabaseOptions {
  // TypeORM's own type for its `migrations` option.
  migrations: MixedList<Function>;
}

/** The driver, shared by the data source's options and the services that read its pool. */
@Module({
  providers: [
    {
      provide: PgDriver,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) =>
        new PgDriver({
          connectTimeoutMs: config.database.connectTimeoutMs,
          maxCheckoutWaitMs: config.http.requestTimeoutMs,
        }),
    },
  ],
  exports: [PgDriver],
})
class PgDriverModule {}

@Global()
@Module({})
export class DatabaseModule {
  static forRoot(options: DatabaseOptions): DynamicModule {
    return {
      module: DatabaseModule,
      imports: [
        PgDriverModule,
        TypeOrmModule.forRootAsync({
          imports: [PgDriverModule],
          inject: [APP_CONFIG, PgDriver],
          useFactory: (config: AppConfig, driver: PgDriver) => ({
            type: 'postgres' as const,
            url: config.database.url,
            driver: driver.module,
            manualInitialization: true,
            autoLoadEntities: true,
            migrations: options.migrations,
            migrationsTableName: 'migrations',
            synchronize: false,
            logging: false,
            poolSize: config.database.poolSize,
            applicationName: 'taskd',
            extra: {
              // No statement may outlive the longest request; a black-holed connection fails too.
              statement_timeout: config.http.requestTimeoutMs,
              query_timeout: config.http.requestTimeoutMs + 1_000,
              keepAlive: true,
              idleTimeoutMillis: 30_000,
              // Sessions in UTC, and timestamptz read as the ISO strings the API answers with.
              options: SESSION_OPTIONS,
              types: PG_TYPES,
            },
          }),
        }),
      ],
      providers: [PostgresProbe, DatabaseCreator, SchemaMigrator, PostgresAvailability, Database],
      exports: [PgDriverModule, PostgresAvailability, Database],
    };
  }
}
