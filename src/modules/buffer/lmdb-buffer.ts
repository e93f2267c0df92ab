/**
 * The durable queue of operations waiting for PostgreSQL, in the process's LMDB environment.
 *
 * Named databases:
 *   buffer.queue         seq → entry (JSON bytes)   waiting operations, in arrival order
 *   buffer.dead-letters  seq → dead letter          operations that can never apply, with their error
 *   buffer.dedupe        dedupe key → seq           idempotency of buffered writes, while queued
 *   buffer.meta          seq, depth, bytes, dead    counters
 *
 * Keys are a sequence number stored in `buffer.meta` and incremented inside the very write
 * transaction that stores the entry. LMDB runs write transactions one at a time, in the order
 * they were asked for, so key order is arrival order, across restarts too. A timestamp with a
 * counter would not do: the wall clock can step back (NTP, a migrated VM) and an in-memory
 * counter starts again at zero after a restart, so a later write could sort before an earlier
 * one. Numbers are encoded by lmdb's ordered-binary key encoding, which sorts them numerically.
 *
 * The depth and byte counters change in the same transaction as the entries they count, so
 * they are exactly right after any crash; they are derived from the entries only when missing.
 * A transaction callback only writes once it has decided to: lmdb does not roll back the writes
 * of a callback that throws.
 */
import type { Database, RootDatabase } from 'lmdb';
import { BufferFullError, summariseError, type ErrorSummary } from './buffer.errors.js';
import type { BufferedOperation } from './operation.js';

export interface BufferBounds {
  maxEntries: number;
  maxBytes: number;
}

export interface BufferEntry {
  /** Position in the queue; ascending in arrival order. */
  key: number;
  op: BufferedOperation;
  /** Epoch milliseconds at which it was written to the buffer. */
  enqueuedAt: number;
  /** Size of the stored entry, as counted against BUFFER_MAX_BYTES. */
  bytes: number;
  dedupeKey?: string;
}

export interface DeadLetter {
  key: number;
  op: BufferedOperation;
  error: ErrorSummary;
  enqueuedAt: number;
  deadLetteredAt: number;
}

export interface AddResult {
  entry: BufferEntry;
  /** True when `dedupeKey` matched a queued entry: that one is returned and nothing is added. */
  duplicate: boolean;
}

interface StoredEntry {
  op: BufferedOperation;
  enqueuedAt: number;
  dedupeKey?: string;
}

type StoredDeadLetter = Omit<DeadLetter, 'key'>;

type MetaKey = 'seq' | 'depth' | 'bytes' | 'dead';

type AddDecision =
  | { status: 'added'; entry: BufferEntry }
  | { status: 'duplicate'; entry: BufferEntry }
  | { status: 'full'; limit: 'entries' | 'bytes' };

export class LmdbBuffer {
  private readonly queue: Database<Buffer, number>;
  private readonly deadLetters: Database<StoredDeadLetter, number>;
  private readonly dedupe: Database<number, string>;
  private readonly meta: Database<number, MetaKey>;
  private cachedDepth = 0;
  private cachedBytes = 0;
  private cachedDead = 0;
  /** `add` calls between their start and their commit: not in `depth` yet, but already ahead of any later write. */
  private pendingAdds = 0;

  constructor(
    private readonly root: RootDatabase,
    private readonly bounds: BufferBounds,
  ) {
    this.queue = root.openDB<Buffer, number>({ name: 'buffer.queue', encoding: 'binary' });
    this.deadLetters = root.openDB<StoredDeadLetter, number>({
      name: 'buffer.dead-letters',
      encoding: 'json',
    });
    this.dedupe = root.openDB<number, string>({ name: 'buffer.dedupe', encoding: 'json' });
    this.meta = root.openDB<number, MetaKey>({ name: 'buffer.meta', encoding: 'json' });
    this.loadCounters();
  }

  get depth(): number {
    return this.cachedDepth;
  }

  get bytes(): number {
    return this.cachedBytes;
  }

  get deadLetterCount(): number {
    return this.cachedDead;
  }

  get limits(): BufferBounds {
    return { ...this.bounds };
  }

  /** Nothing queued and nothing on its way in: a direct write would overtake no one. */
  isEmpty(): boolean {
    return this.cachedDepth === 0 && this.pendingAdds === 0;
  }

  /** No further entry fits. (An entry larger than the room left is refused even before.) */
  isFull(): boolean {
    return this.cachedDepth >= this.bounds.maxEntries || this.cachedBytes >= this.bounds.maxBytes;
  }

  /**
   * Appends `op` and resolves once it is on disk, not merely committed: with `overlappingSync`
   * a commit is visible before it is flushed, and a 202 is a promise that survives a power cut.
   * With `dedupeKey`, an entry still queued under the same key is returned instead.
   * Rejects with `BufferFullError` when the bounds do not leave room for it.
   */
  async add(op: BufferedOperation, options: { dedupeKey?: string } = {}): Promise<AddResult> {
    const stored: StoredEntry = {
      op,
      enqueuedAt: Date.now(),
      ...(options.dedupeKey ? { dedupeKey: options.dedupeKey } : {}),
    };
    const value = Buffer.from(JSON.stringify(stored));
    this.pendingAdds += 1;
    try {
      const decision = await this.write(() => this.decideAdd(value, stored));
      if (decision.status === 'full') throw new BufferFullError(decision.limit);
      // A duplicate's original may be committed but not yet flushed: wait for it as well.
      await this.root.flushed;
      return { entry: decision.entry, duplicate: decision.status === 'duplicate' };
    } finally {
      this.pendingAdds -= 1;
    }
  }

  /** True while an entry added under `dedupeKey` waits in the queue. */
  isQueuedUnder(dedupeKey: string): boolean {
    const key = this.dedupe.get(dedupeKey);
    return key !== undefined && this.queue.doesExist(key);
  }

  /** The first `limit` waiting entries, oldest first. */
  getBatch(limit: number): BufferEntry[] {
    const batch: BufferEntry[] = [];
    for (const { key, value } of this.queue.getRange({ limit }))
      batch.push(decodeEntry(key, value));
    return batch;
  }

  /** Epoch milliseconds at which the oldest waiting entry was written, or null when empty. */
  oldestEnqueuedAt(): number | null {
    for (const { key, value } of this.queue.getRange({ limit: 1 }))
      return decodeEntry(key, value).enqueuedAt;
    return null;
  }

  /**
   * Removes the entries of `keys` (with their dedupe keys); resolves with how many were there,
   * once committed. It does not wait for the disk as `add` does: replay removes entries only
   * after their operations are committed to PostgreSQL and recorded in the exactly-once ledger,
   * so a removal lost to a power cut only brings back entries whose replay is a no-op. (Replay
   * is bounded by this wait otherwise: one disk flush per batch.)
   */
  async remove(keys: readonly number[]): Promise<number> {
    if (keys.length === 0) return 0;
    const removed = await this.write(() => {
      let count = 0;
      let freed = 0;
      for (const key of keys) {
        const entry = this.takeFromQueue(key);
        if (!entry) continue;
        count += 1;
        freed += entry.bytes;
      }
      this.setCounters(this.cachedDepth - count, this.cachedBytes - freed, this.cachedDead);
      return count;
    });
    return removed;
  }

  /**
   * Moves the entry of `key` from the queue to the dead-letter store with a summary of `error`,
   * in one transaction. Resolves false when the entry was not queued.
   */
  async deadLetter(key: number, error: unknown): Promise<boolean> {
    const summary = summariseError(error);
    const moved = await this.write(() => {
      const entry = this.takeFromQueue(key);
      if (!entry) return false;
      void this.deadLetters.put(key, {
        op: entry.op,
        error: summary,
        enqueuedAt: entry.enqueuedAt,
        deadLetteredAt: Date.now(),
      });
      this.setCounters(this.cachedDepth - 1, this.cachedBytes - entry.bytes, this.cachedDead + 1);
      return true;
    });
    await this.root.flushed;
    return moved;
  }

  /** Dead letters in the order their operations arrived. */
  listDeadLetters(limit = 100): DeadLetter[] {
    const letters: DeadLetter[] = [];
    for (const { key, value } of this.deadLetters.getRange({ limit }))
      letters.push({ key, ...value });
    return letters;
  }

  /**
   * Runs `decide` in a write transaction. The cached counters are set inside the callbacks,
   * which lmdb runs one after the other in commit order; should a commit fail, they are read
   * again from disk.
   */
  private async write<T>(decide: () => T): Promise<T> {
    try {
      return await this.root.transaction(decide);
    } catch (error) {
      this.loadCounters();
      throw error;
    }
  }

  private decideAdd(value: Buffer, stored: StoredEntry): AddDecision {
    if (stored.dedupeKey !== undefined) {
      const existingKey = this.dedupe.get(stored.dedupeKey);
      const existing = existingKey === undefined ? undefined : this.queue.get(existingKey);
      if (existingKey !== undefined && existing) {
        return { status: 'duplicate', entry: decodeEntry(existingKey, existing) };
      }
    }
    if (this.cachedDepth + 1 > this.bounds.maxEntries) return { status: 'full', limit: 'entries' };
    if (this.cachedBytes + value.length > this.bounds.maxBytes)
      return { status: 'full', limit: 'bytes' };
    const key = (this.meta.get('seq') ?? 0) + 1;
    void this.queue.put(key, value);
    void this.meta.put('seq', key);
    if (stored.dedupeKey !== undefined) void this.dedupe.put(stored.dedupeKey, key);
    this.setCounters(this.cachedDepth + 1, this.cachedBytes + value.length, this.cachedDead);
    return { status: 'added', entry: { key, bytes: value.length, ...stored } };
  }

  /** Inside a write transaction: deletes a queued entry and its dedupe key; the counters are the caller's. */
  private takeFromQueue(key: number): BufferEntry | undefined {
    const raw = this.queue.get(key);
    if (!raw) return undefined;
    const entry = decodeEntry(key, raw);
    void this.queue.remove(key);
    if (entry.dedupeKey !== undefined && this.dedupe.get(entry.dedupeKey) === key) {
      void this.dedupe.remove(entry.dedupeKey);
    }
    return entry;
  }

  /** Inside a write transaction: persists the counters and mirrors them in memory. */
  private setCounters(depth: number, bytes: number, dead: number): void {
    void this.meta.put('depth', depth);
    void this.meta.put('bytes', bytes);
    void this.meta.put('dead', dead);
    this.cachedDepth = depth;
    this.cachedBytes = bytes;
    this.cachedDead = dead;
  }

  private loadCounters(): void {
    const depth = this.meta.get('depth');
    const bytes = this.meta.get('bytes');
    const dead = this.meta.get('dead');
    if (depth === undefined || bytes === undefined || dead === undefined) {
      this.deriveCounters();
      return;
    }
    this.cachedDepth = depth;
    this.cachedBytes = bytes;
    this.cachedDead = dead;
  }

  /** For an environment without counters yet: counts what is stored, once, and persists it. */
  private deriveCounters(): void {
    let depth = 0;
    let bytes = 0;
    let lastKey = 0;
    for (const { key, value } of this.queue.getRange({})) {
      depth += 1;
      bytes += value.length;
      lastKey = key;
    }
    let dead = 0;
    for (const key of this.deadLetters.getKeys({})) {
      dead += 1;
      lastKey = Math.max(lastKey, key);
    }
    this.root.transactionSync(() => {
      void this.meta.put('seq', Math.max(lastKey, this.meta.get('seq') ?? 0));
      this.setCounters(depth, bytes, dead);
    });
  }
}

function decodeEntry(key: number, value: Buffer): BufferEntry {
  const stored = JSON.parse(value.toString('utf8')) as StoredEntry;
  return { key, bytes: value.length, ...stored };
}
