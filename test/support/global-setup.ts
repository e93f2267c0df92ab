/**
 * Runs once before the e2e suites: checks that PostgreSQL and Redis answer, so that a missing
 * server fails fast with a clear message instead of thirty timeouts.
 */
import net from 'node:net';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(2_000);
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
  });
}

export default async function globalSetup(): Promise<void> {
  const pgUrl = new URL(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  const redisUrl = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0');
  const missing: string[] = [];
  if (!(await reachable(pgUrl.hostname, Number(pgUrl.port || 5432)))) missing.push(`PostgreSQL at ${pgUrl.host}`);
  if (!(await reachable(redisUrl.hostname, Number(redisUrl.port || 6379)))) missing.push(`Redis at ${redisUrl.host}`);
  if (missing.length) throw new Error(`e2e tests need ${missing.join(' and ')} (start them, or set TEST_DATABASE_URL / TEST_REDIS_URL)`);
}
