/**
 * LmdbBuffer against a real LMDB environment in a temporary directory, opened as LmdbService
 * opens it (overlapping sync, several named databases).
 *
 * Covered: the queue (arrival order, bounds, dedupe keys, durability before `add` resolves,
 * reopening); parked entries (park, unpark, listParked, counted in the bounds and the shares,
 * still found by their dedupe keys and tags); each user's share (entries and bytes, exempt adds,
 * exact through park, set aside, remove, retry and reopen); set-aside writes and their own
 * bounds (count, bytes, age: the oldest dropped and returned), retried and dropped by an
 * operator; tags and queue keys; counters derived when missing, also from a buffer the previous
 * release wrote; and a model of the whole store checked through random sequences of operations.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import fc from 'fast-check';
import { open } from 'lmdb';
import type { RootDatabase } from 'lmdb';
import { v7 as uuidv7 } from 'uuid';
import { BufferFullError, UserShareExceededError } from './buffer.errors.js';
import { LmdbBuffer, type BufferBounds, type BufferEntry } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';

const ROOMY: BufferBounds = { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 };
const ALICE = '0190c0de-0000-7000-8000-000000000001';
const BOB = '0190c0de-0000-7000-8000-000000000002';

function openRoot(dir: string): RootDatabase {
  return open({ path: dir, maxDbs: 16, overlappingSync: true, compression: false });
}

function op(n: number, payload: unknown = { n }, userId = ALICE): BufferedOperation {
  return {
    id: uuidv7(),
    kind: 'test.append',
    userId,
    payload,
    acceptedAt: new Date().toISOString(),
    requestId: `req-${n}`,
  };
}

/** Size of the entry `buffer` stores for `operation`, to aim at the byte bound. */
async function sizeOf(operation: BufferedOperation): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'lmdb-buffer-size-'));
  const root = openRoot(dir);
  try {
    return (await new LmdbBuffer(root, ROOMY).add(operation)).entry.bytes;
  } finally {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a parked entry adds to the stored bytes: its `parkedAt` (13 digits) and its reason. */
function parkingBytes(reason: string): number {
  return Buffer.byteLength(`,"parkedAt":${Date.now()},"reason":${JSON.stringify(reason)}`);
}

describe('LmdbBuffer', () => {
  let dir: string;
  let root: RootDatabase;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'lmdb-buffer-'));
    root = openRoot(dir);
  });

  afterEach(async () => {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function reopen(bounds: BufferBounds = ROOMY): Promise<LmdbBuffer> {
    await root.close();
    root = openRoot(dir);
    return new LmdbBuffer(root, bounds);
  }

  async function addAll(buffer: LmdbBuffer, count: number, userId = ALICE): Promise<BufferEntry[]> {
    const entries: BufferEntry[] = [];
    for (let n = 0; n < count; n += 1) entries.push((await buffer.add(op(n, { n }, userId))).entry);
    return entries;
  }

  const sum = (entries: ReadonlyArray<{ bytes: number }>) => entries.reduce((total, entry) => total + entry.bytes, 0);

  describe('the queue', () => {
    it('starts empty', () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      expect(buffer.depth).toBe(0);
      expect(buffer.bytes).toBe(0);
      expect(buffer.isEmpty()).toBe(true);
      expect(buffer.isFull()).toBe(false);
      expect(buffer.getBatch(10)).toEqual([]);
      expect(buffer.oldestEnqueuedAt()).toBeNull();
    });

    it('returns entries in arrival order, also for adds that overlap', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const ops = Array.from({ length: 300 }, (_, n) => op(n));
      // Not awaited one by one: many adds share a commit, as concurrent requests do.
      const results = await Promise.all(ops.map((o) => buffer.add(o)));
      const keys = results.map((r) => r.entry.key);
      expect(keys).toEqual([...keys].sort((a, b) => a - b));
      expect(new Set(keys).size).toBe(ops.length);

      expect(buffer.getBatch(1_000).map((e) => e.op)).toEqual(ops);
      expect(buffer.getBatch(7).map((e) => e.op.id)).toEqual(ops.slice(0, 7).map((o) => o.id));
      expect(Array.from(buffer.queued(), (e) => e.op)).toEqual(ops);
      expect(buffer.depth).toBe(300);
      expect(buffer.bytes).toBe(results.reduce((sum, r) => sum + r.entry.bytes, 0));
    });

    it('does not consume on read; remove takes exactly the given keys and keeps the order of the rest', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const added = [];
      for (let n = 0; n < 6; n += 1) added.push((await buffer.add(op(n))).entry);
      expect(buffer.getBatch(3)).toEqual(buffer.getBatch(3));

      const removed = await buffer.remove([added[0]!.key, added[2]!.key, 999_999]);
      expect(removed).toBe(2);
      expect(buffer.getBatch(10).map((e) => e.key)).toEqual([
        added[1]!.key,
        added[3]!.key,
        added[4]!.key,
        added[5]!.key,
      ]);
      expect(buffer.depth).toBe(4);
      expect(buffer.bytes).toBe(
        added
          .slice(1)
          .filter((_, i) => i !== 1)
          .reduce((sum, e) => sum + e.bytes, 0),
      );
      expect(await buffer.remove([])).toBe(0);
    });

    it('reports the age of the oldest waiting entry', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const before = Date.now();
      const first = await buffer.add(op(1));
      await buffer.add(op(2));
      const oldest = buffer.oldestEnqueuedAt();
      expect(oldest).toBe(first.entry.enqueuedAt);
      expect(oldest).toBeGreaterThanOrEqual(before);
      await buffer.remove([first.entry.key]);
      expect(buffer.oldestEnqueuedAt()).toBeGreaterThanOrEqual(oldest!);
    });

    it('refuses an entry beyond BUFFER_MAX_ENTRIES, and takes one again once there is room', async () => {
      const buffer = new LmdbBuffer(root, { maxEntries: 3, maxBytes: ROOMY.maxBytes });
      const first = await buffer.add(op(1));
      await buffer.add(op(2));
      expect(buffer.isFull()).toBe(false);
      await buffer.add(op(3));
      expect(buffer.isFull()).toBe(true);

      const refused = buffer.add(op(4));
      await expect(refused).rejects.toBeInstanceOf(BufferFullError);
      await expect(refused).rejects.toMatchObject({ limit: 'entries' });
      expect(buffer.depth).toBe(3);
      expect(buffer.isEmpty()).toBe(false);

      await buffer.remove([first.entry.key]);
      expect(buffer.isFull()).toBe(false);
      await expect(buffer.add(op(5))).resolves.toMatchObject({ duplicate: false });
      expect(buffer.getBatch(10).map((e) => e.op.requestId)).toEqual(['req-2', 'req-3', 'req-5']);
    });

    it('refuses an entry beyond BUFFER_MAX_BYTES, while a smaller one still fits', async () => {
      const small = op(1, { text: 'x' });
      const large = op(2, { text: 'x'.repeat(2_000) });
      const smallBytes = await sizeOf(small);
      const buffer = new LmdbBuffer(root, { maxEntries: 100, maxBytes: smallBytes * 3 });

      await buffer.add(small);
      await expect(buffer.add(large)).rejects.toMatchObject({
        name: 'BufferFullError',
        limit: 'bytes',
      });
      await buffer.add(op(3, { text: 'y' }));
      await buffer.add(op(4, { text: 'z' }));
      expect(buffer.bytes).toBe(smallBytes * 3);
      expect(buffer.isFull()).toBe(true);
      await expect(buffer.add(op(5, { text: 'w' }))).rejects.toMatchObject({ limit: 'bytes' });
      expect(buffer.depth).toBe(3);
    });

    it('moves an entry to the dead-letter store with its error, out of the queue', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const a = await buffer.add(op(1));
      const b = await buffer.add(op(2));
      const c = await buffer.add(op(3));
      const error = Object.assign(new Error('new row violates check constraint "value_ok"'), {
        driverError: { code: '23514' },
      });

      await expect(buffer.deadLetter(b.entry.key, error)).resolves.toBe(true);
      expect(buffer.getBatch(10).map((e) => e.key)).toEqual([a.entry.key, c.entry.key]);
      expect(buffer.depth).toBe(2);
      expect(buffer.bytes).toBe(a.entry.bytes + c.entry.bytes);
      expect(buffer.deadLetterCount).toBe(1);
      const [letter, ...others] = buffer.listDeadLetters();
      expect(others).toEqual([]);
      expect(letter).toEqual({
        key: b.entry.key,
        op: b.entry.op,
        enqueuedAt: b.entry.enqueuedAt,
        deadLetteredAt: expect.any(Number),
        bytes: b.entry.bytes,
        error: {
          name: 'Error',
          message: 'new row violates check constraint "value_ok"',
          code: '23514',
        },
      });

      await expect(buffer.deadLetter(b.entry.key, error)).resolves.toBe(false);
      expect(buffer.deadLetterCount).toBe(1);
    });

    it('deduplicates by key while the first entry is queued, and forgets the key once it is removed', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const first = await buffer.add(op(1), { dedupeKey: 'k1' });
      const retry = await buffer.add(op(2), { dedupeKey: 'k1' });
      const other = await buffer.add(op(3), { dedupeKey: 'k2' });

      expect(first.duplicate).toBe(false);
      expect(retry).toEqual({ duplicate: true, entry: first.entry });
      expect(other.duplicate).toBe(false);
      expect(buffer.depth).toBe(2);
      expect([buffer.isQueuedUnder('k1'), buffer.isQueuedUnder('k2')]).toEqual([true, true]);
      expect(buffer.isQueuedUnder('k3')).toBe(false);

      await buffer.remove([first.entry.key]);
      expect(buffer.isQueuedUnder('k1')).toBe(false);
      const later = await buffer.add(op(4), { dedupeKey: 'k1' });
      expect(later.duplicate).toBe(false);
      expect(later.entry.key).toBeGreaterThan(other.entry.key);

      await buffer.deadLetter(other.entry.key, new Error('impossible'));
      expect((await buffer.add(op(5), { dedupeKey: 'k2' })).duplicate).toBe(false);
    });

    it('sets free the dedupe key of the entry under a released tag, once the releasing entry is added', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      await buffer.add(op(1), { dedupeKey: 'key', tags: ['task-1'] });
      const parkedCreate = await buffer.add(op(2), { dedupeKey: 'parked-key', tags: ['task-2'] });
      await buffer.park([{ key: parkedCreate.entry.key, reason: 'r' }]);

      const deletion = await buffer.add(op(3), { dedupeKey: 'delete-1', releases: ['task-1', 'task-2', 'no-such-tag'] });
      expect(deletion.duplicate).toBe(false);
      // The released entries stay queued (and found by their tags); only their keys went free.
      expect([buffer.isQueuedUnder('task-1'), buffer.isQueuedUnder('task-2')]).toEqual([true, true]);
      expect([buffer.isQueuedUnder('key'), buffer.isQueuedUnder('parked-key')]).toEqual([false, false]);

      const next = await buffer.add(op(4), { dedupeKey: 'key', tags: ['task-4'] });
      expect(next.duplicate).toBe(false);
      expect(await buffer.add(op(5), { dedupeKey: 'key' })).toEqual({ duplicate: true, entry: next.entry });
      // A repeated release of the old entry leaves the key with the entry that took it since.
      expect((await buffer.add(op(6), { dedupeKey: 'delete-1', releases: ['task-1'] })).duplicate).toBe(true);
      expect(buffer.queuedKeyOf('key')).toBe(next.entry.key);
      expect(buffer.depth).toBe(3);
    });

    it('resolves add only after the commit is flushed to disk, and counts it as not empty meanwhile', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      let release!: () => void;
      const gate = new Promise<boolean>((resolve) => (release = () => resolve(true)));
      // The environment's flush barrier, held back: as if the disk were slow to sync.
      Object.defineProperty(root, 'flushed', { configurable: true, get: () => gate });

      let settled = false;
      const adding = buffer.add(op(1)).then((result) => {
        settled = true;
        return result;
      });
      expect(buffer.isEmpty()).toBe(false);
      await waitFor(() => buffer.getBatch(1).length === 1); // committed and visible…
      await new Promise((r) => setTimeout(r, 50));
      expect(settled).toBe(false); // …but not acknowledged before the flush
      expect(buffer.isEmpty()).toBe(false);

      release();
      const { entry } = await adding;
      expect(settled).toBe(true);
      expect(buffer.getBatch(1)[0]!.key).toBe(entry.key);
    });

    it('reopens after close with the same entries, counters and dead letters, and keeps counting keys up', async () => {
      let buffer = new LmdbBuffer(root, ROOMY);
      const added = [];
      for (let n = 0; n < 8; n += 1)
        added.push((await buffer.add(op(n), { dedupeKey: `key-${n}` })).entry);
      await buffer.remove([added[0]!.key]);
      await buffer.deadLetter(added[7]!.key, new Error('gone'));
      const before = {
        batch: buffer.getBatch(100),
        depth: buffer.depth,
        bytes: buffer.bytes,
        dead: buffer.listDeadLetters(),
        deadCount: buffer.deadLetterCount,
        oldest: buffer.oldestEnqueuedAt(),
      };

      buffer = await reopen();
      expect({
        batch: buffer.getBatch(100),
        depth: buffer.depth,
        bytes: buffer.bytes,
        dead: buffer.listDeadLetters(),
        deadCount: buffer.deadLetterCount,
        oldest: buffer.oldestEnqueuedAt(),
      }).toEqual(before);
      expect(before.depth).toBe(6);

      // The dedupe keys of queued entries survive too; the key sequence continues past every key used.
      expect((await buffer.add(op(100), { dedupeKey: 'key-3' })).duplicate).toBe(true);
      const next = await buffer.add(op(101));
      expect(next.entry.key).toBeGreaterThan(added[7]!.key);
    });
  });

  describe('parked entries', () => {
    it('leave the queue for the parked store with their reason, counted apart, their stored form a little larger', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const [a, b, c, d] = await addAll(buffer, 4);
      const before = Date.now();

      await expect(buffer.park([{ key: c!.key, reason: 'task x is still being created' }, { key: a!.key, reason: 'waits' }, { key: 999, reason: 'gone' }])).resolves.toBe(2);

      expect(buffer.getBatch(10).map((entry) => entry.key)).toEqual([b!.key, d!.key]);
      expect(buffer.listParked()).toEqual([
        { ...a!, bytes: a!.bytes + parkingBytes('waits'), parkedAt: expect.any(Number), reason: 'waits' },
        { ...c!, bytes: c!.bytes + parkingBytes('task x is still being created'), parkedAt: expect.any(Number), reason: 'task x is still being created' },
      ]);
      expect(buffer.listParked()[0]!.parkedAt).toBeGreaterThanOrEqual(before);
      expect({ depth: buffer.depth, parked: buffer.parkedCount }).toEqual({ depth: 2, parked: 2 });
      expect(buffer.bytes).toBe(sum([b!, d!]) + sum(buffer.listParked()));
      expect(buffer.listParked(1)).toHaveLength(1);
      await expect(buffer.park([])).resolves.toBe(0);
      // Parking a parked entry again does nothing.
      await expect(buffer.park([{ key: a!.key, reason: 'again' }])).resolves.toBe(0);
    });

    it('go back to the queue under their own keys, as they were, when unparked', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const entries = await addAll(buffer, 4);
      await buffer.park([{ key: entries[0]!.key, reason: 'r' }, { key: entries[2]!.key, reason: 'r' }]);

      await expect(buffer.unpark([entries[0]!.key, 999])).resolves.toBe(1);

      expect(buffer.getBatch(10)).toEqual([entries[0], entries[1], entries[3]]);
      expect(buffer.listParked().map((entry) => entry.key)).toEqual([entries[2]!.key]);
      expect(buffer.depth).toBe(3);
      expect(buffer.parkedCount).toBe(1);
      await buffer.unpark([entries[2]!.key]);
      expect(buffer.getBatch(10)).toEqual(entries);
      expect(buffer.bytes).toBe(sum(entries));
      await expect(buffer.unpark([])).resolves.toBe(0);
    });

    it('leave the queue empty but the buffer holding writes', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const [entry] = await addAll(buffer, 1);
      expect([buffer.isEmpty(), buffer.holdsNothing()]).toEqual([false, false]);

      await buffer.park([{ key: entry!.key, reason: 'r' }]);
      expect([buffer.isEmpty(), buffer.holdsNothing()]).toEqual([true, false]);
      expect(buffer.oldestEnqueuedAt()).toBe(entry!.enqueuedAt);

      await expect(buffer.remove([entry!.key])).resolves.toBe(1);
      expect([buffer.isEmpty(), buffer.holdsNothing()]).toEqual([true, true]);
      expect(buffer.parkedCount).toBe(0);
      expect(buffer.bytes).toBe(0);
    });

    it('are still found by their dedupe keys and tags, and answer a retry as duplicates', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const first = await buffer.add(op(1), { dedupeKey: 'k1', tags: ['t1'] });
      await buffer.park([{ key: first.entry.key, reason: 'r' }]);

      expect(buffer.queuedKeyOf('k1')).toBe(first.entry.key);
      expect(buffer.isQueuedUnder('t1')).toBe(true);
      await expect(buffer.add(op(2), { dedupeKey: 'k1' })).resolves.toMatchObject({ duplicate: true, entry: { key: first.entry.key, op: first.entry.op } });
      expect(buffer.depth).toBe(0);
    });

    it('count against the bounds of the whole buffer', async () => {
      const buffer = new LmdbBuffer(root, { maxEntries: 2, maxBytes: ROOMY.maxBytes });
      const [a] = await addAll(buffer, 2);
      await buffer.park([{ key: a!.key, reason: 'r' }]);

      expect(buffer.isFull()).toBe(true);
      await expect(buffer.add(op(3))).rejects.toMatchObject({ name: 'BufferFullError', limit: 'entries' });
    });

    it('survive a reopen with their reasons and counts', async () => {
      let buffer = new LmdbBuffer(root, ROOMY);
      const entries = await addAll(buffer, 3);
      await buffer.park([{ key: entries[1]!.key, reason: 'waits for its create' }]);
      const before = { parked: buffer.listParked(), queued: buffer.getBatch(10), bytes: buffer.bytes, shares: buffer.shareOf(ALICE) };

      buffer = await reopen();
      expect({ parked: buffer.listParked(), queued: buffer.getBatch(10), bytes: buffer.bytes, shares: buffer.shareOf(ALICE) }).toEqual(before);
      expect(buffer.parkedCount).toBe(1);
    });
  });

  describe("each user's share", () => {
    it("counts a user's queued entries and bytes, and refuses one past either bound while others still get in", async () => {
      const bytes = await sizeOf(op(1));
      const buffer = new LmdbBuffer(root, { ...ROOMY, userMaxEntries: 2 });
      const entries = await addAll(buffer, 2);
      expect(buffer.shareOf(ALICE)).toEqual({ entries: 2, bytes: sum(entries) });
      expect(sum(entries)).toBe(2 * bytes);

      await expect(buffer.add(op(3))).rejects.toBeInstanceOf(UserShareExceededError);
      await expect(buffer.add(op(4, { n: 4 }, BOB))).resolves.toMatchObject({ duplicate: false });
      expect(buffer.shareOf(BOB)).toEqual({ entries: 1, bytes: expect.any(Number) });
      expect(buffer.depth).toBe(3);

      const bytesBound = new LmdbBuffer(root, { ...ROOMY, userMaxBytes: buffer.bytes + 2 * bytes });
      await expect(bytesBound.add(op(5, { n: 5 }, BOB))).resolves.toMatchObject({ duplicate: false });
      await expect(bytesBound.add(op(6, { text: 'x'.repeat(bytes) }, BOB))).resolves.toMatchObject({ duplicate: false });
      await expect(bytesBound.add(op(7, { text: 'x'.repeat(5 * bytes) }, BOB))).rejects.toBeInstanceOf(UserShareExceededError);
    });

    it('answers a full buffer before a used-up share', async () => {
      const buffer = new LmdbBuffer(root, { maxEntries: 1, maxBytes: ROOMY.maxBytes, userMaxEntries: 1 });
      await addAll(buffer, 1);
      await expect(buffer.add(op(2))).rejects.toBeInstanceOf(BufferFullError);
    });

    it('takes an exempt entry (handed over) past the share, and counts it in the share', async () => {
      const buffer = new LmdbBuffer(root, { ...ROOMY, userMaxEntries: 1 });
      const [mine] = await addAll(buffer, 1);
      const handed = await buffer.add(op(2), { exemptFromShare: true });

      expect(buffer.shareOf(ALICE)).toEqual({ entries: 2, bytes: mine!.bytes + handed.entry.bytes });
      await expect(buffer.add(op(3))).rejects.toBeInstanceOf(UserShareExceededError);
    });

    it('stays exact through park, unpark, set aside, remove, retry and reopen', async () => {
      let buffer = new LmdbBuffer(root, { ...ROOMY, userMaxEntries: 10 });
      const alice = await addAll(buffer, 4, ALICE);
      const bob = await addAll(buffer, 2, BOB);
      const shareFromStore = (userId: string) => {
        const held = [...buffer.getBatch(100), ...buffer.listParked()].filter((entry) => entry.op.userId === userId);
        return held.length === 0 ? { entries: 0, bytes: 0 } : { entries: held.length, bytes: sum(held) };
      };
      const check = () => {
        for (const userId of [ALICE, BOB]) expect(buffer.shareOf(userId)).toEqual(shareFromStore(userId));
      };

      await buffer.park([{ key: alice[0]!.key, reason: 'waits' }, { key: bob[0]!.key, reason: 'waits too' }]);
      check();
      expect(buffer.shareOf(ALICE).bytes).toBeGreaterThan(sum(alice));
      await buffer.setAside([{ key: alice[0]!.key, error: new Error('gone') }, { key: alice[1]!.key, error: new Error('gone') }]);
      check();
      await buffer.unpark([bob[0]!.key]);
      check();
      await buffer.remove([bob[0]!.key, bob[1]!.key]);
      check();
      expect(buffer.shareOf(BOB)).toEqual({ entries: 0, bytes: 0 });
      await buffer.retryDeadLetter(alice[0]!.key);
      check();
      buffer = await reopen({ ...ROOMY, userMaxEntries: 10 });
      check();
      expect(buffer.shareOf(ALICE).entries).toBe(3);
    });
  });

  describe('set-aside writes', () => {
    it('leave the queue and the parked store in one call, are counted apart and not against the live bounds', async () => {
      const buffer = new LmdbBuffer(root, { maxEntries: 3, maxBytes: ROOMY.maxBytes });
      const entries = await addAll(buffer, 3);
      await buffer.park([{ key: entries[2]!.key, reason: 'r' }]);
      const parkedBytes = buffer.listParked()[0]!.bytes;
      expect(buffer.hasRoomFor(1)).toBe(false);

      const result = await buffer.setAside([
        { key: entries[0]!.key, error: new Error('never created') },
        { key: entries[2]!.key, error: new Error('deleted') },
        { key: 999, error: new Error('not there') },
      ]);

      expect(result).toEqual({ moved: 2, dropped: [] });
      expect(buffer.getBatch(10).map((entry) => entry.key)).toEqual([entries[1]!.key]);
      expect(buffer.parkedCount).toBe(0);
      expect(buffer.deadLetterCount).toBe(2);
      expect(buffer.deadLetterBytes).toBe(entries[0]!.bytes + parkedBytes);
      expect(buffer.listDeadLetters().map((letter) => [letter.key, letter.error.message, letter.bytes])).toEqual([
        [entries[0]!.key, 'never created', entries[0]!.bytes],
        [entries[2]!.key, 'deleted', parkedBytes],
      ]);
      expect(buffer.hasRoomFor(1)).toBe(true);
      expect(buffer.bytes).toBe(entries[1]!.bytes);
      await expect(buffer.setAside([])).resolves.toEqual({ moved: 0, dropped: [] });
    });

    it('are listed from a key on, and read one by one', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const entries = await addAll(buffer, 4);
      await buffer.setAside(entries.map((entry) => ({ key: entry.key, error: new Error('x') })));

      expect(buffer.listDeadLetters(2).map((letter) => letter.key)).toEqual([entries[0]!.key, entries[1]!.key]);
      expect(buffer.listDeadLetters(10, entries[1]!.key).map((letter) => letter.key)).toEqual([entries[2]!.key, entries[3]!.key]);
      expect(buffer.getDeadLetter(entries[3]!.key)).toMatchObject({ key: entries[3]!.key, op: entries[3]!.op });
      expect(buffer.getDeadLetter(999)).toBeUndefined();
    });

    it('keep within their count: the oldest are dropped and returned', async () => {
      const buffer = new LmdbBuffer(root, { ...ROOMY, setAsideMaxEntries: 2 });
      const entries = await addAll(buffer, 4);
      await buffer.setAside([{ key: entries[1]!.key, error: new Error('x') }]);

      const { moved, dropped } = await buffer.setAside([
        { key: entries[3]!.key, error: new Error('x') },
        { key: entries[0]!.key, error: new Error('x') },
      ]);

      expect(moved).toBe(2);
      expect(dropped.map((letter) => letter.key)).toEqual([entries[0]!.key]);
      expect(dropped[0]).toMatchObject({ op: entries[0]!.op, bytes: entries[0]!.bytes });
      expect(buffer.listDeadLetters().map((letter) => letter.key)).toEqual([entries[1]!.key, entries[3]!.key]);
      expect(buffer.deadLetterCount).toBe(2);
      expect(buffer.deadLetterBytes).toBe(entries[1]!.bytes + entries[3]!.bytes);
    });

    it('keep within their bytes: the oldest are dropped until the rest fits', async () => {
      const bytes = await sizeOf(op(0));
      const buffer = new LmdbBuffer(root, { ...ROOMY, setAsideMaxBytes: 2 * bytes });
      const entries = await addAll(buffer, 3);
      expect(entries.every((entry) => entry.bytes === bytes)).toBe(true);

      const { dropped } = await buffer.setAside(entries.map((entry) => ({ key: entry.key, error: new Error('x') })));

      expect(dropped.map((letter) => letter.key)).toEqual([entries[0]!.key]);
      expect(buffer.deadLetterBytes).toBe(2 * bytes);
    });

    it('keep within their age: those set aside longer ago are dropped, when more are set aside or on expiry', async () => {
      const buffer = new LmdbBuffer(root, { ...ROOMY, setAsideMaxAgeMs: 60_000 });
      const entries = await addAll(buffer, 4);
      const now = Date.now();
      const clock = jest.spyOn(Date, 'now');
      try {
        clock.mockReturnValue(now - 100_000);
        await buffer.setAside([{ key: entries[0]!.key, error: new Error('old') }]);
        clock.mockReturnValue(now - 50_000);
        await expect(buffer.setAside([{ key: entries[1]!.key, error: new Error('recent') }])).resolves.toEqual({ moved: 1, dropped: [] });
        clock.mockReturnValue(now);
        const { dropped } = await buffer.setAside([{ key: entries[2]!.key, error: new Error('new') }]);
        expect(dropped.map((letter) => letter.key)).toEqual([entries[0]!.key]);
      } finally {
        clock.mockRestore();
      }

      await expect(buffer.expireSetAside(now + 1_000)).resolves.toEqual([]);
      const expired = await buffer.expireSetAside(now + 20_000);
      expect(expired.map((letter) => letter.key)).toEqual([entries[1]!.key]);
      expect(buffer.listDeadLetters().map((letter) => letter.key)).toEqual([entries[2]!.key]);
      expect(buffer.deadLetterCount).toBe(1);
    });

    it('go back to the front of the queue under their own keys on an operator\'s retry, within the bounds', async () => {
      const buffer = new LmdbBuffer(root, { maxEntries: 3, maxBytes: ROOMY.maxBytes });
      const entries = await addAll(buffer, 2);
      await buffer.add(op(9), { dedupeKey: 'k9' });
      await buffer.setAside([{ key: entries[0]!.key, error: new Error('x') }]);
      await buffer.add(op(10));

      await expect(buffer.retryDeadLetter(entries[0]!.key)).rejects.toBeInstanceOf(BufferFullError);
      expect(buffer.deadLetterCount).toBe(1);
      expect(buffer.depth).toBe(3);

      await buffer.remove([buffer.getBatch(10).at(-1)!.key]);
      await expect(buffer.retryDeadLetter(entries[0]!.key)).resolves.toBe(true);
      const [front] = buffer.getBatch(10);
      expect(front).toMatchObject({ key: entries[0]!.key, op: entries[0]!.op });
      expect(front!.enqueuedAt).toBeGreaterThanOrEqual(entries[0]!.enqueuedAt);
      expect(buffer.deadLetterCount).toBe(0);
      expect(buffer.deadLetterBytes).toBe(0);
      expect(buffer.bytes).toBe(sum(buffer.getBatch(10)));
      await expect(buffer.retryDeadLetter(entries[0]!.key)).resolves.toBe(false);
    });

    it('are deleted for good when dropped', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const entries = await addAll(buffer, 2);
      await buffer.setAside(entries.map((entry) => ({ key: entry.key, error: new Error('x') })));

      await expect(buffer.dropDeadLetter(entries[0]!.key)).resolves.toBe(true);
      await expect(buffer.dropDeadLetter(entries[0]!.key)).resolves.toBe(false);
      expect(buffer.listDeadLetters().map((letter) => letter.key)).toEqual([entries[1]!.key]);
      expect(buffer.deadLetterCount).toBe(1);
      expect(buffer.deadLetterBytes).toBe(entries[1]!.bytes);
      expect(buffer.depth).toBe(0);
    });
  });

  describe('tags and queue keys', () => {
    it('find a waiting entry by any of its tags or its dedupe key, until it leaves the queue', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      await addAll(buffer, 2);
      const { entry } = await buffer.add(op(3), { dedupeKey: 'd', tags: ['t1', 't2'] });

      for (const lookup of ['d', 't1', 't2']) {
        expect(buffer.queuedKeyOf(lookup)).toBe(entry.key);
        expect(buffer.isQueuedUnder(lookup)).toBe(true);
      }
      expect(buffer.getBatch(10).at(-1)).toEqual({ ...entry, tags: ['t1', 't2'] });
      expect(buffer.queuedKeyOf('t3')).toBeUndefined();

      await buffer.setAside([{ key: entry.key, error: new Error('x') }]);
      for (const lookup of ['d', 't1', 't2']) expect(buffer.queuedKeyOf(lookup)).toBeUndefined();
    });

    it('are forgotten with a removed entry, and a later entry takes them over', async () => {
      const buffer = new LmdbBuffer(root, ROOMY);
      const first = await buffer.add(op(1), { tags: ['t'] });
      await buffer.remove([first.entry.key]);
      expect(buffer.isQueuedUnder('t')).toBe(false);

      const second = await buffer.add(op(2), { tags: ['t'] });
      expect(buffer.queuedKeyOf('t')).toBe(second.entry.key);
    });
  });

  describe('room', () => {
    it('has room for an entry while both bounds leave space for it', async () => {
      const bytes = await sizeOf(op(0));
      const buffer = new LmdbBuffer(root, { maxEntries: 3, maxBytes: 2 * bytes + 10 });
      expect(buffer.hasRoomFor(2 * bytes + 10)).toBe(true);
      expect(buffer.hasRoomFor(2 * bytes + 11)).toBe(false);
      await addAll(buffer, 2);
      expect(buffer.hasRoomFor(10)).toBe(true);
      expect(buffer.hasRoomFor(11)).toBe(false);
      expect(buffer.isFull()).toBe(false);
      expect(buffer.limits).toEqual({ maxEntries: 3, maxBytes: 2 * bytes + 10 });
    });
  });

  describe('counters derived when missing', () => {
    it('from what is stored: queued, parked, set aside, each user\'s share, and the key sequence', async () => {
      let buffer = new LmdbBuffer(root, ROOMY);
      const entries = [...(await addAll(buffer, 3, ALICE)), ...(await addAll(buffer, 2, BOB))];
      await buffer.park([{ key: entries[1]!.key, reason: 'r' }]);
      await buffer.setAside([{ key: entries[4]!.key, error: new Error('x') }]);
      const observe = (b: LmdbBuffer) => ({
        depth: b.depth,
        parked: b.parkedCount,
        bytes: b.bytes,
        dead: b.deadLetterCount,
        deadBytes: b.deadLetterBytes,
        alice: b.shareOf(ALICE),
        bob: b.shareOf(BOB),
      });
      const expected = observe(buffer);
      const meta = root.openDB<unknown, string>({ name: 'buffer.meta', encoding: 'json' });
      const users = root.openDB<unknown, string>({ name: 'buffer.users', encoding: 'json' });
      await root.transaction(() => {
        for (const key of ['seq', 'counters']) void meta.remove(key);
        void users.put(ALICE, { entries: 99, bytes: 99 });
      });

      buffer = await reopen();
      expect(observe(buffer)).toEqual(expected);
      expect((await buffer.add(op(6))).entry.key).toBeGreaterThan(entries[4]!.key);
    });

    it("from a buffer the previous release wrote (counters under 'depth', 'bytes', 'dead'; dead letters without bytes)", async () => {
      const queue = root.openDB<Buffer, number>({ name: 'buffer.queue', encoding: 'binary' });
      const deadLetters = root.openDB<unknown, number>({ name: 'buffer.dead-letters', encoding: 'json' });
      const dedupe = root.openDB<number, string>({ name: 'buffer.dedupe', encoding: 'json' });
      const meta = root.openDB<number, string>({ name: 'buffer.meta', encoding: 'json' });
      const stored = [
        { key: 3, value: { op: op(3, { n: 3 }, ALICE), enqueuedAt: 1_700_000_000_000, dedupeKey: 'old-key' } },
        { key: 5, value: { op: op(5, { n: 5 }, BOB), enqueuedAt: 1_700_000_000_100 } },
        { key: 6, value: { op: op(6, { n: 6 }, ALICE), enqueuedAt: 1_700_000_000_200 } },
      ].map(({ key, value }) => ({ key, raw: Buffer.from(JSON.stringify(value)) }));
      const letter = { op: op(4), error: { name: 'Error', message: 'gone' }, enqueuedAt: 1_700_000_000_050, deadLetteredAt: 1_700_000_001_000 };
      await root.transaction(() => {
        for (const { key, raw } of stored) void queue.put(key, raw);
        void deadLetters.put(4, letter);
        void dedupe.put('old-key', 3);
        void meta.put('seq', 7);
        void meta.put('depth', 3);
        void meta.put('bytes', stored.reduce((total, { raw }) => total + raw.length, 0));
        void meta.put('dead', 1);
      });

      const buffer = await reopen();

      expect(buffer.depth).toBe(3);
      expect(buffer.bytes).toBe(stored.reduce((total, { raw }) => total + raw.length, 0));
      expect(buffer.parkedCount).toBe(0);
      expect(buffer.deadLetterCount).toBe(1);
      expect(buffer.deadLetterBytes).toBe(0);
      expect(buffer.shareOf(ALICE)).toEqual({ entries: 2, bytes: stored[0]!.raw.length + stored[2]!.raw.length });
      expect(buffer.shareOf(BOB)).toEqual({ entries: 1, bytes: stored[1]!.raw.length });
      expect(buffer.getBatch(10).map((entry) => entry.key)).toEqual([3, 5, 6]);
      expect(buffer.queuedKeyOf('old-key')).toBe(3);
      expect(buffer.listDeadLetters()).toEqual([{ key: 4, ...letter }]);
      // The key sequence goes on past the previous release's.
      expect((await buffer.add(op(8))).entry.key).toBe(8);
      // A dead letter without bytes retried or dropped leaves the counters whole.
      await expect(buffer.dropDeadLetter(4)).resolves.toBe(true);
      expect({ dead: buffer.deadLetterCount, deadBytes: buffer.deadLetterBytes }).toEqual({ dead: 0, deadBytes: 0 });
    });
  });

  it('matches a model of its stores through any sequence of adds, removals, parking, setting aside and retries, before and after reopening', async () => {
    type Step =
      | { type: 'add'; size: number; dedupe: number | null; user: 0 | 1 }
      | { type: 'remove'; count: number }
      | { type: 'park'; index: number; reason: string }
      | { type: 'unpark'; index: number }
      | { type: 'set-aside'; index: number; parked: boolean }
      | { type: 'retry'; index: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          type: fc.constant('add' as const),
          size: fc.integer({ min: 0, max: 300 }),
          dedupe: fc.option(fc.integer({ min: 0, max: 3 })),
          user: fc.constantFrom(0 as const, 1 as const),
        }),
      },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('remove' as const), count: fc.integer({ min: 1, max: 3 }) }) },
      { weight: 2, arbitrary: fc.record({ type: fc.constant('park' as const), index: fc.nat(), reason: fc.string({ maxLength: 20 }) }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('unpark' as const), index: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('set-aside' as const), index: fc.nat(), parked: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('retry' as const), index: fc.nat() }) },
    );
    const bounds: BufferBounds = { maxEntries: 8, maxBytes: 2_200, userMaxEntries: 5, userMaxBytes: 1_500, setAsideMaxEntries: 3 };
    const users = [ALICE, BOB];

    interface Held {
      key: number;
      op: BufferedOperation;
      bytes: number;
      dedupe: number | null;
    }

    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (steps) => {
        await root.close();
        rmSync(dir, { recursive: true, force: true });
        root = openRoot(dir);
        let buffer = new LmdbBuffer(root, bounds);
        let queued: Held[] = [];
        let parked: Held[] = [];
        let dead: Held[] = [];
        let n = 0;
        const byKey = (a: Held, b: Held) => a.key - b.key;
        const held = () => [...queued, ...parked];
        const shareOf = (userId: string) => {
          const mine = held().filter((entry) => entry.op.userId === userId);
          return mine.length === 0 ? { entries: 0, bytes: 0 } : { entries: mine.length, bytes: sum(mine) };
        };
        const keepSetAsideBound = () => {
          dead.sort(byKey);
          while (dead.length > bounds.setAsideMaxEntries!) dead.shift();
        };

        for (const s of steps) {
          if (s.type === 'add') {
            const o = op((n += 1), { text: 'x'.repeat(s.size) }, users[s.user]);
            const dedupeKey = s.dedupe === null ? undefined : `d${s.dedupe}`;
            const original = held().find((entry) => entry.dedupe !== null && entry.dedupe === s.dedupe);
            // The stored form: the operation, its enqueue time (13 digits for centuries) and its dedupe key.
            const size = Buffer.byteLength(JSON.stringify({ op: o, enqueuedAt: Date.now(), ...(dedupeKey ? { dedupeKey } : {}) }));
            const share = shareOf(o.userId);
            const adding = buffer.add(o, { dedupeKey });
            if (original) {
              await expect(adding).resolves.toMatchObject({ duplicate: true, entry: { key: original.key } });
            } else if (held().length + 1 > bounds.maxEntries || sum(held()) + size > bounds.maxBytes) {
              await expect(adding).rejects.toBeInstanceOf(BufferFullError);
            } else if (share.entries + 1 > bounds.userMaxEntries! || share.bytes + size > bounds.userMaxBytes!) {
              await expect(adding).rejects.toBeInstanceOf(UserShareExceededError);
            } else {
              const { entry, duplicate } = await adding;
              expect({ duplicate, bytes: entry.bytes }).toEqual({ duplicate: false, bytes: size });
              queued.push({ key: entry.key, op: o, bytes: size, dedupe: s.dedupe });
            }
          } else if (s.type === 'remove') {
            const taken = queued.splice(0, s.count);
            expect(await buffer.remove(taken.map((entry) => entry.key))).toBe(taken.length);
          } else if (s.type === 'park' && queued.length > 0) {
            const [entry] = queued.splice(s.index % queued.length, 1);
            expect(await buffer.park([{ key: entry!.key, reason: s.reason }])).toBe(1);
            parked = [...parked, { ...entry!, bytes: entry!.bytes + parkingBytes(s.reason) }].sort(byKey);
          } else if (s.type === 'unpark' && parked.length > 0) {
            const [entry] = parked.splice(s.index % parked.length, 1);
            expect(await buffer.unpark([entry!.key])).toBe(1);
            const original = Buffer.byteLength(JSON.stringify({ op: entry!.op, enqueuedAt: Date.now(), ...(entry!.dedupe === null ? {} : { dedupeKey: `d${entry!.dedupe}` }) }));
            queued = [...queued, { ...entry!, bytes: original }].sort(byKey);
          } else if (s.type === 'set-aside') {
            const from = s.parked ? parked : queued;
            if (from.length === 0) continue;
            const [entry] = from.splice(s.index % from.length, 1);
            const { moved } = await buffer.setAside([{ key: entry!.key, error: new Error('impossible') }]);
            expect(moved).toBe(1);
            dead.push(entry!);
            keepSetAsideBound();
          } else if (s.type === 'retry' && dead.length > 0) {
            const [letter] = dead.splice(s.index % dead.length, 1);
            // Back in the queue without its dedupe key, under the bounds of the whole buffer (not the share).
            const size = Buffer.byteLength(JSON.stringify({ op: letter!.op, enqueuedAt: Date.now() }));
            if (held().length + 1 > bounds.maxEntries || sum(held()) + size > bounds.maxBytes) {
              await expect(buffer.retryDeadLetter(letter!.key)).rejects.toBeInstanceOf(BufferFullError);
              dead = [...dead, letter!].sort(byKey);
            } else {
              await expect(buffer.retryDeadLetter(letter!.key)).resolves.toBe(true);
              queued = [...queued, { ...letter!, bytes: size, dedupe: null }].sort(byKey);
            }
          }
          expect(buffer.getBatch(100).map((entry) => entry.op.id)).toEqual(queued.map((entry) => entry.op.id));
          expect(buffer.listParked().map((entry) => entry.op.id)).toEqual(parked.map((entry) => entry.op.id));
        }
        const expected = {
          queued: queued.map((entry) => entry.key),
          parked: parked.map((entry) => entry.key),
          dead: dead.map((entry) => entry.key),
          depth: queued.length,
          parkedCount: parked.length,
          bytes: sum(held()),
          deadCount: dead.length,
          deadBytes: sum(dead),
          shares: users.map(shareOf),
        };
        const observe = (b: LmdbBuffer) => ({
          queued: b.getBatch(100).map((entry) => entry.key),
          parked: b.listParked().map((entry) => entry.key),
          dead: b.listDeadLetters().map((letter) => letter.key),
          depth: b.depth,
          parkedCount: b.parkedCount,
          bytes: b.bytes,
          deadCount: b.deadLetterCount,
          deadBytes: b.deadLetterBytes,
          shares: users.map((userId) => b.shareOf(userId)),
        });
        expect(observe(buffer)).toEqual(expected);
        buffer = await reopen(bounds);
        expect(observe(buffer)).toEqual(expected);
      }),
      { numRuns: 40 },
    );
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
