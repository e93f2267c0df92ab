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

const SERVICE = 'taskd';

export function createLogger(
  config: Pick<AppConfig, 'logLevel'>,
  destination: pino.DestinationStream = pino.destination({ sync: false }),
): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: SERVICE },
      timestamp: isoTimeCachedPerMillisecond,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

let lastMillisecond = 0;
let lastTimestamp = '';

/** pino's ISO timestamp, formatted once per millisecond however many lines share it. */
function isoTimeCachedPerMillisecond(): string {
  const now = Date.now();
  if (now !== lastMillisecond) {
    lastMillisecond = now;
    lastTimestamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTimestamp;
}

/** The stream a pino logger writes to (SonicBoom for `createLogger`'s default). */
function destinationOf(logger: Logger): pino.DestinationStream & { flushSync?: () => void } {
  return (logger as unknown as Record<symbol, pino.DestinationStream & { flushSync?: () => void }>)[pino.symbols.streamSym];
}

/** Writes out whatever the asynchronous destination still holds; call right before exiting. */
export function flushLogs(logger: Logger): void {
  const stream = destinationOf(logger);
  try {
    stream?.flushSync?.();
  } catch {
    // nothing more can be done for logs at exit
  }
}

/**
 * Fastify's request logging, reduced to one line per request, written when the response is
 * done: method, route template, path, status, time, and the user once known, under the
 * request's `requestId` like every other line of the request.
 *
 * The line of a completed request is formatted here and written straight to the logger's
 * destination, in the logger's own format: its fields are known and hold no secret, and pino's
 * generic path (redaction clones and walks every object logged) cost a tenth of a cheap
 * request's CPU. A 5xx line carries the error and goes through pino and its redaction. This
 * relies on what `createLogger` builds: one destination stream and one level for the process
 * (no per-route log levels, pino hooks or multistream).
 */
export class RequestLogController extends LogController {
  private readonly destination: pino.DestinationStream;

  constructor(private readonly logger: Logger) {
    super({ requestIdLogLabel: 'requestId' });
    this.destination = destinationOf(logger);
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const responseTime = Math.round(reply.elapsedTime * 100) / 100;
    const route = request.routeOptions.url;
    const userId = request.ctx?.userId;
    if (reply.statusCode >= 500 || error) {
      const fields = { method: request.method, route, url: request.url, statusCode: reply.statusCode, responseTime, userId, err: error ?? undefined };
      if (reply.statusCode >= 500) request.log.error(fields, 'request completed');
      else request.log.info(fields, 'request completed');
      return;
    }
    if (!this.logger.isLevelEnabled('info')) return;
    this.destination.write(
      `{"level":"info"${isoTimeCachedPerMillisecond()},"service":"${SERVICE}","requestId":${JSON.stringify(request.id)}` +
        `,"method":${JSON.stringify(request.method)}${route === undefined ? '' : `,"route":${JSON.stringify(route)}`}` +
        `,"url":${JSON.stringify(request.url)},"statusCode":${reply.statusCode},"responseTime":${responseTime}` +
        `${userId === undefined ? '' : `,"userId":${JSON.stringify(userId)}`},"msg":"request completed"}\n`,
    );
  }
}
