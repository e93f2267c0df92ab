import { startTestApp, type TestApp } from '../support/test-app.js';

describe('foundation (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('answers unknown routes with a 404 problem', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/v1/nope?x=1' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json();
    expect(body).toEqual({
      type: 'https://httpstatuses.io/404',
      title: 'Not Found',
      status: 404,
      code: 'NOT_FOUND',
      detail: expect.any(String),
      instance: '/api/v1/nope',
      requestId: res.headers['x-request-id'],
    });
  });

  it('keeps a valid X-Request-Id and replaces an invalid one', async () => {
    const kept = await t.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'client.id:42-a_b' } });
    expect(kept.headers['x-request-id']).toBe('client.id:42-a_b');

    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '']) {
      const replaced = await t.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': bad } });
      expect(replaced.headers['x-request-id']).not.toBe(bad);
      expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    }
  });

  it('puts the request id in error bodies', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'trace-123' } });
    expect(res.json().requestId).toBe('trace-123');
  });

  it('reports liveness without checking dependencies: the process indicator alone, every time', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/health/live' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ status: 'ok', info: { process: { status: 'up' } }, error: {}, details: { process: { status: 'up' } } });
    }
  });

  it('reports readiness with one entry per dependency', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'ok',
      details: { postgres: { status: 'up' }, redis: { status: 'up' }, buffer: { status: 'up' } },
    });
  });

  it('serves Swagger UI and the OpenAPI document with a bearer scheme', async () => {
    const ui = await t.app.inject({ method: 'GET', url: '/docs' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toMatch(/text\/html/);
    const doc = await t.app.inject({ method: 'GET', url: '/docs-json' });
    expect(doc.statusCode).toBe(200);
    const openapi = doc.json();
    expect(openapi.openapi).toMatch(/^3\./);
    expect(openapi.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('sets security headers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/live' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toBeDefined();
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('ran the migrations into its own database', async () => {
    const { withDatabase } = await import('../support/test-app.js');
    const rows = await withDatabase(t.databaseName, async (client) =>
      (await client.query<{ name: string }>('SELECT name FROM migrations ORDER BY id')).rows,
    );
    expect(rows.map((r) => r.name)).toContain('CreateUsers1764000000000');
  });
});

describe('CORS (e2e)', () => {
  const lines: string[] = [];
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      env: { CORS_ORIGINS: 'https://app.example', LOG_LEVEL: 'info' },
      logDestination: { write: (line: string) => void lines.push(line) },
    });
  });

  afterAll(async () => {
    await t.close();
  });

  it('answers a preflight from an allowed origin, and logs it as a plain completed request', async () => {
    const res = await t.app.inject({
      method: 'OPTIONS',
      url: '/api/v1/tasks',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, idempotency-key',
      },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-allow-methods']).toContain('POST');
    expect(res.headers['x-request-id']).toEqual(expect.any(String));
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const logged = lines.map((line) => JSON.parse(line) as { level: string; msg: string; method?: string; err?: unknown });
    const preflight = logged.filter((line) => line.msg === 'request completed' && line.method === 'OPTIONS');
    expect(preflight).toEqual([expect.objectContaining({ level: 'info', statusCode: 204 })]);
    expect(preflight[0]).not.toHaveProperty('err');
    expect(logged.filter((line) => line.level !== 'info')).toEqual([]);
  });

  it('lets an allowed origin read the headers a client needs, and no other origin', async () => {
    const allowed = await t.app.inject({ method: 'GET', url: '/health/live', headers: { origin: 'https://app.example' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(allowed.headers['access-control-expose-headers']).toContain('X-Request-Id');
    const other = await t.app.inject({ method: 'GET', url: '/health/live', headers: { origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });
});
