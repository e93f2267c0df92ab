/**
 * Request bodies are `application/json` only, as the OpenAPI document says. Every other content
 * type, form encodings included, is 415 `UNSUPPORTED_MEDIA_TYPE`: besides keeping one format,
 * this stops a cross-site HTML form from posting to the API without a CORS preflight. A request that has no
 * body is accepted whatever `Content-Type` it names, since there is nothing to parse: clients
 * that set `Content-Type: application/json` on every request may call `POST /auth/logout` or
 * `DELETE /tasks/{id}` with it.
 */
import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';

export const JSON_CONTENT_TYPE = 'application/json';

/**
 * Installs the parsers. The app's request hook must also call `ignoreContentTypeWithoutBody` on
 * every request (one hook for all the per-request work: each hook costs a step of Fastify's).
 */
export function acceptJsonBodiesOnly(fastify: FastifyInstance, bodyLimit: number): void {
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser(JSON_CONTENT_TYPE, { parseAs: 'string', bodyLimit }, (request, body, done) => {
    if (body === '') {
      done(null, undefined);
      return;
    }
    parseJson(request, body as string, done);
  });
  // Any other type: nothing to parse when there is no body, 415 when there is one.
  fastify.addContentTypeParser('*', (request, _payload, done) => {
    if (hasNoBody(request)) {
      done(null, undefined);
      return;
    }
    done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(request.headers['content-type'] ?? ''), undefined);
  });
}

/**
 * Nothing to parse: the content type it names, however malformed, is not looked at. Fastify never
 * parses a GET's or a HEAD's body, so theirs is left alone: deleting a header turns the headers
 * object into a slower dictionary for the rest of the request, and many clients name
 * `application/json` on every request.
 */
export function ignoreContentTypeWithoutBody(request: FastifyRequest): void {
  if (request.method === 'GET' || request.method === 'HEAD') return;
  if (request.headers['content-type'] !== undefined && hasNoBody(request)) delete request.headers['content-type'];
}

function hasNoBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}
