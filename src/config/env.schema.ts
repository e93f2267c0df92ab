/**
 * The one schema for the process environment. Every variable the service reads is declared
 * here, with its default and its rule; `loadConfig` turns the result into the typed `AppConfig`.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`: an address, with a prefix length that fits its family. */
function isAddressOrCidr(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  const family = isIP(address!);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `15m`, `7d`, `500ms`, … into milliseconds. */
export function parseDuration(value: string): number {
  const match = DURATION.exec(value);
  if (!match) throw new Error(`not a duration: ${value}`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

const duration = z
  .string()
  .trim()
  .regex(DURATION, 'must be a duration such as 500ms, 30s, 15m, 12h or 7d')
  .transform(parseDuration)
  .refine((ms) => ms > 0, 'must be longer than zero');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const url = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .refine((value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    }, `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`);

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: int(0, 65_535).default(3000),
    HOST: z.string().trim().min(1).default('0.0.0.0'),

    DATABASE_URL: url(['postgres:', 'postgresql:']).default(
      'postgres://postgres@127.0.0.1:5432/tasks',
    ),
    DATABASE_POOL_SIZE: int(1, 500).default(10),
    DATABASE_CONNECT_TIMEOUT_MS: int(100, 60_000).default(2000),
    REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379/0'),
    REDIS_KEY_PREFIX: z.string().trim().min(1).max(64).default('taskd:'),
    // Whom to believe about the client's address (X-Forwarded-For), for throttling and sessions:
    // `false`; the proxies' addresses or CIDRs, comma-separated (an ingress's pod network), so
    // that the address the outermost trusted proxy saw is taken and whatever a client wrote on
    // the left itself is ignored; or `true`, which believes the left-most entry, one a client
    // can set: only behind a proxy that overwrites the header.
    TRUST_PROXY: z
      .string()
      .trim()
      .default('false')
      .transform((value, issue): boolean | string[] => {
        if (value === 'true' || value === 'false') return value === 'true';
        const entries = value.split(',').map((entry) => entry.trim());
        if (entries.every(isAddressOrCidr)) return entries;
        issue.addIssue({ code: 'custom', message: 'must be true, false or comma-separated proxy addresses/CIDRs' });
        return z.NEVER;
      }),

    BUFFER_PATH: z.string().trim().min(1).default('./data/buffer'),
    BUFFER_MAX_ENTRIES: int(1, 100_000_000).default(100_000),
    BUFFER_MAX_BYTES: int(1024, 1024 ** 4).default(512 * 1024 * 1024),
    BUFFER_REPLAY_INTERVAL_MS: int(10, 3_600_000).default(1000),
    BUFFER_REPLAY_BATCH: int(1, 10_000).default(1000),
    BUFFER_USER_MAX_ENTRIES: int(1, 100_000_000).default(2_000),
    BUFFER_USER_MAX_BYTES: int(1024, 1024 ** 4).default(16 * 1024 * 1024),
    BUFFER_SET_ASIDE_MAX_ENTRIES: int(1, 100_000_000).default(10_000),
    BUFFER_SET_ASIDE_MAX_BYTES: int(1024, 1024 ** 4).default(64 * 1024 * 1024),
    WRITE_RETENTION: duration.default(parseDuration('7d')),
    REPLICA_ID: int(1, 1023).optional(),
    CLOCK_SKEW_MAX_MS: int(1, 3_600_000).default(500),

    JWT_SECRET: z.string().optional(),
    // JWTs count whole seconds: under one, every access token would expire as it is issued.
    JWT_ACCESS_TTL: duration.refine((ms) => ms >= 1000, 'must be at least 1s').default(parseDuration('15m')),
    JWT_ISSUER: z.string().trim().min(1).default('taskd'),
    JWT_AUDIENCE: z.string().trim().min(1).default('taskd-api'),
    REFRESH_TTL: duration.default(parseDuration('7d')),
    SESSION_MAX_TTL: duration.default(parseDuration('30d')),
    REVOCATION_RELOAD_INTERVAL_MS: int(100, 3_600_000).default(30_000),

    LOGIN_MAX_FAILURES_PER_EMAIL: int(1, 10_000).default(5),
    LOGIN_MAX_FAILURES_PER_IP: int(1, 100_000).default(50),
    LOGIN_WINDOW_SECONDS: int(1, 86_400).default(900),
    LOGIN_BLOCK_SECONDS: int(1, 86_400).default(60),
    LOGIN_BLOCK_MAX_SECONDS: int(1, 86_400).default(3600),
    REGISTER_MAX_PER_IP: int(1, 1_000_000).default(10),
    REGISTER_WINDOW_SECONDS: int(1, 86_400).default(3600),
    PASSWORD_HASH_CONCURRENCY: int(1, 64).optional(),
    PASSWORD_HASH_QUEUE_MAX: int(0, 100_000).default(64),
    REGISTER_REFUSAL_PAUSE_MS: int(0, 10_000).default(250),
    SESSION_MAX_PER_USER: int(1, 100_000).default(100),

    REQUEST_TIMEOUT_MS: int(1, 600_000).default(10_000),
    SHUTDOWN_DRAIN_MS: int(0, 600_000).optional(),
    SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(25_000),
    BODY_LIMIT: int(1, 100 * 1024 * 1024).default(102_400),
    CORS_ORIGINS: z.string().trim().default(''),
    PUBLIC_URL: z
      .string()
      .trim()
      .refine(isPublicUrl, 'must be an absolute http(s) URL without query or fragment, such as https://tasks.example.com')
      .transform((value) => value.replace(/\/+$/, ''))
      .optional(),
    LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production') {
      if (!env.JWT_SECRET || env.JWT_SECRET.length < 32) {
        ctx.addIssue({
          code: 'custom',
          path: ['JWT_SECRET'],
          message: 'is required in production and must be at least 32 characters',
        });
      } else if (/change.?me|secret|example|placeholder/i.test(env.JWT_SECRET)) {
        ctx.addIssue({
          code: 'custom',
          path: ['JWT_SECRET'],
          message: 'looks like a placeholder; set a random value of at least 32 characters',
        });
      }
    } else if (env.JWT_SECRET !== undefined && env.JWT_SECRET.length < 32) {
      ctx.addIssue({
        code: 'custom',
        path: ['JWT_SECRET'],
        message: 'must be at least 32 characters',
      });
    }
    if (env.LOGIN_BLOCK_MAX_SECONDS < env.LOGIN_BLOCK_SECONDS) {
      ctx.addIssue({
        code: 'custom',
        path: ['LOGIN_BLOCK_MAX_SECONDS'],
        message: 'must not be shorter than LOGIN_BLOCK_SECONDS',
      });
    }
    if (env.SESSION_MAX_TTL < env.REFRESH_TTL) {
      ctx.addIssue({
        code: 'custom',
        path: ['SESSION_MAX_TTL'],
        message: 'must not be shorter than REFRESH_TTL',
      });
    }
  });

export type Env = z.infer<typeof envSchema>;

/** An absolute http(s) URL that can be a base of the API's paths. */
function isPublicUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '' && !value.includes('#') && !value.includes('?');
}
