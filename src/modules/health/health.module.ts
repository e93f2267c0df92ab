/** Liveness and readiness (Terminus), and the life cycle readiness follows. */
import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AuthModule } from '../auth/auth.module.js';
import { BufferModule } from '../buffer/buffer.module.js';
import { HealthController } from './health.controller.js';
import { HealthIndicators } from './health-indicators.js';
import { LifecycleService } from './lifecycle.service.js';
import { ReadinessService } from './readiness.service.js';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), BufferModule, AuthModule],
  controllers: [HealthController],
  providers: [LifecycleService, HealthIndicators, ReadinessService],
  exports: [LifecycleService, ReadinessService],
})
export class HealthModule {}
