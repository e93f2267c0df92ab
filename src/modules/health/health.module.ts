import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { ConnectionDrain } from '../../common/http/connection-drain.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { BufferModule } from '../buffer/buffer.module.js';
import { HealthController } from './health.controller.js';
import { LifecycleService } from './lifecycle.service.js';
import { ReadinessService } from './readiness.service.js';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), BufferModule],
  controllers: [HealthController],
  providers: [
    LifecycleService,
    ReadinessService,
    {
      provide: ConnectionDrain,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new ConnectionDrain(connectionGraceMs(config)),
    },
  ],
  exports: [LifecycleService, ReadinessService, ConnectionDrain],
})
export class HealthModule {}

/**
 * How long the closing server waits for clients (ConnectionDrain): as long as the drain, up to a
 * second (a request on its way takes far less). Without a drain, not at all.
 */
function connectionGraceMs(config: AppConfig): number {
  return Math.min(config.shutdown.drainMs, 1_000);
}
