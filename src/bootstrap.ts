/**
 * Builds the application on Fastify: adapter options, request id and context, security
 * headers, CORS, problem details for what Fastify refuses itself, Swagger. Used by `main.ts`
 * and by the tests, so that both run the very same app.
 */
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Logger as NestPinoLogger, PinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AppModule } from './app.module.js';
import { installJobLogging } from './common/context/background-job.js';
import { RequestContext } from './common/context/request-context.js';
import { MethodNotAllowedError, RequestTimeoutError } from './common/errors/domain-errors.js';
import { sendProblem } from './common/errors/send-problem.js';
import { AnswerOnceFastifyAdapter } from './common/http/answer-once-fastify-adapter.js';
import { ConnectionDrain } from './common/http/connection-drain.js';
import { acceptJsonBodiesOnly, ignoreContentTypeWithoutBody } from './common/http/content-types.js';
import { REQUEST_ID_HEADER, requestIdFor } from './common/http/request-id.js';
import { SecurityHeaders } from './common/http/security-headers.js';
import type { AppConfig } from './config/app-config.js';
import { createLogger, RequestLogController } from './logger.js';
import { setupSwagger } from './swagger.js';

export interface CreatedApp {
  app: NestFastifyApplication;
  logger: Logger;
}

export async function createApp(config: AppConfig, logger = createLogger(config)): Promise<CreatedApp> {
  const security = new SecurityHeaders();
  // The id and security headers of every response, router refusals included.
  const setStandardHeaders = (request: FastifyRequest, reply: FastifyReply) =>
    reply.headers(security.for(request.url)).header(REQUEST_ID_HEADER, request.id);
  const adapter = new AnswerOnceFastifyAdapter({
    loggerInstance: logger,
    logController: new RequestLogController(logger),
    genReqId: requestIdFor,
    requestIdHeader: false,
    // No Nest middleware: the logging context is entered by the request hook below.
    skipMiddie: true,
    bodyLimit: config.http.bodyLimit,
    // In-flight and kept-alive requests are served to the end during shutdown, never 503'd;
    // idle connections are closed by ConnectionDrain, never while a request may be on its way.
    return503OnClosing: false,
    forceCloseConnections: false,
    // Longer than the usual load-balancer idle timeout (60 s), so the balancer closes first.
    keepAliveTimeout: 65_000,
    requestTimeout: config.http.requestTimeoutMs + 5_000,
    connectionTimeout: 0,
    // Long enough that any malformed id reaches validation (400 VALIDATION_FAILED); only a
    // parameter no client could mean as an id is refused by the router (414).
    routerOptions: { maxParamLength: 2048 },
    trustProxy: config.http.trustProxy,
    // What Fastify's router refuses before any hook runs (a URL that is not validly
    // percent-encoded, a path parameter over maxParamLength) is answered as problem details too.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      // No hook runs for these, so the headers the request hook sets are set here.
      void setStandardHeaders(request, reply);
      sendProblem(error, request, reply, (err) => logger.error({ err, requestId: request.id }, 'router error'));
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(
    AppModule.forRoot(config, logger),
    adapter,
    // Nest's own parsers would take form bodies; the app's are installed below (JSON only).
    { bufferLogs: true, bodyParser: false },
  );
  app.useLogger(app.get(NestPinoLogger));
  app.get(ConnectionDrain).attach(app.getHttpServer());
  const logContext: PinoLogger = await app.resolve(PinoLogger);
  installJobLogging(logContext);
  installRequestHooks(app, config, logger, logContext, setStandardHeaders);
  if (config.http.corsOrigins === '*' || config.http.corsOrigins.length > 0) {
    app.enableCors({
      origin: config.http.corsOrigins === '*' ? true : config.http.corsOrigins,
      exposedHeaders: ['ETag', 'Location', 'Retry-After', 'X-Request-Id', 'X-Write-Status', 'Idempotent-Replayed'],
      maxAge: 600,
    });
    // Nest runs the CORS hook before any hook of the app's: a preflight it answers gets the
    // id and security headers here.
    app.getHttpAdapter().getInstance().addHook('onSend', (request, reply, payload, done) => {
      if (!reply.hasHeader(REQUEST_ID_HEADER)) setStandardHeaders(request, reply);
      done(null, payload);
    });
  }
  setupSwagger(app, { publicUrl: config.http.publicUrl });
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return { app, logger };
}

/**
 * Per request, in one hook: a content type named without a body forgotten, the context with its
 * deadline, the id header and the security headers (helmet's, computed once; Swagger UI's pages
 * get their own policy), and the logging context the rest of the request runs in.
 *
 * At the deadline the client gets 504 `TIMEOUT` at once, whatever the request is still doing
 * (a guard, the handler, a query); the work stops where it honours the context's signal, and
 * its late result is dropped (AnswerOnceFastifyAdapter; the exception filter sends nothing twice).
 */
function installRequestHooks(
  app: NestFastifyApplication,
  config: AppConfig,
  logger: Logger,
  logContext: PinoLogger,
  setStandardHeaders: (request: FastifyRequest, reply: FastifyReply) => unknown,
): void {
  const fastify = app.getHttpAdapter().getInstance();
  acceptJsonBodiesOnly(fastify, config.http.bodyLimit);
  fastify.decorateRequest('ctx', null as unknown as RequestContext);
  fastify.addHook('onRequest', (request, reply, done) => {
    ignoreContentTypeWithoutBody(request);
    // sendProblem leaves an answer already under way alone (a file still streaming to a slow
    // client): the deadline bounds the work, not the transfer.
    request.ctx = RequestContext.start(request.id, config.http.requestTimeoutMs, () =>
      sendProblem(new RequestTimeoutError(), request, reply, (err) => logger.error({ err, requestId: request.id }, 'timeout')),
    );
    setStandardHeaders(request, reply);
    // An answer closes once: `on` spares the wrapper `once` would make for every request.
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) request.ctx.abort('client-closed');
    });
    const allowed = request.is404 ? methodsServed(fastify, request.url) : [];
    if (allowed.length > 0) {
      // A known path asked with another method: 405 with what it serves, not a 404.
      sendProblem(new MethodNotAllowedError(request.method, allowed), request, reply, () => undefined);
      return;
    }
    // The rest of the request runs in a logging context of its own: Nest's Logger, wherever
    // it is called from during the request, writes under the request's id.
    logContext.runInContext(done, { bindings: { requestId: request.id } });
  });
  fastify.addHook('onResponse', (request, _reply, done) => {
    // A CORS preflight is answered by the CORS plugin's hook before this one's: no context.
    request.ctx?.release();
    done();
  });
}

// Not OPTIONS: the CORS plugin answers it on every path.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** The methods the router serves on the path of `url` (none for an unknown path). */
function methodsServed(fastify: FastifyInstance, url: string): string[] {
  const path = url.split('?', 1)[0]!;
  return METHODS.filter((method) => fastify.findRoute({ method, url: path }) !== null);
}
