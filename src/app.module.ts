/**
 * Wires the modules together; nothing else.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { ProblemDetailsFilter } from './common/errors/problem-details.filter.js';
import { createValidationPipe } from './common/http/validation.js';
import type { AppConfig } from './config/app-config.js';
import { ConfigModule } from './config/config.module.js';
import { DatabaseModule } from './infrastructure/database/database.module.js';
import { LmdbModule } from './infrastructure/lmdb/lmdb.module.js';
import { RedisModule } from './infrastructure/redis/redis.module.js';
import { AuthModule } from './modules/auth/auth.module.js';
import { BufferModule } from './modules/buffer/buffer.module.js';
import { BufferService } from './modules/buffer/buffer.service.js';
import { HealthModule } from './modules/health/health.module.js';
import { MetricsModule } from './modules/metrics/metrics.module.js';
import { ProfileModule } from './modules/profile/profile.module.js';
import { TasksModule } from './modules/tasks/tasks.module.js';
import { MIGRATIONS } from '../migrations/index.js';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        // Requests are logged by Fastify's own pino instance (one line each, in an onResponse
        // hook); nestjs-pino reuses it for Nest's Logger. Its per-request context (so that a
        // line logged during a request carries the request's id) is entered by the request
        // hook in bootstrap.ts rather than by its middleware: no middleware runs at all.
        LoggerModule.forRoot({ pinoHttp: { logger }, useExisting: true, forRoutes: [] }),
        DatabaseModule.forRoot({ migrations: MIGRATIONS }),
        RedisModule,
        LmdbModule,
        ScheduleModule.forRoot(),
        BufferModule,
        HealthModule,
        MetricsModule.forRoot({ imports: [BufferModule], bufferStats: BufferService }),
        AuthModule,
        ProfileModule,
        TasksModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: ProblemDetailsFilter },
        { provide: APP_PIPE, useFactory: createValidationPipe },
      ],
    };
  }
}
