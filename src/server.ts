/**
 * The server: validate the environment, build the app, listen, and stop cleanly on
 * SIGTERM/SIGINT (the order of docs/architecture.md's life cycle, bounded by SHUTDOWN_TIMEOUT_MS).
 */
import 'reflect-metadata';
import { ConfigError, loadConfig, type AppConfig } from './config/app-config.js';
import { createApp } from './bootstrap.js';
import { installShutdown } from './shutdown.js';

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const startedAt = performance.now();
  const { app, logger } = await createApp(config);
  if (config.auth.jwtSecretGenerated) {
    logger.warn('JWT_SECRET is not set: using a random key for this process; tokens will not survive a restart');
  }
  installShutdown(app, logger, config);
  await app.listen({ port: config.http.port, host: config.http.host });
  logger.info(
    { port: config.http.port, host: config.http.host, startupMs: Math.round(performance.now() - startedAt) },
    'listening',
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
