/**
 * Readiness, the one rule: this instance should get traffic unless it is starting (until it has
 * connected what it needs and loaded the revoked sessions once), shutting down, or can take
 * neither a direct write (PostgreSQL unreachable) nor a buffered one (the buffer cannot hold one
 * more entry of the largest request it accepts, or its volume is full). PostgreSQL alone being
 * down, Redis alone being down after start-up, and set-aside writes never make it 503.
 *
 * The body is Terminus's: every indicator's entry (HealthIndicators), those down under `error`,
 * the others under `info`, all under `details`; the status says what the rule decided.
 */
import { Injectable } from '@nestjs/common';
import type { HealthCheckResult, HealthIndicatorResult } from '@nestjs/terminus';
import { HealthIndicators } from './health-indicators.js';
import { LifecycleService } from './lifecycle.service.js';

@Injectable()
export class ReadinessService {
  constructor(
    private readonly lifecycle: LifecycleService,
    private readonly indicators: HealthIndicators,
  ) {}

  async evaluate(): Promise<{ ready: boolean; result: HealthCheckResult }> {
    const [postgres, redis, bufferDisk] = await Promise.all([
      this.indicators.postgres(),
      this.indicators.redis(),
      this.indicators.bufferDisk(),
    ]);
    const buffer = this.indicators.buffer();
    const revocations = this.indicators.revocations();
    const up = (result: HealthIndicatorResult) => Object.values(result).every((entry) => entry.status === 'up');
    const canWriteDirectly = up(postgres);
    const canBuffer = up(buffer) && up(bufferDisk);
    const phase = this.lifecycle.getPhase();
    const ready = phase === 'ready' && up(revocations) && (canWriteDirectly || canBuffer);
    const status = phase === 'shutting_down' ? 'shutting_down' : ready ? 'ok' : 'error';
    return { ready, result: summarise(status, [postgres, redis, buffer, bufferDisk, revocations]) };
  }
}

function summarise(status: HealthCheckResult['status'], entries: HealthIndicatorResult[]): HealthCheckResult {
  const details: HealthIndicatorResult = Object.assign({}, ...entries);
  const info: HealthIndicatorResult = {};
  const error: HealthIndicatorResult = {};
  for (const [key, value] of Object.entries(details)) (value.status === 'down' ? error : info)[key] = value;
  return { status, info, error, details };
}
