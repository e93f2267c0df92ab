/**
 * Issues the `updatedAt` of changes that may be applied later from the write buffer, where it is
 * the guard that keeps a replay from undoing a newer change (`WHERE updated_at < $change`).
 * A change a client made after another one must therefore carry a strictly later time, even
 * when both come within the same millisecond, or the second would be taken for an older one and
 * dropped. So this clock is strictly increasing within the process, at the microsecond precision
 * PostgreSQL stores (a millisecond counter would run ahead of the wall clock under a burst of
 * writes; a microsecond one only past a million changes a second), and never behind the wall
 * clock. Times go out as ISO 8601 strings with six decimals, which PostgreSQL reads exactly;
 * clients see them cut to milliseconds, as every timestamp of the API (`toMillisecondIso`).
 */
import { Injectable } from '@nestjs/common';
import { Clock } from './clock.js';

const MICROS_PER_MS = 1_000;

@Injectable()
export class ChangeClock {
  /** The latest time issued or observed, in microseconds since the epoch. */
  private lastMicros = 0;

  constructor(private readonly clock: Clock) {}

  /**
   * A time strictly after every time issued or observed before, and after the whole millisecond
   * of `after`: a time as the API shows it (say, the `updatedAt` just read of the task to be
   * changed), whose stored value may lie anywhere within that millisecond.
   */
  next(after?: string): string {
    const now = this.clock.now().getTime() * MICROS_PER_MS;
    const floor =
      after === undefined ? 0 : (Math.floor(microsOf(after) / MICROS_PER_MS) + 1) * MICROS_PER_MS;
    this.lastMicros = Math.max(now, floor, this.lastMicros + 1);
    return isoOfMicros(this.lastMicros);
  }

  /** Records a time set elsewhere (a new task's `updatedAt`): later changes sort after it. */
  observe(iso: string): void {
    this.lastMicros = Math.max(this.lastMicros, microsOf(iso));
  }
}

/** `2026-02-20T09:15:00.123456Z` → microseconds since the epoch (decimals past six are cut). */
export function microsOf(iso: string): number {
  const millis = Date.parse(iso);
  if (Number.isNaN(millis)) throw new RangeError(`not an ISO time: ${iso}`);
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1];
  if (fraction === undefined) return millis * MICROS_PER_MS;
  const seconds = Math.floor(millis / 1_000);
  return seconds * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

function isoOfMicros(micros: number): string {
  const millis = Math.floor(micros / MICROS_PER_MS);
  const extra = String(micros % MICROS_PER_MS).padStart(3, '0');
  return new Date(millis).toISOString().replace(/Z$/, `${extra}Z`);
}

/** An ISO time as the API shows it: UTC, milliseconds (more decimals are cut, not rounded). */
export function toMillisecondIso(iso: string): string {
  return new Date(Math.floor(microsOf(iso) / MICROS_PER_MS)).toISOString();
}
