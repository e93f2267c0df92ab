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
  if (outline.status === 401) void reply.header('www-authenticate', bearerChallenge(outline.code, request));
  void reply.status(outline.status).type(PROBLEM_CONTENT_TYPE).send(body);
}

/**
 * RFC 6750 §3: every 401 names the Bearer scheme; when the access token sent was refused, the
 * challenge says so, so that a client knows to refresh or log in again rather than add one.
 */
function bearerChallenge(code: string, request: FastifyRequest): string {
  const sentBearer = /^bearer[ \t]/i.test(request.headers.authorization ?? '');
  return code === 'UNAUTHENTICATED' && sentBearer ? 'Bearer error="invalid_token"' : 'Bearer';
}
