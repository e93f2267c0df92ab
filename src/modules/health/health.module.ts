/** Liveness and readiness (Terminus), and the life cycle readiness follows. */
import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { ConnectionDrain } from '../../common/http/connection-drain.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { AuthModule } from '../auth/auth.module.js';
import { BufferModule } from '../buffer/buffer.module.js';
import { HealthController } from './health.controller.js';
import { HealthIndicators } from './health-indicators.js';
import { LifecycleService } from './lifecycle.service.js';
import { ReadinessService } from './readiness.service.js';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), BufferModule, AuthModule],
  controllers: [HealthController],
  providers: [
    LifecycleService,
    HealthIndicators,
    ReadinessService,
    {
      provide: ConnectionDrain,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new ConnectionDrain(...connectionGraceMs(config)),
    },
  ],
  exports: [LifecycleService, ReadinessService, ConnectionDrain],
})
export class HealthModule {}

/**
 * How long the closing server waits for clients (ConnectionDrain): as long as the drain, up to a
 * second (a request on its way takes far less), and without a drain not at all; on a lagging
 * event loop longer, up to a quarter of what the shutdown bound leaves after the drain.
 */
function connectionGraceMs(config: AppConfig): [graceMs: number, maxGraceMs: number] {
  const { drainMs, timeoutMs } = config.shutdown;
  const graceMs = Math.min(drainMs, 1_000);
  if (graceMs === 0) return [0, 0];
  return [graceMs, Math.max(graceMs, Math.floor((timeoutMs - drainMs) / 4))];
}
