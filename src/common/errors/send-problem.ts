import type { FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEM_CONTENT_TYPE, problem } from './problem.js';
import { toProblem } from './to-problem.js';

/** Writes the problem-details answer for `error`, unless an answer was begun or the client is gone. */
export function sendProblem(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  logInternal: (error: unknown) => void,
): void {
  const outline = toProblem(error);
  if (outline.internal) logInternal(error);
  if (reply.sent || reply.raw.headersSent || reply.raw.destroyed) return;
  const body = problem({
    code: outline.code,
    status: outline.status,
    detail: outline.detail,
    errors: outline.errors,
    errorsOmitted: outline.errorsOmitted,
    instance: request.url.split('?', 1)[0]!,
    requestId: request.id,
  });
  if (outline.headers) reply.headers(outline.headers);
  void reply.status(outline.status).type(PROBLEM_CONTENT_TYPE).send(body);
}
