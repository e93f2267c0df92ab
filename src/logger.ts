/**
 * The process's pino logger: JSON lines, ISO timestamps, secrets redacted, written
 * asynchronously so that logging never holds up a request. `flush` before exit.
 */
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import pino, { type Logger } from 'pino';
import type { AppConfig } from './config/app-config.js';

const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.currentPassword',
  '*.newPassword',
  '*.accessToken',
  '*.refreshToken',
  '*.token',
  '*.authorization',
  'password',
  'accessToken',
  'refreshToken',
];

export function createLogger(config: Pick<AppConfig, 'logLevel'>, destination = pino.destination({ sync: false })): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'taskd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

/** Writes out whatever the asynchronous destination still holds; call right before exiting. */
export function flushLogs(logger: Logger): void {
  const stream = (logger as unknown as Record<symbol, { flushSync?: () => void }>)[pino.symbols.streamSym];
  try {
    stream?.flushSync?.();
  } catch {
    // nothing more can be done for logs at exit
  }
}

/**
 * Fastify's request logging, reduced to one line per request, written when the response is
 * done: method, route template, status, time, and the user once known. Every line of a request
 * carries its `requestId`.
 */
export class RequestLogController extends LogController {
  constructor() {
    super({ requestIdLogLabel: 'requestId' });
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const fields = {
      method: request.method,
      route: request.routeOptions.url,
      url: request.url,
      statusCode: reply.statusCode,
      responseTime: Math.round(reply.elapsedTime * 100) / 100,
      userId: request.ctx?.userId,
      err: error ?? undefined,
    };
    if (reply.statusCode >= 500) request.log.error(fields, 'request completed');
    else request.log.info(fields, 'request completed');
  }
}
