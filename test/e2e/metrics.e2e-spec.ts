/**
 * `GET /metrics` as a Prometheus scraper sees it: request counts and latency by route template
 * (never the raw URL), PostgreSQL pool and dependency gauges, process metrics, one registry per
 * app instance, and the buffer metrics read from whatever `BUFFER_STATS` is bound to.
 */
import { randomUUID } from 'node:crypto';
import { Global, Injectable, Module, type DynamicModule } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { APP_CONFIG, loadConfig } from '../../src/config/app-config.js';
import { PgDriver } from '../../src/infrastructure/database/pg-driver.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { RedisService } from '../../src/infrastructure/redis/redis.service.js';
import {
  BUFFER_STATS,
  type BufferStats,
  type BufferStatsSource,
} from '../../src/modules/metrics/buffer-stats.js';
import { MetricsModule } from '../../src/modules/metrics/metrics.module.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  samples: Sample[];
  /** Metric family name → its `# TYPE`, and how many times that line appeared. */
  types: Map<string, { type: string; count: number }>;
  text: string;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, { type: string; count: number }>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      const seen = types.get(name!);
      types.set(name!, { type: type!, count: (seen?.count ?? 0) + 1 });
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL_PAIR)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return { samples, types, text };
}

/** The single sample of `name` whose labels include `labels`; fails on none or several. */
function value(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  const found = select(scrape, name, labels);
  if (found.length !== 1) {
    throw new Error(`expected one ${name} ${JSON.stringify(labels)}, found ${found.length}`);
  }
  return found[0]!.value;
}

function select(scrape: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return scrape.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

async function scrape(app: NestFastifyApplication): Promise<Scrape> {
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(res.body);
}

const BUFFER_GAUGES = [
  'taskd_buffer_depth',
  'taskd_buffer_oldest_age_seconds',
  'taskd_buffer_bytes',
  'taskd_buffer_accepting',
  'taskd_buffer_parked',
  'taskd_buffer_set_aside',
  'taskd_buffer_holding_writes',
  'taskd_clock_offset_seconds',
];
const BUFFER_COUNTERS = [
  'taskd_buffer_buffered_total',
  'taskd_buffer_replayed_total',
  'taskd_buffer_dead_lettered_total',
  'taskd_buffer_parked_total',
  'taskd_buffer_set_aside_dropped_total',
  'taskd_buffer_share_refused_total',
  'taskd_buffer_handed_off_total',
  'taskd_buffer_taken_total',
];

describe('metrics (e2e)', () => {
  describe('on the full application', () => {
    let t: TestApp;
    const sessionId = randomUUID();
    const unknownPath = `/api/v1/no-such-thing/${randomUUID()}`;

    beforeAll(async () => {
      t = await startTestApp();
      for (let i = 0; i < 3; i++) {
        expect((await t.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
      }
      // A parametrised route, refused by the access-token guard: counted under its template.
      const refused = await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/auth/sessions/${sessionId}`,
      });
      expect(refused.statusCode).toBe(401);
      for (let i = 0; i < 2; i++) {
        expect(
          (await t.app.inject({ method: 'GET', url: `${unknownPath}?n=${i}` })).statusCode,
        ).toBe(404);
      }
      // Readiness pings PostgreSQL, so the pool holds at least one connection when scraped.
      expect((await t.app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200);
    });

    afterAll(async () => {
      await t?.close();
    });

    it('is public and counts requests by method, route template and status code', async () => {
      const metrics = await scrape(t.app);
      const live = { method: 'GET', route: '/health/live', status_code: '200' };
      expect(value(metrics, 'http_requests_total', live)).toBe(3);
      expect(
        value(metrics, 'http_requests_total', {
          method: 'DELETE',
          route: '/api/v1/auth/sessions/:id',
          status_code: '401',
        }),
      ).toBe(1);
      expect(
        value(metrics, 'http_requests_total', {
          method: 'GET',
          route: 'unmatched',
          status_code: '404',
        }),
      ).toBe(2);
      expect(metrics.types.get('http_requests_total')).toEqual({ type: 'counter', count: 1 });
    });

    it('has the latency histogram with route-template labels', async () => {
      const metrics = await scrape(t.app);
      const live = { method: 'GET', route: '/health/live', status_code: '200' };
      expect(metrics.types.get('http_request_duration_seconds')).toEqual({
        type: 'histogram',
        count: 1,
      });
      expect(value(metrics, 'http_request_duration_seconds_count', live)).toBe(3);
      expect(value(metrics, 'http_request_duration_seconds_bucket', { ...live, le: '+Inf' })).toBe(
        3,
      );
      const sum = value(metrics, 'http_request_duration_seconds_sum', live);
      expect(sum).toBeGreaterThan(0);
      expect(sum).toBeLessThan(3 * 10);
      // Buckets are cumulative and end at the count.
      const buckets = select(metrics, 'http_request_duration_seconds_bucket', live).map(
        (s) => s.value,
      );
      expect(buckets.length).toBeGreaterThan(5);
      expect([...buckets].sort((a, b) => a - b)).toEqual(buckets);
    });

    it('never labels with a raw URL', async () => {
      const metrics = await scrape(t.app);
      expect(metrics.text).not.toContain(sessionId);
      expect(metrics.text).not.toContain('no-such-thing');
      const routes = new Set(
        metrics.samples.filter((s) => s.name.startsWith('http_')).map((s) => s.labels.route),
      );
      expect([...routes].sort()).toEqual(
        [
          '/api/v1/auth/sessions/:id',
          '/health/live',
          '/health/ready',
          '/metrics',
          'unmatched',
        ].sort(),
      );
    });

    it('reports the PostgreSQL pool and the state of PostgreSQL and Redis', async () => {
      const metrics = await scrape(t.app);
      const inUse = value(metrics, 'taskd_pg_pool_connections_in_use');
      const idle = value(metrics, 'taskd_pg_pool_connections_idle');
      expect(inUse).toBeGreaterThanOrEqual(0);
      expect(inUse + idle).toBeGreaterThanOrEqual(1);
      expect(inUse + idle).toBeLessThanOrEqual(t.config.database.poolSize);
      expect(value(metrics, 'taskd_pg_pool_waiting_requests')).toBe(0);
      expect(value(metrics, 'taskd_pg_pool_connections_max')).toBe(t.config.database.poolSize);
      expect(value(metrics, 'taskd_postgres_up')).toBe(1);
      expect(value(metrics, 'taskd_redis_up')).toBe(1);
    });

    it('includes the default process metrics, each once', async () => {
      const metrics = await scrape(t.app);
      for (const name of [
        'process_cpu_user_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_heap_size_used_bytes',
        'nodejs_eventloop_lag_seconds',
      ]) {
        expect(value(metrics, name)).toBeGreaterThanOrEqual(0);
      }
      for (const [name, { count }] of metrics.types) expect([name, count]).toEqual([name, 1]);
    });

    it('exports the buffer gauges and counters, read from the bound buffer', async () => {
      const source = boundBufferStats(t.app);
      expect(source).toBeDefined();
      const metrics = await scrape(t.app);
      const stats = await source!.stats();
      // A fresh instance: an empty, open buffer that has buffered nothing yet.
      expect(value(metrics, 'taskd_buffer_depth')).toBe(0);
      expect(value(metrics, 'taskd_buffer_oldest_age_seconds')).toBe(0);
      expect(value(metrics, 'taskd_buffer_bytes')).toBe(stats.bytes);
      expect(value(metrics, 'taskd_buffer_accepting')).toBe(1);
      expect(value(metrics, 'taskd_buffer_buffered_total')).toBe(0);
      expect(value(metrics, 'taskd_buffer_replayed_total')).toBe(stats.replayedTotal);
      expect(value(metrics, 'taskd_buffer_dead_lettered_total')).toBe(0);
      for (const name of BUFFER_GAUGES) expect(metrics.types.get(name)?.type).toBe('gauge');
      for (const name of BUFFER_COUNTERS) expect(metrics.types.get(name)?.type).toBe('counter');
    });

    it('is documented in the OpenAPI document, without a security requirement', async () => {
      const doc = (await t.app.inject({ method: 'GET', url: '/docs-json' })).json();
      const operation = doc.paths['/metrics']?.get;
      expect(operation).toMatchObject({ operationId: 'metrics' });
      expect(Object.keys(operation.responses['200'].content)).toEqual(['text/plain']);
      expect(operation.security).toBeUndefined();
    });

    it('keeps one registry per app instance', async () => {
      const other = await startTestApp();
      try {
        await other.app.inject({ method: 'GET', url: '/health/live' });
        const mine = await scrape(t.app);
        const theirs = await scrape(other.app);
        const live = { method: 'GET', route: '/health/live', status_code: '200' };
        expect(value(theirs, 'http_requests_total', live)).toBe(1);
        expect(value(mine, 'http_requests_total', live)).toBe(3);
        expect(value(theirs, 'process_resident_memory_bytes')).toBeGreaterThan(0);
      } finally {
        await other.close();
      }
    });
  });

  describe('the metrics module on its own, before PostgreSQL and Redis were ever reached', () => {
    let current: BufferStats;
    let unreadable: Error | undefined;

    @Injectable()
    class FakeBuffer implements BufferStatsSource {
      stats(): Promise<BufferStats> {
        return unreadable ? Promise.reject(unreadable) : Promise.resolve(current);
      }
    }

    @Module({ providers: [FakeBuffer], exports: [FakeBuffer] })
    class FakeBufferModule {}

    /** The dependencies MetricsService reads, as they look before any connection. */
    @Global()
    @Module({
      providers: [
        { provide: APP_CONFIG, useValue: loadConfig({ NODE_ENV: 'test' }) },
        { provide: PostgresAvailability, useValue: { isUp: () => false } },
        { provide: PgDriver, useValue: new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 1_000 }) },
        { provide: RedisService, useValue: { isUp: () => false } },
      ],
      exports: [APP_CONFIG, PostgresAvailability, PgDriver, RedisService],
    })
    class DisconnectedDependencies {}

    async function startModuleApp(metrics: DynamicModule): Promise<NestFastifyApplication> {
      const moduleRef = await Test.createTestingModule({
        imports: [DisconnectedDependencies, metrics],
      }).compile();
      const app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), {
        logger: false,
      });
      await app.init();
      await app.getHttpAdapter().getInstance().ready();
      return app;
    }

    describe('with buffer stats bound', () => {
      let app: NestFastifyApplication;

      beforeAll(async () => {
        current = {
          depth: 7,
          oldestAgeMs: 2_500,
          bytes: 4_096,
          accepting: true,
          bufferedTotal: 9,
          replayedTotal: 2,
          deadLetteredTotal: 0,
          parked: 3,
          deadLetters: 4,
          parkedTotal: 5,
          setAsideDroppedTotal: 1,
          shareRefusedTotal: 6,
          clockOffsetMs: -250,
          handedOffTotal: 2,
          takenTotal: 3,
        };
        app = await startModuleApp(
          MetricsModule.forRoot({ imports: [FakeBufferModule], bufferStats: FakeBuffer }),
        );
      });

      afterAll(async () => {
        await app?.close();
      });

      it('reads the stats at scrape time', async () => {
        let metrics = await scrape(app);
        expect(value(metrics, 'taskd_buffer_depth')).toBe(7);
        expect(value(metrics, 'taskd_buffer_oldest_age_seconds')).toBe(2.5);
        expect(value(metrics, 'taskd_buffer_bytes')).toBe(4_096);
        expect(value(metrics, 'taskd_buffer_accepting')).toBe(1);
        expect(value(metrics, 'taskd_buffer_buffered_total')).toBe(9);
        expect(value(metrics, 'taskd_buffer_replayed_total')).toBe(2);
        expect(value(metrics, 'taskd_buffer_dead_lettered_total')).toBe(0);
        expect(value(metrics, 'taskd_buffer_parked')).toBe(3);
        expect(value(metrics, 'taskd_buffer_set_aside')).toBe(4);
        expect(value(metrics, 'taskd_buffer_holding_writes')).toBe(1);
        expect(value(metrics, 'taskd_buffer_parked_total')).toBe(5);
        expect(value(metrics, 'taskd_buffer_set_aside_dropped_total')).toBe(1);
        expect(value(metrics, 'taskd_buffer_share_refused_total')).toBe(6);
        expect(value(metrics, 'taskd_clock_offset_seconds')).toBe(-0.25);
        expect(value(metrics, 'taskd_buffer_handed_off_total')).toBe(2);
        expect(value(metrics, 'taskd_buffer_taken_total')).toBe(3);

        current = {
          ...current,
          depth: 0,
          oldestAgeMs: null,
          bytes: 0,
          accepting: false,
          replayedTotal: 8,
          deadLetteredTotal: 1,
          parked: 0,
        };
        metrics = await scrape(app);
        expect(value(metrics, 'taskd_buffer_depth')).toBe(0);
        expect(value(metrics, 'taskd_buffer_oldest_age_seconds')).toBe(0);
        expect(value(metrics, 'taskd_buffer_accepting')).toBe(0);
        expect(value(metrics, 'taskd_buffer_replayed_total')).toBe(8);
        expect(value(metrics, 'taskd_buffer_dead_lettered_total')).toBe(1);
        expect(value(metrics, 'taskd_buffer_holding_writes')).toBe(0);
      });

      it('reports a disconnected database as an empty pool and both dependencies down', async () => {
        const metrics = await scrape(app);
        expect(value(metrics, 'taskd_pg_pool_connections_in_use')).toBe(0);
        expect(value(metrics, 'taskd_pg_pool_connections_idle')).toBe(0);
        expect(value(metrics, 'taskd_postgres_up')).toBe(0);
        expect(value(metrics, 'taskd_redis_up')).toBe(0);
      });

      it('drops the buffer series, and keeps the rest, while the stats cannot be read', async () => {
        unreadable = new Error('environment closed');
        try {
          const metrics = await scrape(app);
          for (const name of [...BUFFER_GAUGES, ...BUFFER_COUNTERS])
            expect(select(metrics, name)).toEqual([]);
          expect(value(metrics, 'taskd_pg_pool_connections_max')).toBe(10);
        } finally {
          unreadable = undefined;
        }
        expect(value(await scrape(app), 'taskd_buffer_depth')).toBe(current.depth);
      });
    });

    describe('without buffer stats bound', () => {
      it('exports no buffer series rather than zeros that would look like an empty buffer', async () => {
        const app = await startModuleApp(MetricsModule.forRoot());
        try {
          const metrics = await scrape(app);
          for (const name of [...BUFFER_GAUGES, ...BUFFER_COUNTERS])
            expect(select(metrics, name)).toEqual([]);
          expect(value(metrics, 'taskd_pg_pool_connections_max')).toBe(10);
          expect(value(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);
        } finally {
          await app.close();
        }
      });
    });
  });
});

/** What `BUFFER_STATS` is bound to anywhere in the app, if anything. */
function boundBufferStats(app: NestFastifyApplication): BufferStatsSource | undefined {
  // Through ModuleRef: the application's own `get` ends the process on an unknown token.
  try {
    return app.get(ModuleRef).get<BufferStatsSource>(BUFFER_STATS, { strict: false });
  } catch {
    return undefined;
  }
}
