/**
 * The OpenAPI document without running the service: the module graph is built in preview
 * mode, so no provider is instantiated and nothing connects to PostgreSQL, Redis or LMDB.
 * Used by `scripts/export-openapi.ts` (lint in CI) and by the tests that compare it with what
 * `/docs-json` serves.
 */
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { OpenAPIObject } from '@nestjs/swagger';
import pino from 'pino';
import { AppModule } from './app.module.js';
import { loadConfig } from './config/app-config.js';
import { createOpenApiDocument } from './swagger.js';

export async function buildOpenApiDocument(): Promise<OpenAPIObject> {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  const app = await NestFactory.create<NestFastifyApplication>(
    AppModule.forRoot(config, pino({ level: 'silent' })),
    new FastifyAdapter(),
    { preview: true, logger: false, abortOnError: false },
  );
  try {
    return createOpenApiDocument(app, { publicUrl: config.http.publicUrl });
  } finally {
    await app.close();
  }
}
