/**
 * The offline write buffer. Feature modules import it to route their writes (`WritePath`) and to
 * register how their operations are applied (`OperationRegistry`); health and metrics read
 * `BufferService.stats()`. It depends on no feature.
 */
import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import { AppliedOperationEntity } from './applied-operation.entity.js';
import { AppliedOperations } from './applied-operations.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferHandoff } from './buffer-handoff.js';
import { BufferService } from './buffer.service.js';
import { LmdbBuffer } from './lmdb-buffer.js';
import { OperationRegistry } from './operation-registry.js';
import { WriteOrder } from './write-order.js';
import { WritePath } from './write-path.js';

@Module({
  imports: [TypeOrmModule.forFeature([AppliedOperationEntity])],
  providers: [
    {
      provide: LmdbBuffer,
      inject: [LmdbService, APP_CONFIG],
      useFactory: (lmdb: LmdbService, config: AppConfig) =>
        new LmdbBuffer(lmdb.root, {
          maxEntries: config.buffer.maxEntries,
          maxBytes: config.buffer.maxBytes,
          userMaxEntries: config.buffer.userMaxEntries,
          userMaxBytes: config.buffer.userMaxBytes,
          setAsideMaxEntries: config.buffer.setAsideMaxEntries,
          setAsideMaxBytes: config.buffer.setAsideMaxBytes,
          setAsideMaxAgeMs: config.replication.retentionMs,
        }),
    },
    AppliedOperations,
    BufferCounters,
    OperationRegistry,
    WriteOrder,
    WritePath,
    BufferHandoff,
    BufferService,
  ],
  exports: [WriteOrder, WritePath, OperationRegistry, BufferService],
})
export class BufferModule {}
