/**
 * The health indicators, each built with Terminus's `HealthIndicatorService` (and its
 * `DiskHealthIndicator` for the buffer's volume), one per thing an instance depends on:
 *
 *   process      the process answers (liveness: nothing that load or a dependency can fail)
 *   postgres     a round trip on the probe connection, outside the pool (never queued behind it)
 *   redis        a PING on the command connection
 *   buffer       the LMDB buffer is open and can hold one more entry of the largest request
 *                accepted; its depth, parked and set-aside counts
 *   buffer-disk  the buffer's volume has room for it to grow
 *   revocations  the revoked sessions have been loaded from Redis at least once
 */
import { statfs } from 'node:fs/promises';
import { Inject, Injectable } from '@nestjs/common';
import { DiskHealthIndicator, HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { PostgresAvailability } from '../../infrastructure/database/postgres-availability.js';
import { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { RevocationService } from '../auth/revocation.service.js';
import { BufferService } from '../buffer/buffer.service.js';

const PING_TIMEOUT_MS = 1_000;
/** Free space the buffer's volume keeps for the buffer to grow into, at the least. */
const BUFFER_DISK_MIN_FREE_BYTES = 64 * 1024 * 1024;
/** What a stored entry adds to its request's body at most: ids, times, position, envelope. */
const ENTRY_OVERHEAD_BYTES = 4096;

@Injectable()
export class HealthIndicators {
  private processUp: HealthIndicatorResult<'process'> | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly indicators: HealthIndicatorService,
    private readonly disk: DiskHealthIndicator,
    private readonly postgresAvailability: PostgresAvailability,
    private readonly redisService: RedisService,
    private readonly lmdb: LmdbService,
    private readonly bufferService: BufferService,
    private readonly revocationService: RevocationService,
  ) {}

  /** Up whenever it can be asked, so built once: liveness answers it on every probe. */
  process(): HealthIndicatorResult<'process'> {
    if (this.processUp === undefined) {
      const up = this.indicators.check('process').up();
      Object.freeze(up.process);
      this.processUp = Object.freeze(up);
    }
    return this.processUp;
  }

  async postgres(): Promise<HealthIndicatorResult<'postgres'>> {
    const check = this.indicators.check('postgres');
    const up = await this.postgresAvailability.ping(PING_TIMEOUT_MS);
    const data = { state: this.postgresAvailability.getState() };
    return up ? check.up(data) : check.down(data);
  }

  async redis(): Promise<HealthIndicatorResult<'redis'>> {
    const check = this.indicators.check('redis');
    return (await this.redisService.ping(PING_TIMEOUT_MS)) ? check.up() : check.down();
  }

  buffer(): HealthIndicatorResult<'buffer'> {
    const check = this.indicators.check('buffer');
    if (!this.lmdb.check()) return check.down({ state: 'closed' });
    const stats = this.bufferService.stats();
    const accepting = this.bufferService.hasRoomFor(this.config.http.bodyLimit + ENTRY_OVERHEAD_BYTES);
    const data = {
      state: accepting ? 'accepting' : 'full',
      depth: stats.depth,
      parked: stats.parked,
      setAside: stats.deadLetters,
      oldestAgeMs: stats.oldestAgeMs,
      bytes: stats.bytes,
      deadLetters: stats.deadLetters,
    };
    return accepting ? check.up(data) : check.down(data);
  }

  async bufferDisk(): Promise<HealthIndicatorResult<'buffer-disk'>> {
    try {
      const { bsize, blocks } = await statfs(this.config.buffer.path);
      const size = bsize * blocks;
      return await this.disk.checkStorage('buffer-disk', {
        path: this.config.buffer.path,
        threshold: Math.max(0, size - BUFFER_DISK_MIN_FREE_BYTES),
      });
    } catch {
      return this.indicators.check('buffer-disk').down({ state: 'unreadable' });
    }
  }

  revocations(): HealthIndicatorResult<'revocations'> {
    const check = this.indicators.check('revocations');
    return this.revocationService.hasLoaded() ? check.up() : check.down({ state: 'loading' });
  }
}
