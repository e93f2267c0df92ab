/**
 * LmdbService against a real LMDB environment: BUFFER_PATH names a directory, whatever its name.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AppConfig } from '../../config/app-config.js';
import { LmdbService } from './lmdb.service.js';

function serviceAt(bufferPath: string): LmdbService {
  const config = { buffer: { path: bufferPath, maxBytes: 1024 * 1024 } } as AppConfig;
  return new LmdbService(config);
}

describe('LmdbService', () => {
  let parent: string;

  beforeEach(() => {
    parent = mkdtempSync(path.join(tmpdir(), 'lmdb-service-'));
  });

  afterEach(() => {
    rmSync(parent, { recursive: true, force: true });
  });

  it.each(['buffer', 'taskd.buffer', 'buffer.v1.d'])('opens "%s" as a directory and keeps what it was given', async (name) => {
    const bufferPath = path.join(parent, name);
    const first = serviceAt(bufferPath);
    const db = first.openDB<{ n: number }>('test');
    await db.put('k', { n: 1 });
    await first.onApplicationShutdown();

    expect(statSync(bufferPath).isDirectory()).toBe(true);
    expect(existsSync(path.join(bufferPath, 'data.mdb'))).toBe(true);
    const second = serviceAt(bufferPath);
    expect(second.openDB<{ n: number }>('test').get('k')).toEqual({ n: 1 });
    expect(second.check()).toBe(true);
    await second.onApplicationShutdown();
    expect(second.check()).toBe(false);
  });
});
