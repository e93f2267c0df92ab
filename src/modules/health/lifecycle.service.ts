/**
 * The life cycle of this instance (docs/architecture.md, "Life cycle"), as readiness sees it:
 * `starting` until every module is up, `ready`, then `shutting_down` from the first signal.
 * On shutdown it turns readiness to 503 at once and holds the HTTP server open for
 * `SHUTDOWN_DRAIN_MS`, so load balancers stop sending before connections close; meanwhile every
 * answer says `Connection: close`, so keep-alive clients move away too (ConnectionDrain).
 */
import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionDrain } from '../../common/http/connection-drain.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';

export type Phase = 'starting' | 'ready' | 'shutting_down';

@Injectable()
export class LifecycleService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(LifecycleService.name);
  private phase: Phase = 'starting';

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly connections: ConnectionDrain,
  ) {}

  getPhase(): Phase {
    return this.phase;
  }

  onApplicationBootstrap(): void {
    this.phase = 'ready';
  }

  /** Runs before the HTTP server closes: readiness fails first, then the drain pause. */
  async beforeApplicationShutdown(signal?: string): Promise<void> {
    this.phase = 'shutting_down';
    this.connections.closeAfterEachAnswer();
    const { drainMs } = this.config.shutdown;
    this.logger.log({ signal, drainMs }, 'shutting down: readiness now fails');
    if (drainMs > 0) await sleep(drainMs);
    await this.connections.closeListenerWhenQuiet();
  }
}
