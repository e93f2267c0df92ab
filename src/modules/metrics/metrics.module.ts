/**
 * Prometheus metrics at `GET /metrics`. Buffer metrics appear once something binds
 * `BUFFER_STATS`; the simplest binding names the buffer's service here:
 *
 *   MetricsModule.forRoot({ imports: [BufferModule], bufferStats: BufferService })
 *
 * where `BufferModule` exports `BufferService` and `BufferService` has `stats(): BufferStats`.
 * A global module that provides and exports `BUFFER_STATS` works too.
 */
import {
  Module,
  type DynamicModule,
  type ModuleMetadata,
  type Provider,
  type Type,
} from '@nestjs/common';
import { BUFFER_STATS, type BufferStatsSource } from './buffer-stats.js';
import { MetricsController } from './metrics.controller.js';
import { MetricsService } from './metrics.service.js';

export interface MetricsModuleOptions {
  /** Modules that export the class named by `bufferStats`. */
  imports?: ModuleMetadata['imports'];
  /** The provider whose `stats()` the buffer metrics read at scrape time. */
  bufferStats?: Type<BufferStatsSource>;
}

@Module({})
export class MetricsModule {
  static forRoot(options: MetricsModuleOptions = {}): DynamicModule {
    const providers: Provider[] = [MetricsService];
    if (options.bufferStats)
      providers.push({ provide: BUFFER_STATS, useExisting: options.bufferStats });
    return {
      module: MetricsModule,
      imports: options.imports ?? [],
      controllers: [MetricsController],
      providers,
      exports: [MetricsService],
    };
  }
}
