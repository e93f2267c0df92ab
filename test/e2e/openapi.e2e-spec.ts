/**
 * The OpenAPI document as a client relies on it: the one CI lints is the one `/docs-json`
 * serves; every operation is named, summarised, tagged and secured, lists its errors as problem
 * details and shows an example body; and the security it declares is the one the service
 * enforces. (Every response of every e2e suite is also checked against it: test/support.)
 */
import { randomUUID } from 'node:crypto';
import { buildOpenApiDocument } from '../../src/openapi.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

interface Operation {
  operationId?: string;
  summary?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<
    string,
    { content?: Record<string, { schema: { $ref?: string } }>; headers?: Record<string, unknown> }
  >;
}

interface Document {
  security?: Record<string, string[]>[];
  servers?: { url: string }[];
  info: { license?: { name: string } };
  tags?: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, { example?: unknown }> }> };
}

const PROBLEM = '#/components/schemas/ProblemDto';

describe('OpenAPI document (e2e)', () => {
  let t: TestApp;
  let user: TestUser;
  let document: Document;
  const operations: { method: string; path: string; operation: Operation }[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    user = await registerAndLogin(t.app);
    document = (await t.app.inject({ method: 'GET', url: '/docs-json' })).json();
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item))
        operations.push({ method, path, operation });
    }
  });

  afterAll(async () => {
    await t?.close();
  });

  const bearer = (operation: Operation) =>
    (operation.security ?? document.security ?? []).some((requirement) => 'bearer' in requirement);
  const urlOf = (path: string) => path.replace(/\{[^}]+\}/g, () => randomUUID());

  it('is the document that CI exports and lints', async () => {
    expect(JSON.parse(JSON.stringify(await buildOpenApiDocument()))).toEqual(document);
  });

  it('describes every business route, health and metrics', () => {
    expect(operations.map(({ method, path }) => `${method.toUpperCase()} ${path}`).sort()).toEqual(
      [
        'POST /api/v1/auth/register',
        'POST /api/v1/auth/login',
        'POST /api/v1/auth/refresh',
        'POST /api/v1/auth/logout',
        'GET /api/v1/auth/sessions',
        'DELETE /api/v1/auth/sessions',
        'DELETE /api/v1/auth/sessions/{id}',
        'GET /api/v1/profile',
        'PATCH /api/v1/profile',
        'PUT /api/v1/profile/password',
        'POST /api/v1/tasks',
        'GET /api/v1/tasks',
        'GET /api/v1/tasks/{id}',
        'PATCH /api/v1/tasks/{id}',
        'DELETE /api/v1/tasks/{id}',
        'GET /health/live',
        'GET /health/ready',
        'GET /metrics',
      ].sort(),
    );
    // No PUBLIC_URL in the suite's environment: no server, tools use the document's own address.
    expect(document.servers).toBeUndefined();
    expect(document.info.license?.name).toBeTruthy();
  });

  it('names, summarises, tags and secures every operation', () => {
    const tags = new Set(
      (document.tags ?? []).filter((tag) => tag.description).map((tag) => tag.name),
    );
    const ids = operations.map(({ operation }) => operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { method, path, operation } of operations) {
      const where = `${method.toUpperCase()} ${path}`;
      expect({ where, id: operation.operationId }).toEqual({
        where,
        id: expect.stringMatching(/^[a-z][A-Za-z]+$/),
      });
      expect({ where, summary: operation.summary }).toEqual({ where, summary: expect.any(String) });
      expect({
        where,
        tags: operation.tags?.length,
        known: tags.has(operation.tags?.[0] ?? ''),
      }).toEqual({ where, tags: 1, known: true });
      expect({ where, security: operation.security ?? document.security }).toEqual({
        where,
        security: expect.any(Array),
      });
    }
  });

  it('declares errors as problem details, with Retry-After on 429 and 503, and 500 and 504 everywhere', () => {
    for (const { method, path, operation } of operations) {
      const where = `${method.toUpperCase()} ${path}`;
      expect({ where, statuses: Object.keys(operation.responses) }).toEqual({
        where,
        statuses: expect.arrayContaining(['500', '504', ...(bearer(operation) ? ['401'] : [])]),
      });
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        if (Number(status) === 429 || Number(status) === 503) {
          expect({ where, status, headers: Object.keys(response.headers ?? {}) }).toEqual({
            where,
            status,
            headers: ['Retry-After', 'X-Request-Id'],
          });
        }
        // Readiness answers 503 with its Terminus body, which says which dependency is down.
        if (path === '/health/ready' && status === '503') continue;
        expect({ where, status, content: response.content }).toEqual({
          where,
          status,
          content: { 'application/problem+json': { schema: { $ref: PROBLEM } } },
        });
      }
    }
  });

  it('gives every request body a JSON schema whose every field has an example', () => {
    const withBody = operations.filter(({ operation }) => operation.requestBody);
    expect(withBody.map(({ operation }) => operation.operationId).sort()).toEqual([
      'changePassword',
      'createTask',
      'login',
      'refresh',
      'register',
      'updateProfile',
      'updateTask',
    ]);
    for (const { operation } of withBody) {
      const ref = operation.requestBody!.content['application/json']!.schema.$ref!;
      const schema = document.components.schemas[ref.split('/').pop()!]!;
      for (const [field, property] of Object.entries(schema.properties ?? {})) {
        expect({ operation: operation.operationId, field, example: property.example }).toEqual({
          operation: operation.operationId,
          field,
          example: expect.anything(),
        });
      }
    }
  });

  it('declares the bearer scheme exactly where the service demands a token', async () => {
    for (const { method, path, operation } of operations) {
      const res = await t.app.inject({ method: method.toUpperCase() as 'GET', url: urlOf(path) });
      const unauthenticated = res.statusCode === 401 && res.json().code === 'UNAUTHENTICATED';
      expect({ operation: operation.operationId, unauthenticated }).toEqual({
        operation: operation.operationId,
        unauthenticated: bearer(operation),
      });
    }
  });

  it('accepts the token of a logged-in user on every operation that declares the bearer scheme', async () => {
    // Read-only first, so that the token still works for the rest; the last ones end sessions.
    const order = ['GET', 'PATCH', 'PUT', 'POST', 'DELETE'];
    const secured = operations
      .filter(({ operation }) => bearer(operation))
      .sort(
        (a, b) => order.indexOf(a.method.toUpperCase()) - order.indexOf(b.method.toUpperCase()),
      );
    for (const { method, path, operation } of secured) {
      const res = await t.app.inject({
        method: method.toUpperCase() as 'GET',
        url: urlOf(path),
        headers: user.auth,
      });
      expect({ operation: operation.operationId, unauthenticated: res.statusCode === 401 }).toEqual(
        {
          operation: operation.operationId,
          unauthenticated: false,
        },
      );
      if (operation.operationId === 'logout' || operation.operationId === 'revokeAllSessions') {
        user = await registerAndLogin(t.app);
      }
    }
  });
});
