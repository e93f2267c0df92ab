import type { INestApplication } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { applyConventions } from './common/http/openapi-conventions.js';
import { ProblemDto } from './common/http/problem-responses.js';

export const BEARER = 'bearer';

/**
 * The OpenAPI 3 document of `app`. Needs only the app's module graph, not running providers:
 * `scripts/export-openapi.ts` builds it from an app created in preview mode.
 */
export interface OpenApiOptions {
  /** The API's base URL as clients reach it (`PUBLIC_URL`): the document's one server. */
  publicUrl?: string | undefined;
}

const DESCRIPTION = [
  'Task-management API that keeps accepting writes while PostgreSQL is down.',
  '',
  '**Requests.** Bodies are `application/json` (UTF-8) only: any other content type, form encodings included, is 415 `UNSUPPORTED_MEDIA_TYPE`; a request without a body is accepted whatever `Content-Type` it names. Every rule the server checks is in the schemas: a request they allow is never refused as invalid, and one they refuse is 400 `VALIDATION_FAILED`, each failed rule named in `errors[]` ("is required", "must be an integer", …). Bodies refuse fields they do not declare, query strings parameters they do not declare or name twice. Lengths count Unicode code points. Ids are UUIDs in any letter case, answered in lower case.',
  '',
  '**Answers.** Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`. Every answer carries `X-Request-Id`, also named in error bodies. A 401 carries `WWW-Authenticate: Bearer` (RFC 6750), with `error="invalid_token"` when a token was sent and refused. A method a known path does not serve is 405 `METHOD_NOT_ALLOWED` with `Allow`; an unknown path is 404 `NOT_FOUND`.',
  '',
  '**Writes while PostgreSQL is down.** A create, an update or a delete of a task without `If-Match`, and a change of the profile\'s name alone, answer **202** with `X-Write-Status: buffered` instead of 201/200/204. A 202 is a promise: the write is on disk before the answer and is applied exactly once, in the order accepted (across replicas too), when the database returns; its body shows what will be stored. A buffered change to a task that is gone by then is set aside, not applied. Reads answer 503 with `Retry-After` meanwhile. Tell a 202 from a direct answer by its status (typed clients narrow on `response.status`), or by `X-Write-Status`.',
  '',
  '**Conditional requests.** Tasks carry `ETag: "<version>"`. `GET /api/v1/tasks/{id}` with `If-None-Match` naming the current version (or `*`) answers 304 with no body; `If-Match` on a change or delete answers 412 when the task has another version.',
  '',
  '**Idempotency keys.** A create with `Idempotency-Key` creates at most one task per key and user: a retry with the same key (concurrent or later, whatever its body) answers that same task as it is now with `Idempotent-Replayed: true`, 201 once stored, 202 while buffered. During an outage the key is reserved in Redis, so the same key through another replica answers the same task too, while its reservation lives: ten minutes for a direct create, the replicas\' retention period for a buffered one. A key is free again once its task is deleted.',
].join('\n');

export function createOpenApiDocument(app: INestApplication, options: OpenApiOptions = {}): OpenAPIObject {
  const builder = new DocumentBuilder()
    .setTitle('taskd')
    .setDescription(DESCRIPTION)
    .setVersion('1.0.0');
  // Only a URL clients can resolve: without PUBLIC_URL the document names no server, and
  // tools (Swagger UI's "Try it out" included) use the address they read the document from.
  if (options.publicUrl) builder.addServer(options.publicUrl, 'This deployment');
  const config = builder
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, BEARER)
    .addTag('auth', 'Accounts, token pairs and sessions')
    .addTag('profile', "The caller's own account")
    .addTag('tasks', "The caller's tasks")
    .addTag('health', 'Liveness and readiness probes')
    .addTag('metrics', 'Prometheus scraping')
    .build();
  // The service is not published under an open licence (package.json: UNLICENSED).
  config.info.license = { name: 'Proprietary' };
  config.info.contact = { name: 'taskd maintainers' };
  const document = SwaggerModule.createDocument(app, config, { extraModels: [ProblemDto] });
  if (!options.publicUrl) delete document.servers;
  return applyConventions(document, BEARER);
}

/**
 * Swagger UI at `/docs`, the OpenAPI 3 document at `/docs-json` (and `/docs-yaml`). These routes
 * belong to the documentation tooling, not to the API, and are left out of the document.
 */
export function setupSwagger(app: NestFastifyApplication, options: OpenApiOptions = {}): void {
  // Built on first request rather than at start-up, which it would otherwise slow by the time
  // it takes to walk every route and DTO.
  SwaggerModule.setup('docs', app, () => createOpenApiDocument(app, options), {
    jsonDocumentUrl: 'docs-json',
    yamlDocumentUrl: 'docs-yaml',
  });
}
