/**
 * Tasks: `TasksController` → `TasksService` (use cases) → `TasksRepository` (SQL). Exports the
 * repository for the offline buffer, which applies the same changes later.
 */
import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { Clock } from './clock.js';
import { TaskCursorCodec } from './task-cursor.js';
import { TasksController } from './tasks.controller.js';
import { TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';

@Module({
  controllers: [TasksController],
  providers: [
    TasksService,
    TasksRepository,
    Clock,
    {
      provide: TaskCursorCodec,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => TaskCursorCodec.fromSecret(config.auth.jwtSecret),
    },
  ],
  exports: [TasksService, TasksRepository],
})
export class TasksModule {}
