/**
 * Request ids: a client's own `X-Request-Id` is kept when it is 1–128 characters of
 * `[A-Za-z0-9._:-]`; anything else is replaced by a UUIDv7 (unique, and sortable by time).
 */
import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { v7 as uuidv7 } from 'uuid';

export const REQUEST_ID_HEADER = 'x-request-id';
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && VALID_REQUEST_ID.test(value);
}

/** Fastify's `genReqId`: runs once per request, before any hook. */
export function requestIdFor(req: IncomingMessage): string {
  const candidate = req.headers[REQUEST_ID_HEADER];
  return isValidRequestId(candidate) ? candidate : uuidv7({ random: randomBytes16() });
}

// Random bytes for request ids, drawn from the system's CSPRNG 4 KiB at a time rather than
// 16 bytes per request.
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

function randomBytes16(): Uint8Array {
  if (offset + 16 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += 16;
  return pool.subarray(offset - 16, offset);
}
