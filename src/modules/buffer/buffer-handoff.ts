/**
 * Leaving for good (docs/design/replicas.md, section 5): a replica that shuts down with writes
 * it could not apply hands them to the Redis stream `buffer:handoff`, where every replica whose
 * PostgreSQL answers takes them into its own buffer and replays them.
 *
 * An entry counts as handed off only once Redis has it on disk: Redis must run with an
 * append-only file, `appendfsync always` (a write is on disk before Redis answers) and
 * `maxmemory-policy noeviction`. That is checked at start-up and again before a hand-off; when
 * it does not hold (or Redis refuses CONFIG), hand-off is off and the writes stay on this
 * replica's volume, as the log says. Entries leave the volume only after Redis acknowledged them.
 *
 * Taking: a consumer group on the stream; an entry is added to this replica's buffer (durably,
 * outside its user's share: it was accepted already), then acknowledged and deleted. An entry
 * taken by a replica that died before acknowledging it is claimed by another after
 * CLAIM_IDLE_MS. An entry taken twice is applied once: the exactly-once ledger knows its id.
 */
import { hostname } from 'node:os';
import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { RedisService } from '../../infrastructure/redis/redis.service.js';
import { LmdbBuffer, type BufferEntry } from './lmdb-buffer.js';
import { within } from '../../common/util/within.js';

const STREAM = 'buffer:handoff';
const GROUP = 'replicas';
/** Entries per XADD pipeline and per read. */
const CHUNK = 200;
/** How long an entry taken by a consumer may stay unacknowledged before another claims it. */
const CLAIM_IDLE_MS = 30_000;
const REDIS_TIMEOUT_MS = 2_000;

/** What a handed-off entry carries: the operation and its look-up keys, as stored. */
interface HandedOff {
  op: BufferEntry['op'];
  dedupeKey?: string;
  tags?: string[];
}

export interface Durability {
  durable: boolean;
  /** Why hand-off is off, when it is. */
  reason?: string;
}

@Injectable()
export class BufferHandoff implements OnApplicationBootstrap {
  private readonly logger = new Logger(BufferHandoff.name);
  private readonly consumer = `${hostname()}-${process.pid}`;
  private groupReady = false;
  /** Entries handed off and taken by this process, for metrics. */
  handedOff = 0;
  taken = 0;

  constructor(
    private readonly redis: RedisService,
    private readonly buffer: LmdbBuffer,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const { durable, reason } = await this.durability();
    if (!durable) {
      this.logger.warn(
        { reason },
        'hand-off of unapplied writes is off: on shutdown they stay on this volume',
      );
    }
  }

  /** Whether Redis keeps what it acknowledges through a crash (see the header). */
  async durability(): Promise<Durability> {
    if (!this.redis.isUp()) return { durable: false, reason: 'Redis is not connected' };
    try {
      const settings = await answered(
        Promise.all(
          ['appendonly', 'appendfsync', 'maxmemory-policy'].map(
            async (name) => ((await this.redis.client.config('GET', name)) as string[])[1],
          ),
        ),
      );
      const [appendonly, appendfsync, policy] = settings;
      if (appendonly !== 'yes')
        return { durable: false, reason: `Redis runs with appendonly ${appendonly ?? 'unknown'}` };
      if (appendfsync !== 'always')
        return {
          durable: false,
          reason: `Redis runs with appendfsync ${appendfsync ?? 'unknown'}`,
        };
      if (policy !== 'noeviction')
        return {
          durable: false,
          reason: `Redis runs with maxmemory-policy ${policy ?? 'unknown'}`,
        };
      return { durable: true };
    } catch (error) {
      return { durable: false, reason: `Redis refused CONFIG GET (${(error as Error).message})` };
    }
  }

  /**
   * Hands every queued and parked entry to the stream, a chunk at a time, until `deadline`;
   * resolves with how many left this volume.
   */
  async handOff(deadline: number): Promise<number> {
    const { durable, reason } = await this.durability();
    if (!durable) {
      this.logger.warn(
        { reason, depth: this.buffer.depth, parked: this.buffer.parkedCount },
        'writes not handed off: they stay on this volume',
      );
      return 0;
    }
    let moved = 0;
    for (const source of ['queued', 'parked'] as const) {
      for (;;) {
        if (Date.now() >= deadline) return moved;
        const entries =
          source === 'queued' ? this.buffer.getBatch(CHUNK) : this.buffer.listParked(CHUNK);
        if (entries.length === 0) break;
        const pipeline = this.redis.client.pipeline();
        for (const entry of entries)
          pipeline.xadd(STREAM, '*', 'entry', JSON.stringify(handedOff(entry)));
        const replies = (await answered(pipeline.exec())) ?? [];
        const acknowledged = entries.filter((_, index) => replies[index] && !replies[index]![0]);
        await this.buffer.remove(acknowledged.map((entry) => entry.key));
        moved += acknowledged.length;
        this.handedOff += acknowledged.length;
        if (acknowledged.length < entries.length) return moved;
      }
    }
    return moved;
  }

  /**
   * Takes up to CHUNK handed-off entries (claiming those another consumer left unacknowledged
   * too long) into this replica's buffer; resolves with how many were taken.
   */
  async take(): Promise<number> {
    if (!this.redis.isUp()) return 0;
    await this.ensureGroup();
    const claimed = (await answered(
      this.redis.client.xautoclaim(
        STREAM,
        GROUP,
        this.consumer,
        CLAIM_IDLE_MS,
        '0-0',
        'COUNT',
        CHUNK,
      ),
    )) as [string, Array<[string, string[]] | null>];
    const fresh = (await answered(
      this.redis.client.xreadgroup(
        'GROUP',
        GROUP,
        this.consumer,
        'COUNT',
        CHUNK,
        'STREAMS',
        STREAM,
        '>',
      ),
    )) as Array<[string, Array<[string, string[]]>]> | null;
    const messages = [
      ...(claimed[1] ?? []).filter((message): message is [string, string[]] => message !== null),
      ...(fresh?.[0]?.[1] ?? []),
    ];
    let taken = 0;
    for (const [id, fields] of messages) {
      const entry = parseEntry(fields);
      if (entry) {
        await this.buffer.add(entry.op, {
          ...(entry.dedupeKey ? { dedupeKey: entry.dedupeKey } : {}),
          ...(entry.tags ? { tags: entry.tags } : {}),
          exemptFromShare: true,
        });
        taken += 1;
      } else {
        this.logger.error({ streamId: id }, 'dropped a handed-off entry that cannot be read');
      }
      await answered(this.redis.client.multi().xack(STREAM, GROUP, id).xdel(STREAM, id).exec());
    }
    this.taken += taken;
    if (taken > 0) this.logger.log({ taken }, 'took writes handed off by other replicas');
    return taken;
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return;
    try {
      await answered(this.redis.client.xgroup('CREATE', STREAM, GROUP, '0', 'MKSTREAM'));
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error;
    }
    this.groupReady = true;
  }
}

function handedOff(entry: BufferEntry): HandedOff {
  return {
    op: entry.op,
    ...(entry.dedupeKey ? { dedupeKey: entry.dedupeKey } : {}),
    ...(entry.tags ? { tags: entry.tags } : {}),
  };
}

function parseEntry(fields: string[]): HandedOff | undefined {
  const index = fields.indexOf('entry');
  if (index < 0 || index + 1 >= fields.length) return undefined;
  try {
    const entry = JSON.parse(fields[index + 1]!) as HandedOff;
    const { op } = entry;
    if (
      !op ||
      typeof op.id !== 'string' ||
      typeof op.kind !== 'string' ||
      typeof op.userId !== 'string'
    )
      return undefined;
    return entry;
  } catch {
    return undefined;
  }
}

/** A Redis command's outcome, or a rejection after REDIS_TIMEOUT_MS. */
function answered<T>(command: Promise<T>): Promise<T> {
  return within(command, REDIS_TIMEOUT_MS, 'no answer from Redis');
}
