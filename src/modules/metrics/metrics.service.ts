/**
 * This app instance's Prometheus registry: HTTP requests (recorded by one `onResponse` hook),
 * PostgreSQL pool and circuit state, Redis connection state, the offline buffer when its stats
 * are bound, and the process-wide default metrics. Gauges that mirror another component are read
 * at scrape time, so nothing on the request path keeps them up to date.
 */
import { Inject, Injectable, Logger, Optional, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { PgDriver } from '../../infrastructure/database/pg-driver.js';
import { PostgresAvailability } from '../../infrastructure/database/postgres-availability.js';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { BufferMetrics } from './buffer-metrics.js';
import { BUFFER_STATS, type BufferStatsSource } from './buffer-stats.js';
import { DependencyMetrics } from './dependency-metrics.js';
import { HttpMetrics } from './http-metrics.js';
import { processMetricsRegistry } from './process-metrics.js';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

@Injectable()
export class MetricsService implements OnModuleInit {
  private readonly logger = new Logger(MetricsService.name);
  private readonly registry: Registry;
  private readonly http: HttpMetrics;
  private readonly dependencies: DependencyMetrics;
  private readonly buffer: BufferMetrics | undefined;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly adapterHost: HttpAdapterHost,
    private readonly pgDriver: PgDriver,
    private readonly postgres: PostgresAvailability,
    private readonly redis: RedisService,
    @Optional() @Inject(BUFFER_STATS) private readonly bufferStats?: BufferStatsSource,
  ) {
    const own = new Registry();
    this.http = new HttpMetrics(own);
    this.dependencies = new DependencyMetrics(own, config.database.poolSize);
    // `merge` shares the metric objects: the process metrics exist once however many apps run.
    this.registry = Registry.merge([processMetricsRegistry(), own]);
    this.buffer = bufferStats ? new BufferMetrics(this.registry) : undefined;
  }

  /** Installs the request hook; runs before Fastify is ready, so it covers every route. */
  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify) return;
    const http = this.http;
    fastify.addHook('onResponse', (request, reply, done) => {
      http.record(
        request.method,
        request.is404 ? undefined : request.routeOptions.url,
        reply.statusCode,
        reply.elapsedTime / 1000,
      );
      done();
    });
  }

  /** The exposition text; mirrored gauges are refreshed first. */
  async render(): Promise<string> {
    this.dependencies.update(
      this.pgDriver.usage(),
      this.postgres.isUp(),
      this.redis.isUp(),
    );
    await this.updateBuffer();
    return this.registry.metrics();
  }

  private async updateBuffer(): Promise<void> {
    if (!this.buffer || !this.bufferStats) return;
    try {
      this.buffer.update(await this.bufferStats.stats());
    } catch (error) {
      this.buffer.hide();
      this.logger.warn({ err: { message: (error as Error).message } }, 'buffer stats unavailable');
    }
  }
}
