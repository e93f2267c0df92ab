import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthCheckResult, type HealthIndicatorResult } from '@nestjs/terminus';
import { DatabaseService } from '../../infrastructure/database/database.service.js';
import { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { LifecycleService } from './lifecycle.service.js';

const PING_TIMEOUT_MS = 1_000;

@Injectable()
export class ReadinessService {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly lifecycle: LifecycleService,
    private readonly database: DatabaseService,
    private readonly redis: RedisService,
    private readonly lmdb: LmdbService,
  ) {}

  async evaluate(): Promise<{ ready: boolean; result: HealthCheckResult }> {
    const [postgresUp, redisUp] = await Promise.all([
      this.database.isUp() ? this.database.ping(PING_TIMEOUT_MS) : Promise.resolve(false),
      this.redis.ping(PING_TIMEOUT_MS),
    ]);
    const bufferUp = this.lmdb.check();
    const entries: HealthIndicatorResult[] = [
      this.entry('postgres', postgresUp, { state: this.database.getState() }),
      this.entry('redis', redisUp),
      this.entry('buffer', bufferUp),
    ];
    const phase = this.lifecycle.getPhase();
    const canWrite = postgresUp || bufferUp;
    const ready = phase === 'ready' && canWrite;
    const status = phase === 'shutting_down' ? 'shutting_down' : ready ? 'ok' : 'error';
    return { ready, result: summarise(status, entries) };
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
