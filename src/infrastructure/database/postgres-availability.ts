/**
 * Whether PostgreSQL can be reached: the circuit breaker of the write path. While it is open
 * (`down`), writes go to the offline buffer and reads answer 503 at once.
 *
 * Only a real outage opens it. A statement that fails in a way that may mean one (a connection
 * refused, reset or timed out) only raises a suspicion; the verdict comes from the probe, a
 * connection outside the pool: two checks in a row that fail open the breaker. A busy pool (every
 * connection taken, a checkout waiting) and a statement timeout (SQLSTATE 57014) say nothing
 * about reachability and never get here. A heartbeat checks once a second too, so that a
 * network that silently drops everything is noticed without waiting for a statement to fail.
 *
 * Connecting is the same job whether the process just started or PostgreSQL came back: the
 * database exists (created outside production), the probe answers, the data source is
 * initialised (once: the pool reconnects by itself afterwards), pending migrations are applied;
 * then the breaker closes. Until then the heartbeat tries again every second.
 */
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { DataSource } from 'typeorm';
import { runAsJob } from '../../common/context/background-job.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { DatabaseCreator } from './database-creator.js';
import { PostgresProbe } from './postgres-probe.js';
import { SchemaMigrator } from './schema-migrator.js';

export type PostgresState = 'connecting' | 'up' | 'down';

/** Failed checks in a row on the probe connection that open the breaker. */
const FAILED_CHECKS_TO_OPEN = 2;
const HEARTBEAT_MS = 1_000;

@Injectable()
export class PostgresAvailability implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PostgresAvailability.name);
  private state: PostgresState = 'connecting';
  private connecting: Promise<void> | undefined;
  private confirming: Promise<boolean> | undefined;
  private failedAttempts = 0;
  private stopped = false;
  private readonly listeners = new Set<(state: PostgresState) => void>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly probe: PostgresProbe,
    private readonly creator: DatabaseCreator,
    private readonly migrator: SchemaMigrator,
  ) {}

  isUp(): boolean {
    return this.state === 'up';
  }

  getState(): PostgresState {
    return this.state;
  }

  /** Calls `listener` on every change of state; returns the function that unregisters it. */
  onStateChange(listener: (state: PostgresState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onModuleInit(): void {
    void this.connect();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([this.connecting, this.confirming]);
    await this.probe.close();
  }

  /**
   * A statement failed in a way that may mean PostgreSQL cannot be reached: the probe decides
   * (see the header). Resolves true when PostgreSQL is up after all.
   */
  suspect(): Promise<boolean> {
    if (this.state !== 'up') return Promise.resolve(false);
    return this.confirm();
  }

  /** Resolves once a check in progress (if any) has decided; true when PostgreSQL is up. */
  async settled(): Promise<boolean> {
    await this.confirming;
    return this.isUp();
  }

  /**
   * A round trip on the probe connection, for readiness: never queued behind the pool. A failure
   * is a suspicion like any other.
   */
  async ping(timeoutMs: number): Promise<boolean> {
    if (this.state !== 'up') return false;
    if ((await this.probe.check(timeoutMs)).ok) return true;
    return this.confirm();
  }

  @Interval('postgres-heartbeat', HEARTBEAT_MS)
  heartbeat(): void {
    if (this.stopped) return;
    if (this.state === 'up') void this.confirm();
    else void this.connect();
  }

  private confirm(): Promise<boolean> {
    // A job of its own, whichever request's failure asked for it (background-job.ts).
    this.confirming ??= runAsJob('postgres-check', () => this.checkRepeatedly()).finally(() => {
      this.confirming = undefined;
    });
    return this.confirming;
  }

  private async checkRepeatedly(): Promise<boolean> {
    let failure: Error | undefined;
    for (let check = 0; check < FAILED_CHECKS_TO_OPEN; check += 1) {
      const result = await this.probe.check(this.config.database.connectTimeoutMs);
      if (result.ok) return true;
      failure = result.error;
    }
    if (this.state === 'up' && !this.stopped) {
      this.logger.warn({ err: summary(failure) }, 'PostgreSQL unreachable; circuit opened');
      this.setState('down');
      void this.connect();
    }
    return false;
  }

  /** Connects and migrates unless an attempt is already running; the heartbeat retries. */
  private connect(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.connecting ??= runAsJob('postgres-connect', () => this.connectOnce()).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectOnce(): Promise<void> {
    try {
      await this.creator.ensureDatabaseExists();
      const probe = await this.probe.check(this.config.database.connectTimeoutMs);
      if (!probe.ok) throw probe.error;
      if (!this.dataSource.isInitialized) await this.dataSource.initialize();
      await this.migrator.migrate();
      if (this.stopped) return;
      this.failedAttempts = 0;
      this.setState('up');
      this.logger.log('PostgreSQL connected and migrated');
    } catch (error) {
      this.failedAttempts += 1;
      if (this.state !== 'down') this.setState('down');
      if (this.failedAttempts === 1 || this.failedAttempts % 30 === 0) {
        this.logger.warn({ err: summary(error), attempt: this.failedAttempts }, 'PostgreSQL not reachable; retrying');
      }
    }
  }

  private setState(state: PostgresState): void {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }
}

function summary(error: unknown): { message: string; code?: string } {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? { message, code } : { message };
}
