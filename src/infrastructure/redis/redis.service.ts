/**
 * The Redis connection (ioredis). Commands fail fast while Redis is unreachable (no offline
 * queue) so a request answers 503 instead of hanging; the client reconnects by itself with
 * capped backoff. Features that need pub/sub ask for a `subscriber()` of their own.
 */
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { dropConnectionsOnUnexpectedReplies, UnexpectedReplyError } from './unexpected-replies.js';

const CONNECT_WAIT_MS = 2_000;
/**
 * How long one command may wait for its answer. A command in flight when the connection drops is
 * kept for resending after a reconnect; when reconnects keep reaching a socket that then closes
 * (a proxy or load balancer with Redis gone behind it), ioredis's retry count starts again at
 * each one and the command would wait forever, and with auto-pipelining every later command
 * queues behind it: requests then hang until their deadline instead of failing fast (503).
 */
const COMMAND_TIMEOUT_MS = 2_000;

/** Runs a script with its keys and arguments; resolves with its reply. */
export type RedisScript = (keys: string[], args: (string | number)[]) => Promise<unknown>;

@Injectable()
export class RedisService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisService.name);
  readonly client: Redis;
  private readonly subscribers: Redis[] = [];

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    dropConnectionsOnUnexpectedReplies();
    // Commands issued in the same tick go out in one write (each request's position, its
    // pending record, …): fewer system calls under load, the same answers.
    // A command in flight when the connection drops fails at once and is never resent: a command
    // whose reply was lost may have run already (resent, an INCR or a script would apply twice).
    // Callers answer 503 or retry as their operation allows.
    this.client = this.connect('main', {
      enableAutoPipelining: true,
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    });
  }

  /** Waits briefly for the first connection; the service starts without Redis all the same. */
  async onModuleInit(): Promise<void> {
    try {
      await Promise.race([
        this.client.connect(),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('timed out')), CONNECT_WAIT_MS).unref(),
        ),
      ]);
    } catch (error) {
      this.logger.warn({ err: { message: (error as Error).message } }, 'Redis not reachable yet; reconnecting in the background');
    }
  }

  isUp(): boolean {
    return this.client.status === 'ready';
  }

  async ping(timeoutMs: number): Promise<boolean> {
    if (!this.isUp()) return false;
    try {
      await Promise.race([
        this.client.ping(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
      ]);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * A Lua script run by its SHA (EVALSHA), loaded on first use or after Redis lost it (a
   * restart): the script's text crosses the network once, not on every call. Keys are given the
   * key prefix as any other command's.
   */
  script(lua: string): RedisScript {
    const sha = createHash('sha1').update(lua).digest('hex');
    return (keys, args) =>
      this.client.evalsha(sha, keys.length, ...keys, ...args).catch((error: unknown) => {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        return this.client.eval(lua, keys.length, ...keys, ...args);
      });
  }

  /** A dedicated connection for SUBSCRIBE (a subscribed connection can issue nothing else). */
  subscriber(): Redis {
    const connection = this.connect('subscriber', { enableOfflineQueue: true });
    connection.connect().catch(() => undefined);
    this.subscribers.push(connection);
    return connection;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(
      [this.client, ...this.subscribers].map((connection) =>
        connection.quit().catch(() => connection.disconnect()),
      ),
    );
  }

  private connect(name: string, overrides: Partial<RedisOptions> = {}): Redis {
    const connection = new Redis(this.config.redis.url, {
      lazyConnect: true,
      connectionName: `taskd-${name}`,
      keyPrefix: this.config.redis.keyPrefix,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
      ...overrides,
    });
    connection.on('error', (error: Error) => {
      if (error instanceof UnexpectedReplyError) {
        this.logger.warn({ connection: name }, error.message);
        return;
      }
      this.logger.debug({ err: { message: error.message }, connection: name }, 'Redis connection error');
    });
    return connection;
  }
}
