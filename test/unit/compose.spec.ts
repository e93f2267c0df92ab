/**
 * `docker-compose.yml`, checked without a Docker engine. The Compose schema itself is checked in
 * CI by `docker-compose config` (.ci/run); this suite checks what the schema cannot know: the app
 * waits for healthy dependencies, keeps its buffer on a named volume at BUFFER_PATH, passes only
 * variables the service reads, holds no literal secret, and its environment — as compose would
 * interpolate it — is one the service accepts in production.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { loadConfig } from '../../src/config/app-config.js';
import { envSchema } from '../../src/config/env.schema.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface ComposeService {
  build?: string | { context: string };
  image?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] | string };
  stop_grace_period?: string;
  read_only?: boolean;
  tmpfs?: string[];
  command?: string[] | string;
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

function loadCompose(): ComposeFile {
  const doc = parseDocument(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'));
  if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '));
  return doc.toJS() as ComposeFile;
}

/** Compose variable substitution: `${X}`, `${X:-default}`, `${X-default}`, `${X:?error}`, `${X?error}`. */
function interpolate(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g,
    (_all, name: string, op?: string, arg?: string) => {
      const current = vars[name];
      switch (op) {
        case ':-':
          return current ? current : arg!;
        case '-':
          return current ?? arg!;
        case ':?':
        case '?':
          if (op === ':?' ? !current : current === undefined)
            throw new Error(`${name} is required: ${arg}`);
          return current!;
        default:
          return current ?? '';
      }
    },
  );
}

function seconds(duration: string): number {
  const match = /^(\d+)(s|m)$/.exec(duration);
  if (!match) throw new Error(`not a duration: ${duration}`);
  return Number(match[1]) * (match[2] === 'm' ? 60 : 1);
}

describe('docker-compose.yml', () => {
  const compose = loadCompose();
  const app = compose.services.app!;
  const environment = app.environment ?? {};
  const required = { JWT_SECRET: 'j'.repeat(48), POSTGRES_PASSWORD: 'local-password' };

  it('runs the app built from this directory beside PostgreSQL and Redis', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['app', 'postgres', 'redis']);
    expect(app.build).toBe('.');
    expect(compose.services.postgres!.image).toMatch(/^postgres:1[56](\.\d+)?-/);
    expect(compose.services.redis!.image).toMatch(/^redis:7(\.\d+)?-/);
  });

  it('starts the app once PostgreSQL and Redis report healthy', () => {
    expect(app.depends_on).toEqual({
      postgres: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
    });
    for (const name of ['postgres', 'redis']) {
      const test = compose.services[name]!.healthcheck?.test;
      expect(Array.isArray(test) ? test.slice(1).join(' ') : test).toMatch(
        /pg_isready|redis-cli ping/,
      );
    }
  });

  it('keeps the buffer and the database on named volumes', () => {
    const named = Object.keys(compose.volumes ?? {});
    const bufferPath = environment.BUFFER_PATH;
    const bufferVolume = app.volumes
      ?.map((v) => v.split(':'))
      .find(([, target]) => target === bufferPath);
    expect(bufferVolume).toBeDefined();
    expect(named).toContain(bufferVolume![0]);
    const pgData = compose.services
      .postgres!.volumes?.map((v) => v.split(':'))
      .find(([, target]) => target === '/var/lib/postgresql/data');
    expect(named).toContain(pgData?.[0]);
  });

  it("runs Redis durably, as the hand-off of a leaving replica's writes requires, on a named volume", () => {
    const redis = compose.services.redis!;
    const command = Array.isArray(redis.command) ? redis.command.join(' ') : (redis.command ?? '');
    expect(command).toMatch(/--appendonly yes\b/);
    expect(command).toMatch(/--appendfsync always\b/);
    expect(command).toMatch(/--maxmemory-policy noeviction\b/);
    const data = redis.volumes?.map((v) => v.split(':')).find(([, target]) => target === '/data');
    expect(Object.keys(compose.volumes ?? {})).toContain(data?.[0]);
  });

  it('writes nowhere but its volumes, as on Kubernetes', () => {
    expect(app.read_only).toBe(true);
    expect(app.tmpfs).toEqual(['/tmp']);
  });

  it('passes only variables the service reads', () => {
    const known = Object.keys(envSchema);
    expect(Object.keys(environment).filter((k) => !known.includes(k))).toEqual([]);
  });

  it('holds no literal secret: secrets are required from the environment', () => {
    expect(environment.JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?[^}]+\}$/);
    expect(environment.DATABASE_URL).toMatch(/\$\{POSTGRES_PASSWORD:\?[^}]+\}/);
    expect(compose.services.postgres!.environment?.POSTGRES_PASSWORD).toMatch(
      /^\$\{POSTGRES_PASSWORD:\?[^}]+\}$/,
    );
    expect(() => interpolate(environment.JWT_SECRET!, {})).toThrow(/JWT_SECRET is required/);
  });

  it('gives the service a production configuration it accepts', () => {
    const env = Object.fromEntries(
      Object.entries(environment).map(([k, v]) => [k, interpolate(String(v), required)]),
    );
    const config = loadConfig(env);
    expect(config.isProduction).toBe(true);
    expect(config.database.url).toBe('postgres://taskd:local-password@postgres:5432/tasks');
    expect(config.redis.url).toBe('redis://redis:6379/0');
    const postgres = compose.services.postgres!.environment!;
    expect(new URL(config.database.url).pathname).toBe(`/${postgres.POSTGRES_DB}`);
    expect(new URL(config.database.url).username).toBe(postgres.POSTGRES_USER);
  });

  it('gives a stop more time than the drain and the shutdown timeout', () => {
    const env = Object.fromEntries(
      Object.entries(environment).map(([k, v]) => [k, interpolate(String(v), required)]),
    );
    const { shutdown } = loadConfig(env);
    expect(seconds(app.stop_grace_period!) * 1000).toBeGreaterThan(
      shutdown.drainMs + shutdown.timeoutMs,
    );
  });

  it('puts the buffer where the image declares its volume', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain(`VOLUME ["${environment.BUFFER_PATH}"]`);
  });
});
