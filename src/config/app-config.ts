/**
 * Typed configuration, built once from the environment at start-up. Everything else receives
 * `AppConfig` by injection (token `APP_CONFIG`) and never reads `process.env` itself.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, hostname } from 'node:os';
import { parseEnv, type Env } from './env.schema.js';

export const APP_CONFIG = Symbol('APP_CONFIG');

export interface AppConfig {
  env: Env['NODE_ENV'];
  isProduction: boolean;
  http: {
    port: number;
    host: string;
    bodyLimit: number;
    requestTimeoutMs: number;
    corsOrigins: string[] | '*';
    /** Whom to believe about the client's address: Fastify's `trustProxy` (env.schema.ts). */
    trustProxy: boolean | string[];
    /** The API's base URL as clients reach it (the document's `servers`); none when unset. */
    publicUrl: string | undefined;
  };
  database: { url: string; poolSize: number; connectTimeoutMs: number };
  redis: { url: string; keyPrefix: string };
  buffer: {
    path: string;
    maxEntries: number;
    maxBytes: number;
    replayIntervalMs: number;
    replayBatch: number;
    /** One user's share of this replica's buffer (queued and parked writes). */
    userMaxEntries: number;
    userMaxBytes: number;
    /** Bounds of the set-aside writes, kept apart from the live buffer. */
    setAsideMaxEntries: number;
    setAsideMaxBytes: number;
  };
  /** Several replicas, one order (docs/design/replicas.md). */
  replication: {
    /** Tie-break of the positions this replica issues itself (1–1023). */
    replicaTag: number;
    clockSkewMaxMs: number;
    /** How long tombstones, the ledger, parked writes and pending records are kept. */
    retentionMs: number;
  };
  auth: {
    jwtSecret: string;
    /** True when no secret was configured and one was generated for this process. */
    jwtSecretGenerated: boolean;
    accessTtlMs: number;
    issuer: string;
    audience: string;
    refreshTtlMs: number;
    sessionMaxTtlMs: number;
    /** How often every instance reloads the revoked sessions from Redis (a lost publication). */
    revocationReloadIntervalMs: number;
    /** Sessions a user may hold; a login past it revokes the oldest. */
    sessionMaxPerUser: number;
    loginMaxFailuresPerEmail: number;
    loginMaxFailuresPerIp: number;
    /** Failed logins count against their budgets for this long (the login throttle's window). */
    loginWindowSeconds: number;
    /** The first block; each further one is twice as long, up to `loginBlockMaxSeconds`. */
    loginBlockSeconds: number;
    loginBlockMaxSeconds: number;
    registerMaxPerIp: number;
    registerWindowSeconds: number;
    passwordHashConcurrency: number;
    /** Password hashes that may wait for a slot; past it, 503. */
    passwordHashQueueMax: number;
    /** How long a refused registration (429, 503) waits before it is answered. */
    registerRefusalPauseMs: number;
  };
  shutdown: { drainMs: number; timeoutMs: number };
  logLevel: Env['LOG_LEVEL'];
}

/** Raised for an invalid environment; its message is one line naming the variable and rule. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(source: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = parseEnv(withoutEmptyValues(source));
  if (!('env' in parsed)) throw new ConfigError(`Invalid configuration: ${parsed.variable} ${parsed.problem}`);
  return toAppConfig(parsed.env);
}

function toAppConfig(env: Env): AppConfig {
  const isProduction = env.NODE_ENV === 'production';
  return {
    env: env.NODE_ENV,
    isProduction,
    http: {
      port: env.PORT,
      host: env.HOST,
      bodyLimit: env.BODY_LIMIT,
      requestTimeoutMs: env.REQUEST_TIMEOUT_MS,
      corsOrigins: parseOrigins(env.CORS_ORIGINS),
      trustProxy: env.TRUST_PROXY,
      publicUrl: env.PUBLIC_URL,
    },
    database: {
      url: env.DATABASE_URL,
      poolSize: env.DATABASE_POOL_SIZE,
      connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
    },
    redis: { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX },
    buffer: {
      path: env.BUFFER_PATH,
      maxEntries: env.BUFFER_MAX_ENTRIES,
      maxBytes: env.BUFFER_MAX_BYTES,
      replayIntervalMs: env.BUFFER_REPLAY_INTERVAL_MS,
      replayBatch: env.BUFFER_REPLAY_BATCH,
      userMaxEntries: env.BUFFER_USER_MAX_ENTRIES,
      userMaxBytes: env.BUFFER_USER_MAX_BYTES,
      setAsideMaxEntries: env.BUFFER_SET_ASIDE_MAX_ENTRIES,
      setAsideMaxBytes: env.BUFFER_SET_ASIDE_MAX_BYTES,
    },
    replication: {
      replicaTag: env.REPLICA_ID ?? replicaTagOf(hostname()),
      clockSkewMaxMs: env.CLOCK_SKEW_MAX_MS,
      retentionMs: env.WRITE_RETENTION,
    },
    auth: {
      jwtSecret: env.JWT_SECRET ?? randomBytes(48).toString('base64url'),
      jwtSecretGenerated: env.JWT_SECRET === undefined,
      accessTtlMs: env.JWT_ACCESS_TTL,
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      refreshTtlMs: env.REFRESH_TTL,
      sessionMaxTtlMs: env.SESSION_MAX_TTL,
      revocationReloadIntervalMs: env.REVOCATION_RELOAD_INTERVAL_MS,
      sessionMaxPerUser: env.SESSION_MAX_PER_USER,
      loginMaxFailuresPerEmail: env.LOGIN_MAX_FAILURES_PER_EMAIL,
      loginMaxFailuresPerIp: env.LOGIN_MAX_FAILURES_PER_IP,
      loginWindowSeconds: env.LOGIN_WINDOW_SECONDS,
      loginBlockSeconds: env.LOGIN_BLOCK_SECONDS,
      loginBlockMaxSeconds: env.LOGIN_BLOCK_MAX_SECONDS,
      registerMaxPerIp: env.REGISTER_MAX_PER_IP,
      registerWindowSeconds: env.REGISTER_WINDOW_SECONDS,
      passwordHashConcurrency: env.PASSWORD_HASH_CONCURRENCY ?? Math.max(1, availableParallelism() - 1),
      passwordHashQueueMax: env.PASSWORD_HASH_QUEUE_MAX,
      registerRefusalPauseMs: env.REGISTER_REFUSAL_PAUSE_MS,
    },
    shutdown: {
      drainMs: env.SHUTDOWN_DRAIN_MS ?? (isProduction ? 5000 : 0),
      timeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    },
    logLevel: env.LOG_LEVEL,
  };
}

/**
 * Without REPLICA_ID: a StatefulSet pod's ordinal (`taskd-3` → 4), so that the replicas of one
 * deployment never share a tag; otherwise a random one.
 */
function replicaTagOf(host: string): number {
  const ordinal = /-(\d+)$/.exec(host)?.[1];
  if (ordinal !== undefined && Number(ordinal) < 1023) return Number(ordinal) + 1;
  return 1 + Math.floor(Math.random() * 1023);
}

/** An empty variable means "not set", as a shell or an orchestrator usually intends. */
function withoutEmptyValues(source: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) {
    if (value !== undefined && value !== '') env[key] = value;
  }
  return env;
}

function parseOrigins(raw: string): string[] | '*' {
  if (raw === '*') return '*';
  return raw
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
}
