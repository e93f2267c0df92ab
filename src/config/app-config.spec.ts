import { ConfigError, loadConfig } from './app-config.js';
import { parseDuration } from './env.schema.js';

const failure = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (error) {
    return error;
  }
  throw new Error('expected loadConfig to fail');
};

describe('loadConfig', () => {
  it('applies the documented defaults (.env.example)', () => {
    const config = loadConfig({});
    expect(config.http).toMatchObject({ port: 3000, host: '0.0.0.0', bodyLimit: 102_400, requestTimeoutMs: 10_000, corsOrigins: [] });
    expect(config.database.url).toBe('postgres://postgres@127.0.0.1:5432/tasks');
    expect(config.redis.url).toBe('redis://127.0.0.1:6379/0');
    expect(config.buffer).toMatchObject({ path: './data/buffer', maxEntries: 100_000, replayIntervalMs: 1000 });
    expect(config.auth).toMatchObject({ accessTtlMs: 15 * 60_000, refreshTtlMs: 7 * 86_400_000, sessionMaxTtlMs: 30 * 86_400_000 });
    expect(config.shutdown).toEqual({ drainMs: 0, timeoutMs: 25_000 });
    expect(config.logLevel).toBe('info');
  });

  it('generates a random JWT secret outside production and says so', () => {
    const a = loadConfig({});
    const b = loadConfig({});
    expect(a.auth.jwtSecretGenerated).toBe(true);
    expect(a.auth.jwtSecret.length).toBeGreaterThanOrEqual(32);
    expect(a.auth.jwtSecret).not.toBe(b.auth.jwtSecret);
  });

  it('drains 5 s by default in production', () => {
    const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'k'.repeat(8) + 'Zq81LmX0pQ72vR5sT9uW3yA6bC4dE' });
    expect(config.shutdown.drainMs).toBe(5000);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://localhost/x' }, 'DATABASE_URL'],
    [{ REDIS_URL: 'not a url' }, 'REDIS_URL'],
    [{ BUFFER_MAX_ENTRIES: '0' }, 'BUFFER_MAX_ENTRIES'],
    [{ JWT_ACCESS_TTL: '15 minutes' }, 'JWT_ACCESS_TTL'],
    // Tokens count whole seconds: under one, every access token would expire as it is issued.
    [{ JWT_ACCESS_TTL: '500ms' }, 'JWT_ACCESS_TTL'],
    [{ REFRESH_TTL: '40d' }, 'SESSION_MAX_TTL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ TRUST_PROXY: 'yes' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.0/8, ingress.local' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.0/99' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.0/x' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: 'fd00::/129' }, 'TRUST_PROXY'],
    [{ JWT_SECRET: 'short' }, 'JWT_SECRET'],
    [{ NODE_ENV: 'production' }, 'JWT_SECRET'],
    [{ NODE_ENV: 'production', JWT_SECRET: 'change-me-change-me-change-me-change-me' }, 'JWT_SECRET'],
  ])('refuses %j with one line naming %s', (env, variable) => {
    const error = failure(env);
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain(variable);
    expect(message.split('\n')).toHaveLength(1);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT must be a whole number from 0 to 65535'],
    [{ PORT: '80.5' }, 'PORT must be a whole number from 0 to 65535'],
    [{ PORT: '   ' }, 'PORT must be a whole number from 0 to 65535'],
    [{ HOST: '  ' }, 'HOST must be at least 1 character long'],
    [{ REDIS_KEY_PREFIX: 'p'.repeat(65) }, 'REDIS_KEY_PREFIX must be at most 64 characters long'],
    [{ DATABASE_URL: 'mysql://localhost/x' }, 'DATABASE_URL must be a URL starting with postgres:// or postgresql://'],
    [{ WRITE_RETENTION: '0s' }, 'WRITE_RETENTION must be longer than zero'],
    [{ JWT_ACCESS_TTL: '500ms' }, 'JWT_ACCESS_TTL must be at least 1s'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent'],
    [{ PUBLIC_URL: 'https://tasks.example.com/?a=1' }, 'PUBLIC_URL must be an absolute http(s) URL without query or fragment, such as https://tasks.example.com'],
    [{ LOGIN_BLOCK_SECONDS: '600', LOGIN_BLOCK_MAX_SECONDS: '60' }, 'LOGIN_BLOCK_MAX_SECONDS must not be shorter than LOGIN_BLOCK_SECONDS'],
  ])('says what is wrong with %j: %s', (env, message) => {
    expect((failure(env) as Error).message).toBe(`Invalid configuration: ${message}`);
  });

  it('names the first variable in the schema\'s order that is wrong, before the rules between variables', () => {
    expect((failure({ LOG_LEVEL: 'loud', PORT: 'x', REFRESH_TTL: '40d' }) as Error).message).toMatch(/^Invalid configuration: PORT /);
  });

  it('reads values without surrounding spaces, except the secret, which is taken as given', () => {
    const secret = ' Zq81LmX0pQ72vR5sT9uW3yA6bC4dEkkk ';
    const config = loadConfig({ PORT: ' 8080 ', LOG_LEVEL: ' debug ', JWT_ACCESS_TTL: ' 5m ', PUBLIC_URL: ' https://tasks.example.com/ ', JWT_SECRET: secret });
    expect(config.http.port).toBe(8080);
    expect(config.logLevel).toBe('debug');
    expect(config.auth.accessTtlMs).toBe(5 * 60_000);
    expect(config.http.publicUrl).toBe('https://tasks.example.com');
    expect(config.auth.jwtSecret).toBe(secret);
  });

  it('reads TRUST_PROXY as false, true or the trusted proxies\' addresses and CIDRs', () => {
    expect(loadConfig({}).http.trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: ' 10.0.0.0/8, 192.168.1.7 ,fd00::/8' }).http.trustProxy).toEqual(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    expect(loadConfig({ TRUST_PROXY: '0.0.0.0/0,::/0,10.1.2.3/32' }).http.trustProxy).toEqual(['0.0.0.0/0', '::/0', '10.1.2.3/32']);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', CORS_ORIGINS: '' }).http.port).toBe(3000);
  });

  it('parses CORS origins', () => {
    expect(loadConfig({ CORS_ORIGINS: '*' }).http.corsOrigins).toBe('*');
    expect(loadConfig({ CORS_ORIGINS: 'https://a.example, https://b.example' }).http.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });

  it('parses durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(() => parseDuration('2 weeks')).toThrow();
  });
});
