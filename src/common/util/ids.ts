/**
 * UUIDv7 ids (unique, sortable by creation time), as `uuid`'s v7 makes them, monotonic within
 * this process, with their random bytes drawn from the system's CSPRNG 4 KiB at a time rather
 * than by one call per id.
 */
import { randomFillSync } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;
let lastMsecs = -Infinity;
let seq = 0;

export function newId(): string {
  const random = randomBytes16();
  const now = Date.now();
  if (now > lastMsecs) {
    // A fresh millisecond starts its 31-bit sequence at a random point, as `uuid` does.
    seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
    lastMsecs = now;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMsecs++;
  }
  return uuidv7({ random, msecs: lastMsecs, seq });
}

function randomBytes16(): Uint8Array {
  if (offset + 16 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += 16;
  return pool.subarray(offset - 16, offset);
}
