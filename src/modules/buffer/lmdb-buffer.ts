/**
 * The durable queue of operations waiting for PostgreSQL, in the process's LMDB environment.
 *
 * Named databases:
 *   buffer.queue         seq → entry (JSON bytes)   waiting operations, in arrival order
 *   buffer.parked        seq → parked entry         operations waiting for something else first
 *                                                   (a task's create still in another replica's buffer)
 *   buffer.dead-letters  seq → dead letter          operations set aside: they can never apply
 *   buffer.dedupe        key → seq                  dedupe keys and look-up tags of queued and parked entries
 *   buffer.users         user id → share           each user's queued and parked entries and bytes
 *   buffer.meta          seq, counters
 *
 * Keys are a sequence number stored in `buffer.meta` and incremented inside the very write
 * transaction that stores the entry. LMDB runs write transactions one at a time, in the order
 * they were asked for, so key order is arrival order, across restarts too. A timestamp with a
 * counter would not do: the wall clock can step back (NTP, a migrated VM) and an in-memory
 * counter starts again at zero after a restart. Numbers are encoded by lmdb's ordered-binary key
 * encoding, which sorts them numerically. (Replay does not depend on that order for what it
 * stores: positions decide. The order keeps the queue fair and its figures meaningful.)
 *
 * Bounds: the whole buffer (queued and parked) by entries and bytes (503 past them), each user's
 * share of it (429), and the set-aside writes on their own, by count, bytes and age: past those
 * the oldest set-aside writes are dropped.
 *
 * Every counter changes in the same transaction as the entries it counts, so counters are exact
 * after any crash; they are derived from the entries only when missing. A transaction callback
 * only writes once it has decided to: lmdb does not roll back the writes of a callback that throws.
 */
import type { Database, RootDatabase } from 'lmdb';
import { BufferFullError, UserShareExceededError, summariseError, type ErrorSummary } from './buffer.errors.js';
import type { BufferedOperation } from './operation.js';

export interface BufferBounds {
  maxEntries: number;
  maxBytes: number;
  /** One user's share (queued and parked); unbounded when absent. */
  userMaxEntries?: number;
  userMaxBytes?: number;
  /** The set-aside writes; unbounded when absent. */
  setAsideMaxEntries?: number;
  setAsideMaxBytes?: number;
  setAsideMaxAgeMs?: number;
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
  /** Look-up keys under which the entry is found while queued or parked (see `isQueuedUnder`). */
  tags?: string[];
}

export interface ParkedEntry extends BufferEntry {
  parkedAt: number;
  reason: string;
}

export interface DeadLetter {
  key: number;
  op: BufferedOperation;
  error: ErrorSummary;
  enqueuedAt: number;
  deadLetteredAt: number;
  bytes: number;
}

export interface AddResult {
  entry: BufferEntry;
  /** True when `dedupeKey` matched a queued entry: that one is returned and nothing is added. */
  duplicate: boolean;
}

export interface AddOptions {
  dedupeKey?: string;
  tags?: string[];
  /** Not counted against the user's share (an entry handed over by another replica). */
  exemptFromShare?: boolean;
  /**
   * Look-up keys (tags) of queued entries whose dedupe keys this entry sets free, in the same
   * transaction: a delete frees its task's idempotency key, so a create queued after it with
   * that key is a new create, not a retry of the deleted one.
   */
  releases?: string[];
}

/** What setting entries aside did: how many it moved, and the older ones it dropped to stay in bounds. */
export interface SetAsideResult {
  moved: number;
  dropped: DeadLetter[];
}

interface StoredEntry {
  op: BufferedOperation;
  enqueuedAt: number;
  dedupeKey?: string;
  tags?: string[];
  /** Set while parked. */
  parkedAt?: number;
  reason?: string;
}

type StoredDeadLetter = Omit<DeadLetter, 'key'>;

interface Share {
  entries: number;
  bytes: number;
}

interface Counters {
  depth: number;
  bytes: number;
  parked: number;
  parkedBytes: number;
  dead: number;
  deadBytes: number;
}

type MetaKey = 'seq' | 'counters';

type AddDecision =
  | { status: 'added'; entry: BufferEntry }
  | { status: 'duplicate'; entry: BufferEntry }
  | { status: 'full'; limit: 'entries' | 'bytes' }
  | { status: 'user-full' };

const NO_COUNTERS: Counters = { depth: 0, bytes: 0, parked: 0, parkedBytes: 0, dead: 0, deadBytes: 0 };

export class LmdbBuffer {
  private readonly queue: Database<Buffer, number>;
  private readonly parked: Database<Buffer, number>;
  private readonly deadLetters: Database<StoredDeadLetter, number>;
  private readonly dedupe: Database<number, string>;
  private readonly users: Database<Share, string>;
  private readonly meta: Database<number | Counters, MetaKey>;
  private counters: Counters = { ...NO_COUNTERS };
  /** `add` calls between their start and their commit: not in `depth` yet, but already ahead of any later write. */
  private pendingAdds = 0;

  constructor(
    private readonly root: RootDatabase,
    private readonly bounds: BufferBounds,
  ) {
    this.queue = root.openDB<Buffer, number>({ name: 'buffer.queue', encoding: 'binary' });
    this.parked = root.openDB<Buffer, number>({ name: 'buffer.parked', encoding: 'binary' });
    this.deadLetters = root.openDB<StoredDeadLetter, number>({ name: 'buffer.dead-letters', encoding: 'json' });
    this.dedupe = root.openDB<number, string>({ name: 'buffer.dedupe', encoding: 'json' });
    this.users = root.openDB<Share, string>({ name: 'buffer.users', encoding: 'json' });
    this.meta = root.openDB<number | Counters, MetaKey>({ name: 'buffer.meta', encoding: 'json' });
    this.loadCounters();
  }

  /** Entries queued for replay (not the parked ones). */
  get depth(): number {
    return this.counters.depth;
  }

  /** Bytes of the queued and parked entries, as counted against BUFFER_MAX_BYTES. */
  get bytes(): number {
    return this.counters.bytes + this.counters.parkedBytes;
  }

  get parkedCount(): number {
    return this.counters.parked;
  }

  get deadLetterCount(): number {
    return this.counters.dead;
  }

  get deadLetterBytes(): number {
    return this.counters.deadBytes;
  }

  get limits(): BufferBounds {
    return { ...this.bounds };
  }

  /** Nothing queued and nothing on its way in. */
  isEmpty(): boolean {
    return this.counters.depth === 0 && this.pendingAdds === 0;
  }

  /** Nothing queued, parked or on its way in: no write of this replica's waits for PostgreSQL. */
  holdsNothing(): boolean {
    return this.isEmpty() && this.counters.parked === 0;
  }

  /** No further entry fits. (An entry larger than the room left is refused even before.) */
  isFull(): boolean {
    return !this.hasRoomFor(1);
  }

  /** Whether one more entry of `bytes` would fit in the whole buffer. */
  hasRoomFor(bytes: number): boolean {
    const { depth, parked } = this.counters;
    return depth + parked + 1 <= this.bounds.maxEntries && this.bytes + bytes <= this.bounds.maxBytes;
  }

  /** The user's queued and parked entries and bytes. */
  shareOf(userId: string): Share {
    return this.users.get(userId) ?? { entries: 0, bytes: 0 };
  }

  /**
   * Appends `op` and resolves once it is on disk, not merely committed: with `overlappingSync`
   * a commit is visible before it is flushed, and a 202 is a promise that survives a power cut.
   * With `dedupeKey`, an entry still queued or parked under the same key is returned instead.
   * Rejects with `BufferFullError` when the bounds do not leave room for it, and with
   * `UserShareExceededError` when its user's share would be exceeded.
   */
  async add(op: BufferedOperation, options: AddOptions = {}): Promise<AddResult> {
    const stored: StoredEntry = {
      op,
      enqueuedAt: Date.now(),
      ...(options.dedupeKey ? { dedupeKey: options.dedupeKey } : {}),
      ...(options.tags?.length ? { tags: options.tags } : {}),
    };
    const value = Buffer.from(JSON.stringify(stored));
    this.pendingAdds += 1;
    try {
      const decision = await this.write(() => {
        const decided = this.decideAdd(value, stored, options.exemptFromShare ?? false);
        if (decided.status === 'added' || decided.status === 'duplicate')
          this.releaseDedupeKeys(options.releases ?? []);
        return decided;
      });
      if (decision.status === 'full') throw new BufferFullError(decision.limit);
      if (decision.status === 'user-full') throw new UserShareExceededError();
      // A duplicate's original may be committed but not yet flushed: wait for it as well.
      await this.root.flushed;
      return { entry: decision.entry, duplicate: decision.status === 'duplicate' };
    } finally {
      this.pendingAdds -= 1;
    }
  }

  /** True while an entry added under `key` (its dedupe key or one of its tags) is queued or parked. */
  isQueuedUnder(key: string): boolean {
    return this.queuedKeyOf(key) !== undefined;
  }

  /** The queue key of the entry added under `key` while it is queued or parked. */
  queuedKeyOf(key: string): number | undefined {
    const seq = this.dedupe.get(key);
    return seq !== undefined && (this.queue.doesExist(seq) || this.parked.doesExist(seq)) ? seq : undefined;
  }

  /** Every waiting entry, oldest first, decoded one at a time as the caller reads on. */
  *queued(): Generator<BufferEntry> {
    for (const { key, value } of this.queue.getRange()) yield decodeEntry(key, value);
  }

  /** The first `limit` waiting entries, oldest first. */
  getBatch(limit: number): BufferEntry[] {
    const batch: BufferEntry[] = [];
    for (const { key, value } of this.queue.getRange({ limit })) batch.push(decodeEntry(key, value));
    return batch;
  }

  /** Epoch milliseconds at which the oldest queued or parked entry was written, or null when none. */
  oldestEnqueuedAt(): number | null {
    let oldest: number | null = null;
    for (const db of [this.queue, this.parked]) {
      for (const { key, value } of db.getRange({ limit: 1 })) {
        const at = decodeEntry(key, value).enqueuedAt;
        oldest = oldest === null ? at : Math.min(oldest, at);
      }
    }
    return oldest;
  }

  /**
   * Removes the entries of `keys` (queued or parked) with their dedupe keys and tags; resolves
   * with how many were there, once committed. It does not wait for the disk as `add` does:
   * replay removes entries only after their operations are committed to PostgreSQL and recorded
   * in the exactly-once ledger, so a removal lost to a power cut only brings back entries whose
   * replay is a no-op. (Replay is bounded by this wait otherwise: one disk flush per batch.)
   */
  async remove(keys: readonly number[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.write(() => {
      const next = { ...this.counters };
      let count = 0;
      for (const key of keys) if (this.take(key, next)) count += 1;
      this.setCounters(next);
      return count;
    });
  }

  /**
   * Moves the entries of `keys` from the queue to the parked store, each with its reason, in one
   * transaction flushed to disk. Resolves with how many were moved.
   */
  async park(entries: ReadonlyArray<{ key: number; reason: string }>): Promise<number> {
    if (entries.length === 0) return 0;
    const moved = await this.write(() => {
      const next = { ...this.counters };
      let count = 0;
      const parkedAt = Date.now();
      for (const { key, reason } of entries) {
        const raw = this.queue.get(key);
        if (!raw) continue;
        const stored = JSON.parse(raw.toString('utf8')) as StoredEntry;
        const value = Buffer.from(JSON.stringify({ ...stored, parkedAt, reason }));
        void this.queue.remove(key);
        void this.parked.put(key, value);
        next.depth -= 1;
        next.bytes -= raw.length;
        next.parked += 1;
        next.parkedBytes += value.length;
        this.adjustShare(stored.op.userId, 0, value.length - raw.length);
        count += 1;
      }
      this.setCounters(next);
      return count;
    });
    await this.root.flushed;
    return moved;
  }

  /** Parked entries, oldest first. */
  listParked(limit = 1_000): ParkedEntry[] {
    const entries: ParkedEntry[] = [];
    for (const { key, value } of this.parked.getRange({ limit })) {
      const entry = decodeEntry(key, value);
      const { parkedAt, reason } = JSON.parse(value.toString('utf8')) as StoredEntry;
      entries.push({ ...entry, parkedAt: parkedAt ?? entry.enqueuedAt, reason: reason ?? '' });
    }
    return entries;
  }

  /** Moves parked entries back to the queue (under the same keys), in one transaction. */
  async unpark(keys: readonly number[]): Promise<number> {
    if (keys.length === 0) return 0;
    const moved = await this.write(() => {
      const next = { ...this.counters };
      let count = 0;
      for (const key of keys) {
        const raw = this.parked.get(key);
        if (!raw) continue;
        const { parkedAt: _at, reason: _reason, ...stored } = JSON.parse(raw.toString('utf8')) as StoredEntry;
        const value = Buffer.from(JSON.stringify(stored));
        void this.parked.remove(key);
        void this.queue.put(key, value);
        next.parked -= 1;
        next.parkedBytes -= raw.length;
        next.depth += 1;
        next.bytes += value.length;
        this.adjustShare(stored.op.userId, 0, value.length - raw.length);
        count += 1;
      }
      this.setCounters(next);
      return count;
    });
    await this.root.flushed;
    return moved;
  }

  /**
   * Moves the entries of `keys` (queued or parked) to the set-aside store, each with a summary of
   * its error, in one transaction flushed to disk; then drops the oldest set-aside writes beyond
   * the set-aside bounds (count, bytes, age), in the same transaction.
   */
  async setAside(entries: ReadonlyArray<{ key: number; error: unknown }>): Promise<SetAsideResult> {
    if (entries.length === 0) return { moved: 0, dropped: [] };
    const result = await this.write(() => {
      const next = { ...this.counters };
      const now = Date.now();
      let moved = 0;
      for (const { key, error } of entries) {
        const entry = this.take(key, next);
        if (!entry) continue;
        const letter: StoredDeadLetter = {
          op: entry.op,
          error: summariseError(error),
          enqueuedAt: entry.enqueuedAt,
          deadLetteredAt: now,
          bytes: entry.bytes,
        };
        void this.deadLetters.put(key, letter);
        next.dead += 1;
        next.deadBytes += entry.bytes;
        moved += 1;
      }
      const dropped = this.dropBeyondBounds(next, now);
      this.setCounters(next);
      return { moved, dropped };
    });
    await this.root.flushed;
    return result;
  }

  /** Moves one entry to the set-aside store (see `setAside`); false when it was not there. */
  async deadLetter(key: number, error: unknown): Promise<boolean> {
    return (await this.setAside([{ key, error }])).moved === 1;
  }

  /** Drops set-aside writes older than the set-aside age bound; resolves with those dropped. */
  async expireSetAside(now = Date.now()): Promise<DeadLetter[]> {
    if (this.counters.dead === 0) return [];
    return this.write(() => {
      const next = { ...this.counters };
      const dropped = this.dropBeyondBounds(next, now);
      if (dropped.length > 0) this.setCounters(next);
      return dropped;
    });
  }

  /** Set-aside writes in the order their operations arrived, from `after` (a key) on. */
  listDeadLetters(limit = 100, after?: number): DeadLetter[] {
    const letters: DeadLetter[] = [];
    const range = after === undefined ? { limit } : { start: after + 1, limit };
    for (const { key, value } of this.deadLetters.getRange(range)) letters.push({ key, ...value });
    return letters;
  }

  getDeadLetter(key: number): DeadLetter | undefined {
    const value = this.deadLetters.get(key);
    return value && { key, ...value };
  }

  /**
   * Puts a set-aside write back in the queue (under its own key), for an operator's retry;
   * resolves false when there is no such set-aside write. Bounds and shares apply as to any write.
   */
  async retryDeadLetter(key: number): Promise<boolean> {
    const done = await this.write(() => {
      const letter = this.deadLetters.get(key);
      if (!letter) return false;
      const value = Buffer.from(JSON.stringify({ op: letter.op, enqueuedAt: Date.now() } satisfies StoredEntry));
      const next = { ...this.counters };
      if (next.depth + next.parked + 1 > this.bounds.maxEntries) throw new BufferFullError('entries');
      if (this.bytes + value.length > this.bounds.maxBytes) throw new BufferFullError('bytes');
      void this.deadLetters.remove(key);
      void this.queue.put(key, value);
      next.dead -= 1;
      next.deadBytes -= letter.bytes ?? 0;
      next.depth += 1;
      next.bytes += value.length;
      this.adjustShare(letter.op.userId, 1, value.length);
      this.setCounters(next);
      return true;
    });
    await this.root.flushed;
    return done;
  }

  /** Deletes a set-aside write for good; resolves false when there is no such set-aside write. */
  async dropDeadLetter(key: number): Promise<boolean> {
    const done = await this.write(() => {
      const letter = this.deadLetters.get(key);
      if (!letter) return false;
      void this.deadLetters.remove(key);
      this.setCounters({
        ...this.counters,
        dead: this.counters.dead - 1,
        deadBytes: this.counters.deadBytes - (letter.bytes ?? 0),
      });
      return true;
    });
    await this.root.flushed;
    return done;
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

  private decideAdd(value: Buffer, stored: StoredEntry, exempt: boolean): AddDecision {
    if (stored.dedupeKey !== undefined) {
      const existingKey = this.dedupe.get(stored.dedupeKey);
      const existing = existingKey === undefined ? undefined : this.storedAt(existingKey);
      if (existingKey !== undefined && existing) {
        return { status: 'duplicate', entry: decodeEntry(existingKey, existing) };
      }
    }
    const { depth, parked } = this.counters;
    if (depth + parked + 1 > this.bounds.maxEntries) return { status: 'full', limit: 'entries' };
    if (this.bytes + value.length > this.bounds.maxBytes) return { status: 'full', limit: 'bytes' };
    if (!exempt && !this.shareAllows(stored.op.userId, value.length)) return { status: 'user-full' };
    const key = (this.meta.get('seq') as number | undefined ?? 0) + 1;
    void this.queue.put(key, value);
    void this.meta.put('seq', key);
    for (const lookup of lookupKeys(stored)) void this.dedupe.put(lookup, key);
    this.adjustShare(stored.op.userId, 1, value.length);
    this.setCounters({ ...this.counters, depth: depth + 1, bytes: this.counters.bytes + value.length });
    return { status: 'added', entry: { key, bytes: value.length, ...withoutParking(stored) } };
  }

  /** The stored form of entry `seq`, queued or parked. */
  private storedAt(seq: number): Buffer | undefined {
    return this.queue.get(seq) ?? this.parked.get(seq);
  }

  /** Inside a write transaction: the dedupe keys of the entries found under `lookups` go free. */
  private releaseDedupeKeys(lookups: string[]): void {
    for (const lookup of lookups) {
      const seq = this.dedupe.get(lookup);
      if (seq === undefined) continue;
      const raw = this.storedAt(seq);
      const dedupeKey = raw && decodeEntry(seq, raw).dedupeKey;
      if (dedupeKey !== undefined && this.dedupe.get(dedupeKey) === seq) void this.dedupe.remove(dedupeKey);
    }
  }

  private shareAllows(userId: string, bytes: number): boolean {
    const share = this.shareOf(userId);
    const { userMaxEntries = Infinity, userMaxBytes = Infinity } = this.bounds;
    return share.entries + 1 <= userMaxEntries && share.bytes + bytes <= userMaxBytes;
  }

  /** Inside a write transaction: takes a queued or parked entry out with its look-up keys. */
  private take(key: number, next: Counters): BufferEntry | undefined {
    const queued = this.queue.get(key);
    const raw = queued ?? this.parked.get(key);
    if (!raw) return undefined;
    const entry = decodeEntry(key, raw);
    if (queued) {
      void this.queue.remove(key);
      next.depth -= 1;
      next.bytes -= raw.length;
    } else {
      void this.parked.remove(key);
      next.parked -= 1;
      next.parkedBytes -= raw.length;
    }
    for (const lookup of lookupKeys(entry)) {
      if (this.dedupe.get(lookup) === key) void this.dedupe.remove(lookup);
    }
    this.adjustShare(entry.op.userId, -1, -raw.length);
    return entry;
  }

  /** Inside a write transaction: drops the oldest set-aside writes beyond the bounds. */
  private dropBeyondBounds(next: Counters, now: number): DeadLetter[] {
    const { setAsideMaxEntries = Infinity, setAsideMaxBytes = Infinity, setAsideMaxAgeMs = Infinity } = this.bounds;
    const dropped: DeadLetter[] = [];
    for (const { key, value } of this.deadLetters.getRange({})) {
      const tooMany = next.dead > setAsideMaxEntries || next.deadBytes > setAsideMaxBytes;
      const tooOld = now - value.deadLetteredAt > setAsideMaxAgeMs;
      if (!tooMany && !tooOld) break;
      void this.deadLetters.remove(key);
      next.dead -= 1;
      next.deadBytes -= value.bytes ?? 0;
      dropped.push({ key, ...value });
    }
    return dropped;
  }

  /** Inside a write transaction: changes the user's share. */
  private adjustShare(userId: string, entries: number, bytes: number): void {
    const share = this.shareOf(userId);
    const next = { entries: share.entries + entries, bytes: share.bytes + bytes };
    if (next.entries <= 0) void this.users.remove(userId);
    else void this.users.put(userId, next);
  }

  /** Inside a write transaction: persists the counters and mirrors them in memory. */
  private setCounters(next: Counters): void {
    void this.meta.put('counters', next);
    this.counters = next;
  }

  private loadCounters(): void {
    const stored = this.meta.get('counters') as Counters | undefined;
    if (stored === undefined) {
      this.deriveCounters();
      return;
    }
    this.counters = { ...NO_COUNTERS, ...stored };
  }

  /** For an environment without counters yet: counts what is stored, once, and persists it. */
  private deriveCounters(): void {
    const next = { ...NO_COUNTERS };
    const shares = new Map<string, Share>();
    let lastKey = 0;
    const count = (db: Database<Buffer, number>, parked: boolean) => {
      for (const { key, value } of db.getRange({})) {
        const { op } = JSON.parse(value.toString('utf8')) as StoredEntry;
        if (parked) {
          next.parked += 1;
          next.parkedBytes += value.length;
        } else {
          next.depth += 1;
          next.bytes += value.length;
        }
        const share = shares.get(op.userId) ?? { entries: 0, bytes: 0 };
        shares.set(op.userId, { entries: share.entries + 1, bytes: share.bytes + value.length });
        lastKey = Math.max(lastKey, key);
      }
    };
    count(this.queue, false);
    count(this.parked, true);
    for (const { key, value } of this.deadLetters.getRange({})) {
      next.dead += 1;
      next.deadBytes += value.bytes ?? 0;
      lastKey = Math.max(lastKey, key);
    }
    this.root.transactionSync(() => {
      void this.meta.put('seq', Math.max(lastKey, (this.meta.get('seq') as number | undefined) ?? 0));
      for (const { key } of this.users.getRange({})) void this.users.remove(key);
      for (const [userId, share] of shares) void this.users.put(userId, share);
      this.setCounters(next);
    });
  }
}

function lookupKeys(entry: { dedupeKey?: string; tags?: string[] }): string[] {
  return [...(entry.dedupeKey === undefined ? [] : [entry.dedupeKey]), ...(entry.tags ?? [])];
}

function withoutParking(stored: StoredEntry): Omit<StoredEntry, 'parkedAt' | 'reason'> {
  const { parkedAt: _at, reason: _reason, ...entry } = stored;
  return entry;
}

function decodeEntry(key: number, value: Buffer): BufferEntry {
  const stored = JSON.parse(value.toString('utf8')) as StoredEntry;
  return { key, bytes: value.length, ...withoutParking(stored) };
}
