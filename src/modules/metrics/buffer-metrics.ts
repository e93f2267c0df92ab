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
  private readonly parked = gauge(
    'taskd_buffer_parked',
    'Buffered writes parked until their task is created (its create still in another replica\'s buffer).',
  );
  private readonly setAside = gauge('taskd_buffer_set_aside', 'Set-aside writes kept (they can never apply).');
  private readonly holding = gauge(
    'taskd_buffer_holding_writes',
    '1 while this replica holds writes not yet applied (queued or parked); the autoscaler does not scale down meanwhile.',
  );
  private readonly parkedTotal = counter('taskd_buffer_parked_total', 'Buffered writes parked.');
  private readonly setAsideDropped = counter(
    'taskd_buffer_set_aside_dropped_total',
    'Set-aside writes dropped, oldest first, to keep the set-aside store within its bounds.',
  );
  private readonly shareRefused = counter(
    'taskd_buffer_share_refused_total',
    "Writes refused with 429 because their user's share of the buffer was used up.",
  );
  private readonly clockOffset = gauge(
    'taskd_clock_offset_seconds',
    "This replica's clock minus Redis's, as measured with the last position Redis issued.",
  );
  private readonly handedOff = counter(
    'taskd_buffer_handed_off_total',
    'Unapplied writes handed off to the other replicas on shutdown (Redis stream).',
  );
  private readonly taken = counter('taskd_buffer_taken_total', 'Writes taken over from replicas that left.');
  private readonly all: [string, BufferMetric][] = [
    ['taskd_buffer_handed_off_total', this.handedOff],
    ['taskd_buffer_taken_total', this.taken],
    ['taskd_buffer_parked', this.parked],
    ['taskd_buffer_set_aside', this.setAside],
    ['taskd_buffer_holding_writes', this.holding],
    ['taskd_buffer_parked_total', this.parkedTotal],
    ['taskd_buffer_set_aside_dropped_total', this.setAsideDropped],
    ['taskd_buffer_share_refused_total', this.shareRefused],
    ['taskd_clock_offset_seconds', this.clockOffset],
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
    this.parked.set(stats.parked);
    this.setAside.set(stats.deadLetters);
    this.holding.set(stats.depth + stats.parked > 0 ? 1 : 0);
    setCounter(this.parkedTotal, stats.parkedTotal);
    setCounter(this.setAsideDropped, stats.setAsideDroppedTotal);
    setCounter(this.shareRefused, stats.shareRefusedTotal);
    this.clockOffset.set((stats.clockOffsetMs ?? 0) / 1000);
    setCounter(this.handedOff, stats.handedOffTotal);
    setCounter(this.taken, stats.takenTotal);
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
