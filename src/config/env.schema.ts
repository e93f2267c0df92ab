/**
 * The one schema for the process environment. Every variable the service reads is declared
 * here, with its default and its rule; `loadConfig` turns the result into the typed `AppConfig`.
 *
 * The rules are a few small functions rather than a validation library: the environment is read
 * once, at start-up, and a library kept for that alone stayed in memory for the life of the
 * process (zod held about 4 MB of heap, most of it its messages in forty languages).
 */
import { isIP } from 'node:net';

/** A value that breaks its variable's rule; the message follows the variable's name. */
class RuleBroken extends Error {}

/** How a variable is read: `undefined` when it is unset (an empty value counts as unset). */
interface Variable<T> {
  read(raw: string | undefined): T;
}

/** A rule for a set variable's text, to be given a default or made optional. */
class Rule<T> {
  constructor(private readonly parse: (text: string) => T) {}

  /** Also requires `holds` of the value. */
  check(holds: (value: T) => boolean, problem: string): Rule<T> {
    return new Rule((text) => {
      const value = this.parse(text);
      if (!holds(value)) throw new RuleBroken(problem);
      return value;
    });
  }

  /** Applies `change` to the value once it has passed. */
  map<U>(change: (value: T) => U): Rule<U> {
    return new Rule((text) => change(this.parse(text)));
  }

  default(fallback: T): Variable<T> {
    return { read: (raw) => (raw === undefined ? fallback : this.parse(raw)) };
  }

  optional(): Variable<T | undefined> {
    return { read: (raw) => (raw === undefined ? undefined : this.parse(raw)) };
  }
}

/** The text as given, spaces included (a secret). */
const verbatim = () => new Rule((text) => text);

/** The text without surrounding spaces, `min` to `max` characters long. */
const text = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  new Rule((raw) => {
    const value = raw.trim();
    if (value.length < min) throw new RuleBroken(`must be at least ${min} character${min === 1 ? '' : 's'} long`);
    if (value.length > max) throw new RuleBroken(`must be at most ${max} characters long`);
    return value;
  });

const int = (min: number, max: number) =>
  new Rule((raw) => {
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new RuleBroken(`must be a whole number from ${min} to ${max}`);
    }
    return value;
  });

const oneOf = <const T extends string>(values: readonly T[]) =>
  new Rule((raw) => {
    const value = raw.trim();
    if (!(values as readonly string[]).includes(value)) throw new RuleBroken(`must be one of ${values.join(', ')}`);
    return value as T;
  });

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `15m`, `7d`, `500ms`, … into milliseconds. */
export function parseDuration(value: string): number {
  const match = DURATION.exec(value);
  if (!match) throw new Error(`not a duration: ${value}`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

const duration = () =>
  text()
    .check((value) => DURATION.test(value), 'must be a duration such as 500ms, 30s, 15m, 12h or 7d')
    .map(parseDuration)
    .check((ms) => ms > 0, 'must be longer than zero');

const url = (protocols: readonly string[]) =>
  text().check(
    (value) => URL.canParse(value) && protocols.includes(new URL(value).protocol),
    `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
  );

/** An absolute http(s) URL that can be a base of the API's paths. */
function isPublicUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '' && !value.includes('#') && !value.includes('?');
}

/** `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`: an address, with a prefix length that fits its family. */
function isAddressOrCidr(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  const family = isIP(address!);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

const trustedProxies = () =>
  text().map((value): boolean | string[] => {
    if (value === 'true' || value === 'false') return value === 'true';
    const entries = value.split(',').map((entry) => entry.trim());
    if (entries.every(isAddressOrCidr)) return entries;
    throw new RuleBroken('must be true, false or comma-separated proxy addresses/CIDRs');
  });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = {
  NODE_ENV: oneOf(['development', 'production', 'test']).default('development'),
  PORT: int(0, 65_535).default(3000),
  HOST: text(1).default('0.0.0.0'),

  DATABASE_URL: url(['postgres:', 'postgresql:']).default('postgres://postgres@127.0.0.1:5432/tasks'),
  DATABASE_POOL_SIZE: int(1, 500).default(10),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 60_000).default(2000),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379/0'),
  REDIS_KEY_PREFIX: text(1, 64).default('taskd:'),
  // Whom to believe about the client's address (X-Forwarded-For), for throttling and sessions:
  // `false`; the proxies' addresses or CIDRs, comma-separated (an ingress's pod network), so
  // that the address the outermost trusted proxy saw is taken and whatever a client wrote on
  // the left itself is ignored; or `true`, which believes the left-most entry, one a client
  // can set: only behind a proxy that overwrites the header.
  TRUST_PROXY: trustedProxies().default(false),

  BUFFER_PATH: text(1).default('./data/buffer'),
  BUFFER_MAX_ENTRIES: int(1, 100_000_000).default(100_000),
  BUFFER_MAX_BYTES: int(1024, 1024 ** 4).default(512 * 1024 * 1024),
  BUFFER_REPLAY_INTERVAL_MS: int(10, 3_600_000).default(1000),
  BUFFER_REPLAY_BATCH: int(1, 10_000).default(1000),
  BUFFER_USER_MAX_ENTRIES: int(1, 100_000_000).default(2_000),
  BUFFER_USER_MAX_BYTES: int(1024, 1024 ** 4).default(16 * 1024 * 1024),
  BUFFER_SET_ASIDE_MAX_ENTRIES: int(1, 100_000_000).default(10_000),
  BUFFER_SET_ASIDE_MAX_BYTES: int(1024, 1024 ** 4).default(64 * 1024 * 1024),
  WRITE_RETENTION: duration().default(parseDuration('7d')),
  REPLICA_ID: int(1, 1023).optional(),
  CLOCK_SKEW_MAX_MS: int(1, 3_600_000).default(500),

  JWT_SECRET: verbatim().optional(),
  // JWTs count whole seconds: under one, every access token would expire as it is issued.
  JWT_ACCESS_TTL: duration().check((ms) => ms >= 1000, 'must be at least 1s').default(parseDuration('15m')),
  JWT_ISSUER: text(1).default('taskd'),
  JWT_AUDIENCE: text(1).default('taskd-api'),
  REFRESH_TTL: duration().default(parseDuration('7d')),
  SESSION_MAX_TTL: duration().default(parseDuration('30d')),
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
  CORS_ORIGINS: text().default(''),
  PUBLIC_URL: text()
    .check(isPublicUrl, 'must be an absolute http(s) URL without query or fragment, such as https://tasks.example.com')
    .map((value) => value.replace(/\/+$/, ''))
    .optional(),
  LOG_LEVEL: oneOf(LOG_LEVELS).default('info'),
};

export type Env = { [Name in keyof typeof envSchema]: ReturnType<(typeof envSchema)[Name]['read']> };

/** What is wrong with an environment: the variable and the rule it breaks, in one line. */
export interface EnvProblem {
  variable: keyof Env;
  problem: string;
}

/**
 * Reads every variable of `source` (empty values already dropped), in the schema's order, and
 * then the rules between them. Returns the first problem met, if any.
 */
export function parseEnv(source: Readonly<Record<string, string>>): { env: Env } | EnvProblem {
  const env: Record<string, unknown> = {};
  for (const [name, variable] of Object.entries(envSchema) as [keyof Env, Variable<unknown>][]) {
    try {
      env[name] = variable.read(source[name]);
    } catch (error) {
      if (!(error instanceof RuleBroken)) throw error;
      return { variable: name, problem: error.message };
    }
  }
  const problem = problemBetween(env as Env);
  return problem ?? { env: env as Env };
}

/** The rules that hold between variables, once each is valid on its own. */
function problemBetween(env: Env): EnvProblem | undefined {
  if (env.NODE_ENV === 'production') {
    if (!env.JWT_SECRET || env.JWT_SECRET.length < 32) {
      return { variable: 'JWT_SECRET', problem: 'is required in production and must be at least 32 characters' };
    }
    if (/change.?me|secret|example|placeholder/i.test(env.JWT_SECRET)) {
      return { variable: 'JWT_SECRET', problem: 'looks like a placeholder; set a random value of at least 32 characters' };
    }
  } else if (env.JWT_SECRET !== undefined && env.JWT_SECRET.length < 32) {
    return { variable: 'JWT_SECRET', problem: 'must be at least 32 characters' };
  }
  if (env.LOGIN_BLOCK_MAX_SECONDS < env.LOGIN_BLOCK_SECONDS) {
    return { variable: 'LOGIN_BLOCK_MAX_SECONDS', problem: 'must not be shorter than LOGIN_BLOCK_SECONDS' };
  }
  if (env.SESSION_MAX_TTL < env.REFRESH_TTL) {
    return { variable: 'SESSION_MAX_TTL', problem: 'must not be shorter than REFRESH_TTL' };
  }
  return undefined;
}
