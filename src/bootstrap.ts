/**
 * Builds the application on Fastify: adapter options, request id and context, security
 * headers, CORS, problem details for what Fastify refuses itself, Swagger. Used by `main.ts`
 * and by the tests, so that both run the very same app.
 */
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import helmet from '@fastify/helmet';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AppModule } from './app.module.js';
import { RequestContext } from './common/context/request-context.js';
import { REQUEST_ID_HEADER, requestIdFor } from './common/http/request-id.js';
import type { AppConfig } from './config/app-config.js';
import { createLogger, RequestLogController } from './logger.js';
import { setupSwagger } from './swagger.js';

export interface CreatedApp {
  app: NestFastifyApplication;
  logger: Logger;
}

export async function createApp(config: AppConfig, logger = createLogger(config)): Promise<CreatedApp> {
  const adapter = new FastifyAdapter({
    loggerInstance: logger,
    logController: new RequestLogController(),
    genReqId: requestIdFor,
    requestIdHeader: false,
    bodyLimit: config.http.bodyLimit,
    // In-flight and kept-alive requests are served to the end during shutdown, never 503'd.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Longer than the usual load-balancer idle timeout (60 s), so the balancer closes first.
    keepAliveTimeout: 65_000,
    requestTimeout: config.http.requestTimeoutMs + 5_000,
    connectionTimeout: 0,
    routerOptions: { maxParamLength: 200 },
    trustProxy: config.http.trustProxy,
  });
  const app = await NestFactory.create<NestFastifyApplication>(
    AppModule.forRoot(config, logger),
    adapter,
    { bufferLogs: true },
  );
  app.useLogger(app.get(NestPinoLogger));
  installRequestHooks(app, config);
  await app.register(helmet, {
    // Swagger UI runs inline scripts and styles; everything else is JSON.
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'", "'unsafe-inline'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
      },
    },
  });
  if (config.http.corsOrigins === '*' || config.http.corsOrigins.length > 0) {
    app.enableCors({
      origin: config.http.corsOrigins === '*' ? true : config.http.corsOrigins,
      exposedHeaders: ['ETag', 'Location', 'Retry-After', 'X-Request-Id', 'X-Write-Status', 'Idempotent-Replayed'],
      maxAge: 600,
    });
  }
  setupSwagger(app);
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return { app, logger };
}

/** Per request: the id header and the context with its deadline. */
function installRequestHooks(app: NestFastifyApplication, config: AppConfig): void {
  const fastify = app.getHttpAdapter().getInstance();
  // JSON only: Fastify's built-in text/plain parser would let a plain-text body through to
  // validation (400) where a client must learn that the media type is wrong (415).
  fastify.removeContentTypeParser('text/plain');
  fastify.decorateRequest('ctx', null as unknown as RequestContext);
  fastify.addHook('onRequest', (request, reply, done) => {
    request.ctx = RequestContext.start(request.id, config.http.requestTimeoutMs);
    reply.header(REQUEST_ID_HEADER, request.id);
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) request.ctx.abort('client-closed');
    });
    done();
  });
  fastify.addHook('onResponse', (request, _reply, done) => {
    request.ctx.release();
    done();
  });
}
