/**
 * The local LMDB environment at `BUFFER_PATH`: one environment per process, opened at start-up
 * and closed last, after the HTTP server has drained and the final replay has run. Features open
 * named databases inside it (`openDB`); the environment itself holds no business rule.
 */
import { mkdirSync } from 'node:fs';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { open } from 'lmdb';
import type { Database, RootDatabase } from 'lmdb';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';

@Injectable()
export class LmdbService implements OnApplicationShutdown {
  private readonly logger = new Logger(LmdbService.name);
  readonly root: RootDatabase;
  private closed = false;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    mkdirSync(config.buffer.path, { recursive: true });
    this.root = open({
      path: config.buffer.path,
      // BUFFER_PATH is a directory, whatever its name: left to itself lmdb takes a path whose
      // last segment has a dot (`/var/lib/taskd.buffer`) for a file and fails to open it.
      noSubdir: false,
      // Named databases (queue, dead letters, meta) share this environment.
      maxDbs: 16,
      // Writes are committed and synced to disk before `flushed` resolves; never `noSync`.
      overlappingSync: true,
      compression: false,
      mapSize: Math.max(64 * 1024 * 1024, config.buffer.maxBytes * 2),
    });
  }

  openDB<V, K extends string | number | (string | number)[] = string>(
    name: string,
    options: { encoding?: 'msgpack' | 'json' | 'string' | 'binary' | 'ordered-binary' } = {},
  ): Database<V, K> {
    return this.root.openDB<V, K>({ name, encoding: options.encoding ?? 'msgpack' });
  }

  isOpen(): boolean {
    return !this.closed;
  }

  /** A read that proves the environment answers. */
  check(): boolean {
    if (this.closed) return false;
    try {
      this.root.getStats();
      return true;
    } catch {
      return false;
    }
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.flushed;
    await this.root.close();
    this.logger.log('LMDB closed');
  }
}
