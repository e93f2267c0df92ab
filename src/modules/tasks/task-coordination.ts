/**
 * What the replicas must know of each other's tasks while creates wait in their buffers
 * (docs/design/replicas.md, sections 3 and 4), kept in Redis under each user's hash tag:
 *
 *   {u:<user>}:pending   hash: task id → when a create waiting in some replica's buffer was accepted
 *   {u:<user>}:keys      hash: `k:<idempotency key>` → the reservation (task id, the task's body
 *                        as answered, and when it expires by Redis's clock); `t:<task id>` → its key
 *
 * Every call degrades to "nothing known" when Redis does not answer: the write goes on with the
 * weaker promises the design states for that case.
 */
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { runAsJob } from '../../common/context/background-job.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { RedisService, type RedisScript } from '../../infrastructure/redis/redis.service.js';
import { within } from '../../common/util/within.js';
import { POSITION_LUA, WriteOrder, type Position } from '../buffer/write-order.js';
import type { Task } from './task.js';

/** How long a reservation outlives its create's replay, for retries on other replicas. */
const APPLIED_RESERVATION_GRACE_MS = 10 * 60_000;
const REDIS_TIMEOUT_MS = 200;
/** How often creates this replica could not record as pending are recorded again. */
const RECORD_AGAIN_EVERY_MS = 1_000;
const RECORD_AGAIN_INTERVAL = 'tasks-record-pending';
/** Pending records written in one round trip. */
const RECORD_AGAIN_BATCH = 500;

/** A key's reservation: the task that holds it, as answered to the create that reserved it. */
export interface KeyReservation {
  id: string;
  task: Task;
}

const NOW_MS = `local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)`;

/**
 * The key's live confirmed reservation if there is one; otherwise the key is reserved for this
 * create, tentatively: a tentative reservation only says a create with the key is in flight (it
 * may never be written: a crash, a failed insert), so the next create with the key does not
 * answer with it but takes the key over (if both get written, PostgreSQL's unique index makes
 * the second an alias of the first). It is confirmed once the create is in PostgreSQL
 * (CONFIRM_LUA) or on a replica's disk (REGISTER_LUA).
 * KEYS: keys. ARGV: key, task id, body, reservation ttl.
 */
const RESERVE_LUA = `
local now = redis.call('TIME')
${NOW_MS}
local field = 'k:' .. ARGV[1]
local held = redis.call('HGET', KEYS[1], field)
if held then
  local reservation = cjson.decode(held)
  if reservation.confirmed ~= false and tonumber(reservation.expiresAt) > now_ms then return held end
  redis.call('HDEL', KEYS[1], field, 't:' .. reservation.id)
end
local record = cjson.encode({id = ARGV[2], task = ARGV[3], confirmed = false, expiresAt = string.format('%.0f', now_ms + tonumber(ARGV[4]))})
redis.call('HSET', KEYS[1], field, record, 't:' .. ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return false`;

/**
 * Confirms the key's reservation if it is this task's (its create is now in PostgreSQL), for
 * retries through any replica. KEYS: keys. ARGV: key, task id.
 */
const CONFIRM_LUA = `
local held = redis.call('HGET', KEYS[1], 'k:' .. ARGV[1])
if not held then return 0 end
local reservation = cjson.decode(held)
if reservation.id ~= ARGV[2] then return 0 end
reservation.confirmed = true
redis.call('HSET', KEYS[1], 'k:' .. ARGV[1], cjson.encode(reservation))
return 1`;

/** Drops the key's reservation if it is this task's. KEYS: keys. ARGV: key, task id. */
const RELEASE_LUA = `
local held = redis.call('HGET', KEYS[1], 'k:' .. ARGV[1])
if held and cjson.decode(held).id == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'k:' .. ARGV[1], 't:' .. ARGV[2])
  return 1
end
return 0`;

/**
 * Position, and the deleted task's key set free. KEYS: pos, keys. ARGV: clock, ttl, task id.
 */
const DELETE_LUA = `${POSITION_LUA}
local key = redis.call('HGET', KEYS[2], 't:' .. ARGV[3])
if key then
  local held = redis.call('HGET', KEYS[2], 'k:' .. key)
  if held and cjson.decode(held).id == ARGV[3] then redis.call('HDEL', KEYS[2], 'k:' .. key) end
  redis.call('HDEL', KEYS[2], 't:' .. ARGV[3])
end
return {string.format('%.0f', pos), now[1], now[2]}`;

/**
 * A create now on this replica's disk: recorded as pending and, with a key, reserves it unless
 * another live create holds it (then that reservation is returned and nothing recorded).
 * KEYS: pending, keys. ARGV: task id, when it was accepted, ttl, key ('' for none), body.
 */
const REGISTER_LUA = `
local now = redis.call('TIME')
${NOW_MS}
local ttl = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local field = 'k:' .. ARGV[4]
  local held = redis.call('HGET', KEYS[2], field)
  if held then
    local reservation = cjson.decode(held)
    if reservation.id ~= ARGV[1] and reservation.confirmed ~= false and tonumber(reservation.expiresAt) > now_ms then return held end
  end
  local record = cjson.encode({id = ARGV[1], task = ARGV[5], confirmed = true, expiresAt = string.format('%.0f', now_ms + ttl)})
  redis.call('HSET', KEYS[2], field, record, 't:' .. ARGV[1], ARGV[4])
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return false`;

/**
 * Creates applied: no longer pending; their reservations kept a short while for retries.
 * KEYS: pending, keys. ARGV: grace (ms), task ids…
 */
const APPLIED_LUA = `
local now = redis.call('TIME')
${NOW_MS}
for i = 2, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  local key = redis.call('HGET', KEYS[2], 't:' .. ARGV[i])
  if key then
    local held = redis.call('HGET', KEYS[2], 'k:' .. key)
    if held then
      local reservation = cjson.decode(held)
      if reservation.id == ARGV[i] then
        reservation.expiresAt = string.format('%.0f', math.min(tonumber(reservation.expiresAt), now_ms + tonumber(ARGV[1])))
        redis.call('HSET', KEYS[2], 'k:' .. key, cjson.encode(reservation))
      end
    end
  end
end
return #ARGV - 1`;

/** A buffered create Redis has not heard of yet. */
export interface UnrecordedCreate {
  userId: string;
  id: string;
  createdAt: string;
}

@Injectable()
export class TaskCoordination implements OnApplicationBootstrap {
  private readonly logger = new Logger(TaskCoordination.name);
  /**
   * Creates in this replica's buffer that Redis may not know as pending (their record failed,
   * or this process started with them on disk), by `taskRef`: recorded as soon as Redis
   * answers, so that another replica's replay does not take their task for one that exists
   * nowhere and set its updates aside.
   */
  private readonly unrecorded = new Map<string, UnrecordedCreate>();
  private recording = false;
  private readonly reserveScript: RedisScript;
  private readonly deleteScript: RedisScript;
  private readonly registerScript: RedisScript;
  private readonly appliedScript: RedisScript;
  private readonly releaseScript: RedisScript;
  private readonly confirmScript: RedisScript;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly redis: RedisService,
    private readonly order: WriteOrder,
    private readonly scheduler: SchedulerRegistry,
  ) {
    this.reserveScript = redis.script(RESERVE_LUA);
    this.deleteScript = redis.script(DELETE_LUA);
    this.registerScript = redis.script(REGISTER_LUA);
    this.appliedScript = redis.script(APPLIED_LUA);
    this.releaseScript = redis.script(RELEASE_LUA);
    this.confirmScript = redis.script(CONFIRM_LUA);
  }

  /**
   * For a create with a key: the key's live reservation if another create holds it; when none,
   * the key is reserved for `task` (its id and its body as answered) for a short while, so that a
   * retry through another replica answers the same task. Undefined also when Redis does not
   * answer in time: the create goes on unreserved (the weaker promise of that case).
   */
  async reserveKey(userId: string, key: string, task: Task): Promise<KeyReservation | undefined> {
    try {
      const held = await this.run(() =>
        this.reserveScript(
          [keysKey(userId)],
          [key, task.id, JSON.stringify(task), APPLIED_RESERVATION_GRACE_MS],
        ),
      );
      return parseReservation(held);
    } catch {
      return undefined;
    }
  }

  /**
   * Confirms `taskId`'s reservation of `key` once its create is in PostgreSQL. Best effort: left
   * tentative, a retry elsewhere meets PostgreSQL's unique index instead (or becomes an alias).
   */
  async confirm(userId: string, key: string, taskId: string): Promise<void> {
    await this.run(() => this.confirmScript([keysKey(userId)], [key, taskId])).catch(() => undefined);
  }

  /** Drops the key's reservation if `taskId` holds it (a create that turned out not to take the key). */
  async release(userId: string, key: string, taskId: string): Promise<void> {
    await this.run(() => this.releaseScript([keysKey(userId)], [key, taskId])).catch(
      () => undefined,
    );
  }

  /** The position of a delete; the deleted task's idempotency key is set free. */
  async positionDelete(userId: string, taskId: string): Promise<Position> {
    return (await this.order.nextVia(this.deleteScript, userId, [keysKey(userId)], [taskId]))
      .position;
  }

  onApplicationBootstrap(): void {
    this.scheduler.addInterval(
      RECORD_AGAIN_INTERVAL,
      setInterval(() => {
        if (this.unrecorded.size > 0 && !this.recording)
          void runAsJob('tasks-record-pending', () => this.recordUnrecorded());
      }, RECORD_AGAIN_EVERY_MS),
    );
  }

  /** Creates to record as pending once Redis answers (those found in the buffer at start-up). */
  recordLater(creates: Iterable<UnrecordedCreate>): void {
    for (const create of creates) this.unrecorded.set(taskRef(create.userId, create.id), create);
  }

  /**
   * Records the creates Redis may not know as pending, a batch per round trip, while Redis
   * answers; those it could not take wait for the next run. No key is reserved here: the create
   * was answered as its own task already, and PostgreSQL's unique index settles its key.
   */
  async recordUnrecorded(): Promise<void> {
    this.recording = true;
    try {
      await this.recordBatches();
    } finally {
      this.recording = false;
    }
  }

  private async recordBatches(): Promise<void> {
    while (this.unrecorded.size > 0 && this.redis.isUp()) {
      const batch = firstEntries(this.unrecorded, RECORD_AGAIN_BATCH);
      const pipeline = this.redis.client.pipeline();
      for (const [, { userId, id, createdAt }] of batch) {
        pipeline.hset(pendingKey(userId), id, createdAt);
        pipeline.pexpire(pendingKey(userId), this.config.replication.retentionMs);
      }
      const replies = await this.run(() => pipeline.exec()).catch(() => null);
      if (!replies || replies.some(([error]) => error)) return;
      for (const [ref] of batch) this.unrecorded.delete(ref);
      this.logger.log({ creates: batch.length }, 'buffered creates recorded as pending now that Redis answers');
    }
  }

  /**
   * Records a create that is on this replica's disk as pending, and reserves its key. Resolves
   * with another create's reservation when that one holds the key (it is the answer), otherwise
   * undefined (also when Redis cannot be reached).
   */
  async registerBuffered(task: Task, key: string | null): Promise<KeyReservation | undefined> {
    try {
      const held = await this.run(() =>
        this.registerScript(
          [pendingKey(task.userId), keysKey(task.userId)],
          [
            task.id,
            task.createdAt,
            this.config.replication.retentionMs,
            key ?? '',
            key === null ? '' : JSON.stringify(task),
          ],
        ),
      );
      return parseReservation(held);
    } catch (error) {
      this.unrecorded.set(taskRef(task.userId, task.id), { userId: task.userId, id: task.id, createdAt: task.createdAt });
      this.logger.warn(
        { err: summary(error), taskId: task.id },
        'a buffered create could not be recorded as pending in Redis: it will be once Redis answers',
      );
      return undefined;
    }
  }

  /** Creates applied by replay: no longer pending (best effort: they expire anyway). */
  async applied(creates: ReadonlyArray<{ userId: string; id: string }>): Promise<void> {
    const byUser = groupByUser(creates);
    if (byUser.size === 0) return;
    await Promise.allSettled(
      [...byUser].map(([userId, ids]) =>
        this.run(() =>
          this.appliedScript(
            [pendingKey(userId), keysKey(userId)],
            [APPLIED_RESERVATION_GRACE_MS, ...ids],
          ),
        ),
      ),
    );
  }

  /**
   * Which of the given tasks are creates still waiting in some replica's buffer; undefined when
   * Redis cannot say.
   */
  async pendingOf(
    tasks: ReadonlyArray<{ userId: string; id: string }>,
  ): Promise<Set<string> | undefined> {
    const byUser = groupByUser(tasks);
    const pending = new Set<string>();
    if (byUser.size === 0) return pending;
    if (!this.redis.isUp()) return undefined;
    try {
      const pipeline = this.redis.client.pipeline();
      const users = [...byUser];
      for (const [userId, ids] of users) pipeline.hmget(pendingKey(userId), ...ids);
      const replies = (await this.run(() => pipeline.exec())) ?? [];
      users.forEach(([userId, ids], index) => {
        const [error, positions] = replies[index] ?? [new Error('no reply'), null];
        if (error) throw error;
        ids.forEach((id, n) => {
          if ((positions as (string | null)[])[n] !== null) pending.add(taskRef(userId, id));
        });
      });
      return pending;
    } catch {
      return undefined;
    }
  }

  /** Runs `command` unless Redis is known to be down, giving up on it after REDIS_TIMEOUT_MS. */
  private run<T>(command: () => Promise<T>): Promise<T> {
    if (!this.redis.isUp()) return Promise.reject(new Error('Redis is not connected'));
    return within(command(), REDIS_TIMEOUT_MS, 'no answer from Redis');
  }
}

/** How `pendingOf` names a task: its owner and id. */
export function taskRef(userId: string, id: string): string {
  return `${userId}/${id}`;
}

function pendingKey(userId: string): string {
  return `{u:${userId}}:pending`;
}

function keysKey(userId: string): string {
  return `{u:${userId}}:keys`;
}

function parseReservation(reply: unknown): KeyReservation | undefined {
  if (typeof reply !== 'string') return undefined;
  try {
    const { id, task } = JSON.parse(reply) as { id?: unknown; task?: unknown };
    if (typeof id !== 'string' || typeof task !== 'string') return undefined;
    return { id, task: JSON.parse(task) as Task };
  } catch {
    return undefined;
  }
}

function groupByUser(tasks: ReadonlyArray<{ userId: string; id: string }>): Map<string, string[]> {
  const byUser = new Map<string, string[]>();
  for (const { userId, id } of tasks) {
    const ids = byUser.get(userId) ?? [];
    if (!ids.includes(id)) ids.push(id);
    byUser.set(userId, ids);
  }
  return byUser;
}

function summary(error: unknown): { message: string } {
  return { message: error instanceof Error ? error.message : String(error) };
}

/** The first `count` entries of `map`, in insertion order, without copying the rest. */
function firstEntries<K, V>(map: ReadonlyMap<K, V>, count: number): Array<[K, V]> {
  const taken: Array<[K, V]> = [];
  for (const entry of map) {
    if (taken.length === count) break;
    taken.push(entry);
  }
  return taken;
}
