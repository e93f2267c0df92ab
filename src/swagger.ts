import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';

export const BEARER = 'bearer';

/** Swagger UI at `/docs`, the OpenAPI 3 document at `/docs-json`. */
export function setupSwagger(app: NestFastifyApplication): void {
  const config = new DocumentBuilder()
    .setTitle('taskd')
    .setDescription(
      'Task-management API that keeps accepting writes while PostgreSQL is down: such writes answer 202 with `X-Write-Status: buffered` and are applied exactly once, in order, when the database returns. Errors are RFC 9457 problem details.',
    )
    .setVersion('1.0.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, BEARER)
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', yamlDocumentUrl: 'docs-yaml' });
}
