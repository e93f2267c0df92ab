import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BufferModule } from '../buffer/buffer.module.js';
import { HealthController } from './health.controller.js';
import { LifecycleService } from './lifecycle.service.js';
import { ReadinessService } from './readiness.service.js';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), BufferModule],
  controllers: [HealthController],
  providers: [LifecycleService, ReadinessService],
  exports: [LifecycleService, ReadinessService],
})
export class HealthModule {}
