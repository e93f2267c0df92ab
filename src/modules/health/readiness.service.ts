/**
 * Readiness: whether this instance should get traffic. It can take writes when the buffer
 * accepts them, or when PostgreSQL answers and nothing is queued (writes then go direct). So
 * PostgreSQL alone being down keeps it ready; PostgreSQL down with the buffer full does not.
 */
import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthCheckResult, type HealthIndicatorResult } from '@nestjs/terminus';
import { PostgresAvailability } from '../../infrastructure/database/postgres-availability.js';
import { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { RevocationService } from '../auth/revocation.service.js';
import { BufferService } from '../buffer/buffer.service.js';
import { LifecycleService } from './lifecycle.service.js';

const PING_TIMEOUT_MS = 1_000;

@Injectable()
export class ReadinessService {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly lifecycle: LifecycleService,
    private readonly postgres: PostgresAvailability,
    private readonly redis: RedisService,
    private readonly lmdb: LmdbService,
    private readonly buffer: BufferService,
    private readonly revocations: RevocationService,
  ) {}

  async evaluate(): Promise<{ ready: boolean; result: HealthCheckResult }> {
    const [postgresUp, redisUp] = await Promise.all([
      this.postgres.ping(PING_TIMEOUT_MS),
      this.redis.ping(PING_TIMEOUT_MS),
    ]);
    const buffer = this.bufferState();
    const entries: HealthIndicatorResult[] = [
      this.entry('postgres', postgresUp, { state: this.postgres.getState() }),
      this.entry('redis', redisUp),
      this.entry('buffer', buffer.accepting, buffer.data),
    ];
    const phase = this.lifecycle.getPhase();
    const canWrite = buffer.accepting || (postgresUp && buffer.empty);
    // Until the revoked sessions are loaded, a revoked session's token would pass here.
    const ready = phase === 'ready' && canWrite && this.revocations.hasLoaded();
    const status = phase === 'shutting_down' ? 'shutting_down' : ready ? 'ok' : 'error';
    return { ready, result: summarise(status, entries) };
  }

  private bufferState(): { accepting: boolean; empty: boolean; data: Record<string, unknown> } {
    if (!this.lmdb.check()) return { accepting: false, empty: false, data: { state: 'closed' } };
    const stats = this.buffer.stats();
    return {
      accepting: stats.accepting,
      empty: stats.depth === 0,
      data: {
        state: stats.accepting ? 'accepting' : 'full',
        depth: stats.depth,
        oldestAgeMs: stats.oldestAgeMs,
        bytes: stats.bytes,
        deadLetters: stats.deadLetters,
      },
    };
  }

  private entry(key: string, up: boolean, data: Record<string, unknown> = {}): HealthIndicatorResult {
    const session = this.indicators.check(key);
    return up ? session.up(data) : session.down(data);
  }
}

function summarise(status: HealthCheckResult['status'], entries: HealthIndicatorResult[]): HealthCheckResult {
  const details: HealthIndicatorResult = Object.assign({}, ...entries);
  const info: HealthIndicatorResult = {};
  const error: HealthIndicatorResult = {};
  for (const [key, value] of Object.entries(details)) {
    (value.status === 'down' ? error : info)[key] = value;
  }
  return { status, info, error, details };
}
