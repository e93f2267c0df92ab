/**
 * LmdbBuffer against a real LMDB environment in a temporary directory, opened as LmdbService
 * opens it (overlapping sync, several named databases).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { open } from 'lmdb';
import type { RootDatabase } from 'lmdb';
import { v7 as uuidv7 } from 'uuid';
import { BufferFullError } from './buffer.errors.js';
import { LmdbBuffer, type BufferBounds } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';

const ROOMY: BufferBounds = { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 };

function openRoot(dir: string): RootDatabase {
  return open({ path: dir, maxDbs: 16, overlappingSync: true, compression: false });
}

function op(n: number, payload: unknown = { n }): BufferedOperation {
  return {
    id: uuidv7(),
    kind: 'test.append',
    userId: '0190c0de-0000-7000-8000-000000000001',
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

  it('derives its counters from the stored entries when they are missing', async () => {
    let buffer = new LmdbBuffer(root, ROOMY);
    for (let n = 0; n < 5; n += 1) await buffer.add(op(n));
    const last = (await buffer.add(op(5))).entry;
    await buffer.deadLetter(last.key, new Error('gone'));
    const expected = { depth: buffer.depth, bytes: buffer.bytes, dead: buffer.deadLetterCount };
    const meta = root.openDB<number, string>({ name: 'buffer.meta', encoding: 'json' });
    await root.transaction(() => {
      for (const key of ['seq', 'depth', 'bytes', 'dead']) void meta.remove(key);
    });

    buffer = await reopen();
    expect({ depth: buffer.depth, bytes: buffer.bytes, dead: buffer.deadLetterCount }).toEqual(
      expected,
    );
    expect((await buffer.add(op(6))).entry.key).toBeGreaterThan(last.key);
  });

  it('matches a model of its queue through any sequence of adds, removals and dead letters, before and after reopening', async () => {
    type Step =
      | { type: 'add'; size: number; dedupe: number | null }
      | { type: 'remove'; count: number }
      | { type: 'dead'; index: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          type: fc.constant('add' as const),
          size: fc.integer({ min: 0, max: 300 }),
          dedupe: fc.option(fc.integer({ min: 0, max: 3 })),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          type: fc.constant('remove' as const),
          count: fc.integer({ min: 1, max: 4 }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('dead' as const), index: fc.nat() }) },
    );
    const bounds: BufferBounds = { maxEntries: 8, maxBytes: 1_500 };

    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 25 }), async (steps) => {
        await root.close();
        rmSync(dir, { recursive: true, force: true });
        root = openRoot(dir);
        let buffer = new LmdbBuffer(root, bounds);
        const model: { key: number; id: string; bytes: number; dedupe: number | null }[] = [];
        let dead = 0;
        let n = 0;
        for (const s of steps) {
          if (s.type === 'add') {
            const o = op((n += 1), { text: 'x'.repeat(s.size) });
            const dedupeKey = s.dedupe === null ? undefined : `d${s.dedupe}`;
            const queued = model.find((m) => m.dedupe !== null && m.dedupe === s.dedupe);
            const depth = model.length;
            const bytes = model.reduce((sum, m) => sum + m.bytes, 0);
            // The stored form: the operation, its enqueue time (13 digits for centuries) and its dedupe key.
            const size = Buffer.byteLength(
              JSON.stringify({
                op: o,
                enqueuedAt: Date.now(),
                ...(dedupeKey ? { dedupeKey } : {}),
              }),
            );
            const fits = depth + 1 <= bounds.maxEntries && bytes + size <= bounds.maxBytes;
            if (queued || fits) {
              const result = await buffer.add(o, { dedupeKey });
              if (queued) {
                expect(result).toMatchObject({ duplicate: true, entry: { key: queued.key } });
              } else {
                expect(result).toMatchObject({ duplicate: false, entry: { bytes: size } });
                model.push({ key: result.entry.key, id: o.id, bytes: size, dedupe: s.dedupe });
              }
            } else {
              await expect(buffer.add(o, { dedupeKey })).rejects.toBeInstanceOf(BufferFullError);
            }
          } else if (s.type === 'remove') {
            const taken = model.splice(0, s.count);
            expect(await buffer.remove(taken.map((m) => m.key))).toBe(taken.length);
          } else if (model.length > 0) {
            const [victim] = model.splice(s.index % model.length, 1);
            expect(await buffer.deadLetter(victim!.key, new Error('impossible'))).toBe(true);
            dead += 1;
          }
          expect(buffer.getBatch(100).map((e) => e.op.id)).toEqual(model.map((m) => m.id));
        }
        const expected = {
          ids: model.map((m) => m.id),
          depth: model.length,
          bytes: model.reduce((sum, m) => sum + m.bytes, 0),
          dead,
        };
        const observe = (b: LmdbBuffer) => ({
          ids: b.getBatch(100).map((e) => e.op.id),
          depth: b.depth,
          bytes: b.bytes,
          dead: b.deadLetterCount,
        });
        expect(observe(buffer)).toEqual(expected);
        buffer = await reopen(bounds);
        expect(observe(buffer)).toEqual(expected);
      }),
      { numRuns: 30 },
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
