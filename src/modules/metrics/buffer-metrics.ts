/**
 * The offline buffer's gauges and counters, mirrored from `BufferStats` at scrape time. The
 * buffer keeps the running totals itself, so each counter is set to the buffer's total rather
 * than incremented here. While the stats cannot be read the series are taken out of the
 * registry (a metric without labels cannot be emptied), so no stale number looks healthy.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BufferStats } from './buffer-stats.js';

type BufferMetric = Gauge | Counter;

export class BufferMetrics {
  private readonly depth = gauge('taskd_buffer_depth', 'Writes waiting in the offline buffer.');
  private readonly oldestAge = gauge(
    'taskd_buffer_oldest_age_seconds',
    'Age of the oldest write waiting in the offline buffer; 0 when it is empty.',
  );
  private readonly bytes = gauge(
    'taskd_buffer_bytes',
    'Bytes taken by the writes waiting in the offline buffer.',
  );
  private readonly accepting = gauge(
    'taskd_buffer_accepting',
    '1 while the offline buffer accepts writes, 0 when it is full or closed.',
  );
  private readonly buffered = counter(
    'taskd_buffer_buffered_total',
    'Writes accepted into the offline buffer (answered 202).',
  );
  private readonly replayed = counter(
    'taskd_buffer_replayed_total',
    'Buffered writes applied to PostgreSQL.',
  );
  private readonly deadLettered = counter(
    'taskd_buffer_dead_lettered_total',
    'Buffered writes set aside because they can never apply.',
  );
  private readonly all: [string, BufferMetric][] = [
    ['taskd_buffer_depth', this.depth],
    ['taskd_buffer_oldest_age_seconds', this.oldestAge],
    ['taskd_buffer_bytes', this.bytes],
    ['taskd_buffer_accepting', this.accepting],
    ['taskd_buffer_buffered_total', this.buffered],
    ['taskd_buffer_replayed_total', this.replayed],
    ['taskd_buffer_dead_lettered_total', this.deadLettered],
  ];
  private shown = false;

  constructor(private readonly registry: Registry) {
    this.show();
  }

  update(stats: BufferStats): void {
    this.depth.set(stats.depth);
    this.oldestAge.set((stats.oldestAgeMs ?? 0) / 1000);
    this.bytes.set(stats.bytes);
    this.accepting.set(stats.accepting ? 1 : 0);
    setCounter(this.buffered, stats.bufferedTotal);
    setCounter(this.replayed, stats.replayedTotal);
    setCounter(this.deadLettered, stats.deadLetteredTotal);
    this.show();
  }

  /** Takes the buffer series out of the registry until the next successful `update`. */
  hide(): void {
    if (!this.shown) return;
    for (const [name] of this.all) this.registry.removeSingleMetric(name);
    this.shown = false;
  }

  private show(): void {
    if (this.shown) return;
    for (const [, metric] of this.all) this.registry.registerMetric(metric);
    this.shown = true;
  }
}

function gauge(name: string, help: string): Gauge {
  return new Gauge({ name, help, registers: [] });
}

function counter(name: string, help: string): Counter {
  return new Counter({ name, help, registers: [] });
}

function setCounter(metric: Counter, total: number): void {
  metric.reset();
  metric.inc(total);
}
