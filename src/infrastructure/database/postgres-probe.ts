/**
 * One connection to PostgreSQL outside the pool, kept for asking "can PostgreSQL be reached?".
 * The answer must not depend on how busy the pool is: with every pooled connection running a
 * slow query, a checkout waits, yet PostgreSQL is up; a round trip on a connection of its own
 * says so. A connection that fails or times out is closed, and the next check opens a new one,
 * so that each check also proves a connection can be opened. Checks that overlap (the
 * heartbeat, a readiness request, a suspicion) share one round trip: a connection runs one
 * statement at a time, and pg refuses (for now: warns) a query sent while another is running.
 */
import { Inject, Injectable } from '@nestjs/common';
import pg from 'pg';
import { within } from '../../common/util/within.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { SESSION_OPTIONS } from './pg-types.js';

export type ProbeResult = { ok: true } | { ok: false; error: Error };

@Injectable()
export class PostgresProbe {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /** One `SELECT 1`, connecting first if need be, within `timeoutMs` in all. */
  async check(timeoutMs: number): Promise<ProbeResult> {
    if (this.closed) return { ok: false, error: new Error('the probe is closed') };
    try {
      await within(this.roundTrip(), timeoutMs);
      return { ok: true };
    } catch (error) {
      this.discard();
      return { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private roundTrip(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const trip = this.connected()
      .then((client) => client.query('SELECT 1'))
      .then(() => undefined);
    this.inFlight = trip;
    const settled = () => {
      if (this.inFlight === trip) this.inFlight = undefined;
    };
    trip.then(settled, settled);
    return trip;
  }

  private connected(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.config.database.url,
      connectionTimeoutMillis: this.config.database.connectTimeoutMs,
      application_name: 'taskd-probe',
      options: SESSION_OPTIONS,
      keepAlive: true,
    });
    // A dead connection reports here too; the next check opens another.
    client.on('error', () => {
      if (this.client === client) this.discard();
    });
    try {
      await client.connect();
    } catch (error) {
      void client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      void client.end().catch(() => undefined);
      throw new Error('the probe is closed');
    }
    this.client = client;
    return client;
  }

  private discard(): void {
    const client = this.client;
    this.client = undefined;
    // The next check starts a round trip of its own, on a new connection.
    this.inFlight = undefined;
    // With a query in flight (a check that timed out) `end` destroys the socket at once.
    void client?.end().catch(() => undefined);
  }
}
