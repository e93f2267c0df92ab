/**
 * Signal handling. The first SIGTERM/SIGINT runs Nest's close sequence: readiness 503 and the
 * drain pause (LifecycleService), the HTTP server draining in-flight requests, then the
 * scheduler, the last replay and the connections (`onApplicationShutdown`). A second signal, or
 * the SHUTDOWN_TIMEOUT_MS bound, ends the process at once with a non-zero code.
 */
import type { INestApplication } from '@nestjs/common';
import type { Logger } from 'pino';
import type { AppConfig } from './config/app-config.js';
import { flushLogs } from './logger.js';

export function installShutdown(app: INestApplication, logger: Logger, config: AppConfig): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      logger.warn({ signal }, 'second signal: exiting now');
      flushLogs(logger);
      process.exit(130);
    }
    closing = true;
    logger.info({ signal, timeoutMs: config.shutdown.timeoutMs }, 'shutdown started');
    const hardStop = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdown.timeoutMs }, 'shutdown timed out: exiting');
      flushLogs(logger);
      process.exit(1);
    }, config.shutdown.timeoutMs);
    hardStop.unref();
    app
      .close()
      .then(() => {
        logger.info('shutdown complete');
        flushLogs(logger);
        process.exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        flushLogs(logger);
        process.exit(1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
