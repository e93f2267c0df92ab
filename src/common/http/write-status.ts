/**
 * How a write that went to the offline buffer instead of PostgreSQL is answered: 202 Accepted
 * with `X-Write-Status: buffered` (docs/architecture.md, "The write path and the buffer"). The 202 is a
 * promise: the write is on disk and will be applied exactly once, in the order accepted.
 */
import type { FastifyReply } from 'fastify';

export const WRITE_STATUS_HEADER = 'x-write-status';
export const WRITE_STATUS_BUFFERED = 'buffered';

/** The header as the OpenAPI document declares it on every 202. */
export const WRITE_STATUS_HEADER_DOC = {
  'X-Write-Status': {
    description:
      '`buffered`: PostgreSQL is unavailable (or still applying earlier buffered writes); the write is stored durably and will be applied once, in the order accepted',
    schema: { type: 'string', enum: [WRITE_STATUS_BUFFERED] },
  },
};

/** What every 202 description says, after what its body shows. */
export const BUFFERED_DESCRIPTION =
  'Accepted into the durable write buffer while PostgreSQL is unavailable. A promise: the write is on disk before this answer and is applied exactly once, in the order accepted (across replicas too), when PostgreSQL returns; a change to a task that is gone by then is set aside, not applied. Reads answer 503 with Retry-After until then. Tell this answer from a direct one by its status or `X-Write-Status: buffered`. Each user holds a share of the buffer: past it, a write answers 429 `RATE_LIMITED` with Retry-After (others still get 202).';

/** Turns the answer into a 202 of a buffered write. */
export function markBuffered(reply: FastifyReply): void {
  void reply.status(202).header(WRITE_STATUS_HEADER, WRITE_STATUS_BUFFERED);
}
