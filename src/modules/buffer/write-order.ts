/**
 * Positions: every update's, delete's and rename's place in the order of acceptance, across
 * replicas (docs/design/replicas.md, section 1; a create needs none). A position is a signed 64-bit integer, carried as its
 * decimal string: microseconds since the epoch × 1024 + a tag.
 *
 * While Redis answers, a per-user script hands out `max(last + 1, the caller's clock)` (tag 0),
 * so one user's writes are totally ordered whichever replica takes them, whatever the replicas'
 * clocks say. Otherwise (Redis unreachable, or no answer within POSITION_TIMEOUT_MS) this
 * replica issues the position itself: its own clock, strictly increasing within the process and
 * never below a position it has seen, with this replica's tag (1–1023) as the tie-break.
 *
 * Feature scripts that must run atomically with the position (an idempotency key's
 * reservation, say) begin with `POSITION_LUA` and are run through `nextVia`.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RedisService, type RedisScript } from '../../infrastructure/redis/redis.service.js';
import { within } from '../../common/util/within.js';

/** A write's place in the order of acceptance: a decimal bigint. */
export type Position = string;

const TAG_SPAN = 1024n;
/** How long a position may take to come from Redis before this replica issues its own. */
const POSITION_TIMEOUT_MS = 200;
/** How long Redis keeps a user's last position after their last write. */
const LAST_POSITION_TTL_MS = 24 * 3_600_000;
const SKEW_WARNING_EVERY_MS = 60_000;

/**
 * The first lines of a positioned script: KEYS[1] is the user's position key, ARGV[1] the
 * caller's clock (microseconds), ARGV[2] the key's TTL (ms). It sets `pos` (microseconds) and
 * `now` (Redis's TIME); a script returns `{pos, now[1], now[2], ...}`, its own results after.
 */
export const POSITION_LUA = `
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local pos = math.max(last + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.0f', pos), 'PX', ARGV[2])
local now = redis.call('TIME')
`;

const NEXT_LUA = `${POSITION_LUA}
return {string.format('%.0f', pos), now[1], now[2]}`;

export interface PositionedResult {
  position: Position;
  /** What the script returned after the position; undefined when this replica issued it. */
  extra: unknown[] | undefined;
}

@Injectable()
export class WriteOrder {
  private readonly logger = new Logger(WriteOrder.name);
  /** The latest position issued or seen, in microseconds. */
  private lastMicros = 0;
  private offsetMs: number | undefined;
  private lastSkewWarning = 0;
  private readonly tag: bigint;
  private readonly nextScript: RedisScript;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisService,
  ) {
    this.tag = BigInt(config.replication.replicaTag);
    this.nextScript = redis.script(NEXT_LUA);
  }

  /** A position for a write of `userId` (see the header). */
  async next(userId: string): Promise<Position> {
    return (await this.nextVia(this.nextScript, userId, [], [])).position;
  }

  /**
   * Runs `script` (one that begins with POSITION_LUA) for `userId`, with its own keys and
   * arguments after the position's; when Redis does not answer in time, this replica issues the
   * position and the script's own work is not done (`extra` undefined).
   */
  async nextVia(
    script: RedisScript,
    userId: string,
    keys: string[],
    args: (string | number)[],
  ): Promise<PositionedResult> {
    const sentAt = Date.now();
    const wanted = this.clockMicros();
    if (this.redis.isUp()) {
      try {
        const reply = await within(
          script([positionKey(userId), ...keys], [wanted, LAST_POSITION_TTL_MS, ...args]),
          POSITION_TIMEOUT_MS,
        );
        if (Array.isArray(reply) && reply.length >= 3) return this.adopt(reply, sentAt);
      } catch {
        // Redis is down or slow: this replica orders the write itself.
      }
    }
    this.lastMicros = wanted;
    return { position: String(BigInt(wanted) * TAG_SPAN + this.tag), extra: undefined };
  }

  /** This replica's clock minus Redis's, as last measured (ms); undefined before any answer. */
  clockOffsetMs(): number | undefined {
    return this.offsetMs;
  }

  /**
   * `sentAt` is this replica's clock when it asked (ms): the offset is measured from it, not from
   * the clock sent, which positions adopted from replicas whose clocks run ahead may have moved on.
   */
  private adopt(reply: unknown[], sentAt: number): PositionedResult {
    const micros = Number(reply[0]);
    this.lastMicros = Math.max(this.lastMicros, micros);
    const redisMicros = Number(reply[1]) * 1_000_000 + Number(reply[2]);
    this.measureOffset((sentAt * 1_000 - redisMicros) / 1_000);
    return { position: String(BigInt(micros) * TAG_SPAN), extra: reply.slice(3) };
  }

  /** Microseconds, strictly after the last position issued or seen. */
  private clockMicros(): number {
    return Math.max(Date.now() * 1_000, this.lastMicros + 1);
  }

  private measureOffset(offsetMs: number): void {
    this.offsetMs = offsetMs;
    if (Math.abs(offsetMs) <= this.config.replication.clockSkewMaxMs) return;
    const now = Date.now();
    if (now - this.lastSkewWarning < SKEW_WARNING_EVERY_MS) return;
    this.lastSkewWarning = now;
    this.logger.warn(
      { offsetMs: Math.round(offsetMs), boundMs: this.config.replication.clockSkewMaxMs },
      "this replica's clock is off Redis's by more than CLOCK_SKEW_MAX_MS: writes ordered while Redis is down may be misordered",
    );
  }
}

/** The user's position key (hash-tagged: a user's keys share one Redis Cluster slot). */
export function positionKey(userId: string): string {
  return `{u:${userId}}:pos`;
}

/** The position of a write made at `iso` (microseconds kept), with tag 0: for older payloads. */
export function positionAt(iso: string): Position {
  return String(BigInt(microsOfIso(iso)) * TAG_SPAN);
}

/** The time part of a position, as an ISO string with microseconds. */
export function timeOfPosition(position: Position): string {
  const micros = BigInt(position) / TAG_SPAN;
  const millis = micros / 1_000n;
  const extra = String(micros % 1_000n).padStart(3, '0');
  return new Date(Number(millis)).toISOString().replace(/Z$/, `${extra}Z`);
}

/**
 * True for a position this replica issued from its own clock (a tag of 1–1023): Redis could not
 * be reached when the write was accepted, so Redis may not know of the writes before it either
 * (a create buffered elsewhere then was never recorded as pending).
 */
export function positionedWithoutRedis(position: Position): boolean {
  return BigInt(position) % TAG_SPAN !== 0n;
}

/** Negative, zero or positive as `a` is before, the same as, or after `b`. */
export function comparePositions(a: Position, b: Position): number {
  const difference = BigInt(a) - BigInt(b);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}

function microsOfIso(iso: string): number {
  const millis = Date.parse(iso);
  if (Number.isNaN(millis)) throw new RangeError(`not an ISO time: ${iso}`);
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1];
  if (fraction === undefined) return millis * 1_000;
  return Math.floor(millis / 1_000) * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}
