/**
 * Tasks: `TasksController` → `TasksService` (use cases) → `TasksRepository` (SQL). Writes go
 * through the buffer's `WritePath`; `TaskOperations` registers how the buffer applies the
 * `task.*` operations it replays.
 */
import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Clock } from '../../common/time/clock.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { BufferModule } from '../buffer/buffer.module.js';
import { TaskAliasEntity } from './task-alias.entity.js';
import { TaskCoordination } from './task-coordination.js';
import { TaskCursorCodec } from './task-cursor.js';
import { TaskEntity } from './task.entity.js';
import { TaskTombstoneEntity } from './task-tombstone.entity.js';
import { TaskTombstonePruner } from './task-tombstone-pruner.js';
import { TaskOperations } from './task-operations.js';
import { TasksController } from './tasks.controller.js';
import { TasksRepository } from './tasks.repository.js';
import { TasksService } from './tasks.service.js';

@Module({
  imports: [TypeOrmModule.forFeature([TaskEntity, TaskAliasEntity, TaskTombstoneEntity]), BufferModule],
  controllers: [TasksController],
  providers: [
    TasksService,
    TasksRepository,
    TaskOperations,
    TaskCoordination,
    TaskTombstonePruner,
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
