/**
 * Request ids: a client's own `X-Request-Id` is kept when it is 1–128 characters of
 * `[A-Za-z0-9._:-]`; anything else is replaced by a UUIDv7 (unique, and sortable by time).
 */
import type { IncomingMessage } from 'node:http';
import { newId } from '../util/ids.js';

export const REQUEST_ID_HEADER = 'x-request-id';
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && VALID_REQUEST_ID.test(value);
}

/** Fastify's `genReqId`: runs once per request, before any hook. */
export function requestIdFor(req: IncomingMessage): string {
  const candidate = req.headers[REQUEST_ID_HEADER];
  return isValidRequestId(candidate) ? candidate : newId();
}

