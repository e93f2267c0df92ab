/**
 * A client generated from the exported OpenAPI document works as written: `openapi-typescript`
 * turns the document into types, the session of test/generated-client/session.ts (register,
 * log in, create with only a title, list with a cursor, get with If-None-Match, update with
 * If-Match, a buffered write told apart from a direct one, delete, refresh, log out) is
 * type-checked against them by `tsc` under `strict`, `exactOptionalPropertyTypes` and
 * `noUncheckedIndexedAccess`, then run through `openapi-fetch` against the app on a real port,
 * with PostgreSQL cut at a proxy for the buffered write.
 * CI budget: 30 s
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import { buildOpenApiDocument } from '../../src/openapi.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const workDir = path.join(root, 'dist', 'generated-client');

/** The compiler options a careful client author turns on. */
const TSCONFIG = {
  compilerOptions: {
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    module: 'nodenext',
    moduleResolution: 'nodenext',
    target: 'es2023',
    lib: ['es2024'],
    types: ['node'],
    noEmit: true,
    skipLibCheck: true,
  },
  files: ['session.ts', 'openapi.ts'],
};

interface SessionModule {
  runSession(baseUrl: string, hooks: { cutDatabase(): Promise<void>; restoreDatabase(): Promise<void> }): Promise<{ steps: string[] }>;
}

describe('a client generated from the document (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(workDir, { recursive: true });
    const types = astToString(await openapiTS(JSON.parse(JSON.stringify(await buildOpenApiDocument()))));
    writeFileSync(path.join(workDir, 'openapi.ts'), types);
    copyFileSync(path.join(root, 'test', 'generated-client', 'session.ts'), path.join(workDir, 'session.ts'));
    writeFileSync(path.join(workDir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    const target = new URL(PG_URL);
    proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    t = await startTestApp({ databaseHostPort: proxy.hostPort, listen: true, env: { REQUEST_TIMEOUT_MS: '5000' } });
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  it('type-checks the session against the generated types, strictly', () => {
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', workDir], {
      encoding: 'utf8',
    });
    expect({ status: tsc.status, output: `${tsc.stdout}${tsc.stderr}` }).toEqual({ status: 0, output: '' });
  });

  it('runs the session through openapi-fetch, a buffered write told apart from a direct one', async () => {
    const session = (await import(pathToFileURL(path.join(workDir, 'session.ts')).href)) as SessionModule;
    const readiness = async () =>
      (await fetch(`${t.url}/health/ready`)).json() as Promise<{ details: Record<string, { status: string }> }>;
    const { steps } = await session.runSession(t.url, {
      async cutDatabase() {
        proxy.cut();
        await waitUntil('the app sees PostgreSQL down', async () => (await readiness()).details.postgres?.status === 'down');
      },
      async restoreDatabase() {
        proxy.pass();
        const database = t.app.get(PostgresAvailability);
        const buffer = t.app.get(LmdbBuffer);
        await waitUntil('the buffer is replayed', () => database.isUp() && buffer.depth === 0);
      },
    });
    expect(steps).toEqual([
      expect.stringMatching(/^register 201 generated-/),
      'login 200 Bearer',
      'create 201 todo medium',
      'create 201 todo medium',
      'create 201 todo medium',
      'list 2+1 last=null',
      'get 200 "1"; again 304',
      'update 200 version 2 dueAt 2026-04-01T00:00:00.000Z',
      'buffered update 202 buffered done; buffered create buffered 202',
      'replayed done version 3',
      'delete 204',
      'refresh 200',
      'logout 204',
      'after logout 401 UNAUTHENTICATED Bearer error="invalid_token"',
    ]);
  });
});
