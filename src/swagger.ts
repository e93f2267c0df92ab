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
export function createOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('taskd')
    .setDescription(
      "Task-management API that keeps accepting writes while PostgreSQL is down: such writes answer 202 with `X-Write-Status: buffered` and are applied exactly once, in order, when the database returns. Errors are RFC 9457 problem details. Every response carries `X-Request-Id` (the client's own when it is 1–128 characters of `[A-Za-z0-9._:-]`), also named in error bodies.",
    )
    .setVersion('1.0.0')
    // Relative: the document describes whichever instance serves it (Swagger UI's "Try it out"
    // then calls that same instance).
    .addServer('/', 'The instance serving this document')
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
  return applyConventions(document, BEARER);
}

/**
 * Swagger UI at `/docs`, the OpenAPI 3 document at `/docs-json` (and `/docs-yaml`). These routes
 * belong to the documentation tooling, not to the API, and are left out of the document.
 */
export function setupSwagger(app: NestFastifyApplication): void {
  // Built on first request rather than at start-up, which it would otherwise slow by the time
  // it takes to walk every route and DTO.
  SwaggerModule.setup('docs', app, () => createOpenApiDocument(app), {
    jsonDocumentUrl: 'docs-json',
    yamlDocumentUrl: 'docs-yaml',
  });
}
