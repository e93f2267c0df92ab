/**
 * What the metrics need from the offline buffer, and the token it is bound under. The metrics
 * module does not depend on the buffer module: whoever owns the buffer binds `BUFFER_STATS`
 * (see `MetricsModule.forRoot`), and until then no buffer series are exported at all: an
 * absent series is honest, a made-up zero would hide a full buffer from every alert.
 */
export const BUFFER_STATS = Symbol('BUFFER_STATS');

/** A point-in-time view of the buffer, read once per scrape. */
export interface BufferStats {
  /** Entries waiting to be replayed. */
  depth: number;
  /** Age of the oldest waiting entry in milliseconds; null or 0 when the buffer is empty. */
  oldestAgeMs: number | null;
  /** Bytes the waiting entries take. */
  bytes: number;
  /** False while the buffer refuses writes (full or closed). */
  accepting: boolean;
  /** Writes accepted into the buffer since this process started. */
  bufferedTotal: number;
  /** Buffered writes applied to PostgreSQL since this process started. */
  replayedTotal: number;
  /** Buffered writes set aside as impossible since this process started. */
  deadLetteredTotal: number;
  /** Writes parked, waiting for their task's create (still in another replica's buffer). */
  parked: number;
  /** Set-aside writes kept (all time, not only this process). */
  deadLetters: number;
  /** Writes parked since this process started. */
  parkedTotal: number;
  /** Set-aside writes dropped to keep the set-aside store within its bounds. */
  setAsideDroppedTotal: number;
  /** Writes refused (429) because their user's share of the buffer was used up. */
  shareRefusedTotal: number;
  /** This replica's clock minus Redis's (ms), as last measured; null before any measure. */
  clockOffsetMs: number | null;
  /** Writes this process handed off to the other replicas (Redis stream), and took from it. */
  handedOffTotal: number;
  takenTotal: number;
}

export interface BufferStatsSource {
  stats(): BufferStats | Promise<BufferStats>;
}
