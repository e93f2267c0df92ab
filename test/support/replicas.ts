/**
 * Several replicas of the built server as real processes, the way the manifests run them: one
 * PostgreSQL database and one Redis shared by all (a key prefix of their own), each replica with
 * its own buffer directory, its own tag, and its own fault proxy to PostgreSQL, so that a test
 * can cut PostgreSQL for one replica and not another, kill a replica (SIGKILL or SIGTERM) and
 * start it again on the same volume, and shift a replica's clock (a preload, not production
 * code: `clock-skew.mjs`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultProxy } from './fault-proxy.js';
import { freePort, spawnServer, waitForStatus, type ServerProcess } from './server-process.js';
import { databaseUrlFor, dropDatabase, PG_URL, REDIS_URL, uniqueName } from './test-app.js';

const CLOCK_SKEW_PRELOAD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'clock-skew.mjs');

export interface ReplicaOptions {
  /** Replicas to start. */
  count: number;
  /** Extra environment for every replica. */
  env?: Record<string, string>;
  /** Clock skew per replica (ms), by index. */
  clockSkewMs?: number[];
  /** Redis for the replicas (default: the shared one). */
  redisUrl?: string;
}

export interface BufferState {
  postgres: 'up' | 'down';
  depth: number;
  parked: number;
  setAside: number;
}

export class Replica {
  process: ServerProcess | undefined;
  /** What the last process wrote, once it has stopped. */
  private lastOutput = '';
  readonly url: string;

  constructor(
    readonly index: number,
    readonly port: number,
    readonly proxy: FaultProxy,
    readonly bufferPath: string,
    private readonly env: Record<string, string>,
    private readonly skewMs: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Starts the process (again, on the same volume) and waits until it is ready. */
  async start(): Promise<void> {
    const nodeArgs = this.skewMs === 0 ? [] : ['--import', CLOCK_SKEW_PRELOAD];
    const env = this.skewMs === 0 ? this.env : { ...this.env, TEST_CLOCK_SKEW_MS: String(this.skewMs) };
    const started = spawnServer(env, this.port, nodeArgs);
    this.process = started;
    let ready = false;
    const exitedEarly = started.exited.then(() => {
      if (!ready) throw new Error(`replica ${this.index} exited while starting:\n${started.output().slice(-3000)}`);
    });
    try {
      await Promise.race([waitForStatus(`${this.url}/health/ready`, 200, 30_000), exitedEarly]);
      if (!this.isCut) await Promise.race([this.postgresUp(30_000), exitedEarly]);
    } finally {
      ready = true;
    }
  }

  /** Stops the process with `signal`; resolves with its exit once it has ended. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const running = this.process;
    if (!running) return { code: null, signal: null };
    running.child.kill(signal);
    const exit = await running.exited;
    this.lastOutput = running.output();
    this.process = undefined;
    return exit;
  }

  /** PostgreSQL unreachable from this replica (its proxy refuses and resets). */
  cut(): void {
    this.proxy.cut();
  }

  restore(): void {
    this.proxy.pass();
  }

  get isCut(): boolean {
    return this.proxy.currentMode !== 'pass';
  }

  /** Waits until this replica has connected to PostgreSQL and migrated. */
  async postgresUp(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((await this.buffer()).postgres !== 'up') {
      if (Date.now() > until) throw new Error(`replica ${this.index} did not reach PostgreSQL within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The buffer as this replica's readiness reports it. */
  async buffer(): Promise<BufferState> {
    const body = (await (await this.fetch('/health/ready')).json()) as {
      details: { postgres: { status: 'up' | 'down' }; buffer: { depth: number; parked: number; setAside: number } };
    };
    const { depth, parked, setAside } = body.details.buffer;
    return { postgres: body.details.postgres.status, depth, parked, setAside };
  }

  /** `fetch` of a path on this replica; a failure says what the replica was doing (most often: it died). */
  async fetch(path: string, init?: RequestInit): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, init);
    } catch (error) {
      const cause = (error as Error).cause;
      throw new Error(`${init?.method ?? 'GET'} ${path} to replica ${this.index}: ${String(error)} (${String(cause)})\n${this.output().slice(-3000)}`, {
        cause: error,
      });
    }
  }

  output(): string {
    return this.process?.output() ?? this.lastOutput;
  }
}

export class ReplicaSet {
  private constructor(
    readonly databaseName: string,
    readonly redisKeyPrefix: string,
    readonly jwtSecret: string,
    readonly replicas: Replica[],
  ) {}

  static async start(options: ReplicaOptions): Promise<ReplicaSet> {
    const databaseName = uniqueName();
    const jwtSecret = randomBytes(32).toString('hex');
    const replicas: Replica[] = [];
    const set = new ReplicaSet(databaseName, `${databaseName}:`, jwtSecret, replicas);
    try {
      for (let index = 0; index < options.count; index += 1) {
        const proxy = await FaultProxy.towards(PG_URL);
        const bufferPath = mkdtempSync(path.join(tmpdir(), `taskd-replica-${index}-`));
        const port = await freePort();
        const env: Record<string, string> = {
          NODE_ENV: 'test',
          DATABASE_URL: databaseUrlFor(databaseName, proxy.hostPort),
          REDIS_URL: options.redisUrl ?? REDIS_URL,
          REDIS_KEY_PREFIX: `${databaseName}:`,
          BUFFER_PATH: bufferPath,
          JWT_SECRET: jwtSecret,
          REPLICA_ID: String(index + 1),
          BUFFER_REPLAY_INTERVAL_MS: '100',
          DATABASE_CONNECT_TIMEOUT_MS: '1000',
          SHUTDOWN_DRAIN_MS: '0',
          LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
          // Clients of these tests come from one address; the login throttle is not under test.
          LOGIN_MAX_FAILURES_PER_IP: '100000',
          REGISTER_MAX_PER_IP: '100000',
          ...options.env,
        };
        const replica = new Replica(index, port, proxy, bufferPath, env, options.clockSkewMs?.[index] ?? 0);
        replicas.push(replica);
        await replica.start();
      }
      return set;
    } catch (error) {
      await set.close();
      throw error;
    }
  }

  get(index: number): Replica {
    return this.replicas[index]!;
  }

  /**
   * Waits until every running replica (or those given) reaches PostgreSQL and holds no write,
   * queued or parked.
   */
  async drained(timeoutMs = 60_000, only?: number[]): Promise<void> {
    await this.until('drain', timeoutMs, (state) => state.postgres === 'up' && state.depth === 0 && state.parked === 0, only);
  }

  /** Waits until `condition` holds of every running replica (or those given). */
  async until(what: string, timeoutMs: number, condition: (state: BufferState) => boolean, only?: number[]): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const watched = this.replicas.filter((replica) => replica.process && (!only || only.includes(replica.index)));
      const states = await Promise.all(watched.map(async (replica) => ({ index: replica.index, ...(await replica.buffer()) })));
      if (states.every(condition)) return;
      if (Date.now() > until) throw new Error(`the replicas did not ${what} within ${timeoutMs} ms: ${JSON.stringify(states)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async close(): Promise<void> {
    for (const replica of this.replicas) {
      replica.restore();
      await replica.stop('SIGKILL').catch(() => undefined);
      await replica.proxy.close();
      rmSync(replica.bufferPath, { recursive: true, force: true });
    }
    await dropDatabase(this.databaseName).catch(() => undefined);
  }
}

/** A small HTTP client for one user, against any replica. */
export class Client {
  constructor(
    readonly userId: string,
    readonly email: string,
    private readonly accessToken: string,
  ) {}

  static async signUp(replica: Replica, label = 'user'): Promise<Client> {
    const email = `${label}-${randomBytes(6).toString('hex')}@example.test`;
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const registered = await replica.fetch(`/api/v1/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password, name: label }),
    });
    if (registered.status !== 201) throw new Error(`register: ${registered.status} ${await registered.text()}`);
    const { id } = (await registered.json()) as { id: string };
    const login = await replica.fetch(`/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    if (login.status !== 200) throw new Error(`login: ${login.status} ${await login.text()}`);
    const { accessToken } = (await login.json()) as { accessToken: string };
    return new Client(id, email, accessToken);
  }

  async send(
    replica: Replica,
    method: string,
    url: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Headers; body: unknown }> {
    const response = await replica.fetch(`${url}`, {
      method,
      headers: {
        authorization: `Bearer ${this.accessToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
  }
}
