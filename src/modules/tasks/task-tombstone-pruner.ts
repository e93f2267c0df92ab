/**
 * Deletes task tombstones older than WRITE_RETENTION, hourly. A tombstone keeps a late replay of
 * a create or an update from bringing a deleted task back; an operation accepted longer ago than
 * the retention period is set aside at replay, never applied, so past it the tombstone has
 * nothing left to stop (docs/design/replicas.md, section 6).
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { RequestContext } from '../../common/context/request-context.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { Database } from '../../infrastructure/database/database.js';
import { summariseError } from '../buffer/buffer.errors.js';
import { TasksRepository } from './tasks.repository.js';

const PRUNE_EVERY_MS = 3_600_000;
const PRUNE_TIMEOUT_MS = 30_000;

@Injectable()
export class TaskTombstonePruner {
  private readonly logger = new Logger(TaskTombstonePruner.name);

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly database: Database,
    private readonly tasks: TasksRepository,
  ) {}

  /** Resolves with how many tombstones went (0 while PostgreSQL is unreachable: the next hour tries again). */
  @Interval('task-tombstone-prune', PRUNE_EVERY_MS)
  async prune(): Promise<number> {
    if (!this.database.isUp()) return 0;
    const ctx = RequestContext.background('task-tombstone-prune', PRUNE_TIMEOUT_MS);
    try {
      const pruned = await this.tasks.pruneTombstones(ctx, this.config.replication.retentionMs);
      if (pruned > 0) this.logger.log({ pruned }, 'task tombstones older than WRITE_RETENTION pruned');
      return pruned;
    } catch (error) {
      this.logger.warn({ err: summariseError(error) }, 'pruning task tombstones failed; will retry later');
      return 0;
    } finally {
      ctx.release();
    }
  }
}
