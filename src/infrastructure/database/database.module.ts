import { Global, Module, type DynamicModule } from '@nestjs/common';
import { DATABASE_OPTIONS, DatabaseService, type DatabaseOptions } from './database.service.js';

/** PostgreSQL for the whole application; the app module names the entities and migrations. */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(options: DatabaseOptions): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [{ provide: DATABASE_OPTIONS, useValue: options }, DatabaseService],
      exports: [DatabaseService],
    };
  }
}
