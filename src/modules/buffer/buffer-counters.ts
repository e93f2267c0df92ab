/**
 * Counts of this process's life, for metrics: monotonic, reset by a restart (as Prometheus
 * counters expect). What must survive a restart (depth, bytes) lives in LMDB instead.
 */
import { Injectable } from '@nestjs/common';

@Injectable()
export class BufferCounters {
  /** Operations written to the buffer (a deduplicated retry is not counted again). */
  buffered = 0;
  /** Buffered operations applied to PostgreSQL by replay. */
  replayed = 0;
  /** Buffered operations found already applied (a crash between commit and removal) and dropped. */
  alreadyApplied = 0;
  /** Buffered operations set aside as impossible. */
  deadLettered = 0;
  /** Buffered operations parked to wait for something else (their task's create). */
  parked = 0;
  /** Set-aside operations dropped to keep the set-aside store within its bounds. */
  setAsideDropped = 0;
  /** Writes refused because their user's share of the buffer was used up. */
  shareRefused = 0;
}
