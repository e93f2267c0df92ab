/**
 * Requests generated from the OpenAPI document's own request schemas (path parameters, query,
 * headers, body), valid by construction, sent to every operation: none may be refused as
 * invalid (400 `VALIDATION_FAILED`, 415). The harness checks each request against the
 * document and each answer against the request (test/support/contract.ts); this suite also
 * checks that every generated request is one the document allows, so that a generator drifting
 * from the document fails here rather than testing nothing.
 *
 * The one refusal that depends on stored state rather than on the document: a `cursor` is valid
 * only as a `nextCursor` the service gave (the harness lets a 400 naming `cursor` alone pass).
 * Everything else a valid request can meet is an answer about state (401, 403, 404, 409, 412,
 * 429), never a 400.
 *
 * REQUEST_RUNS (default 25) sets the runs per operation; REQUEST_SEED replays a failure.
 * CI budget: 60 s
 */
import { jest } from '@jest/globals';
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { buildOpenApiDocument } from '../../src/openapi.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { codePointLength } from '../../src/common/http/text-validators.js';
import { ContractValidator, requestOf, type OpenApiDocument, type SchemaObject } from '../support/contract.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

const RUNS = Number(process.env.REQUEST_RUNS ?? 25);
const SEED = process.env.REQUEST_SEED === undefined ? undefined : Number(process.env.REQUEST_SEED);
jest.setTimeout(120_000);

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: SchemaObject;
}

interface Operation {
  operationId: string;
  security?: Record<string, string[]>[];
  parameters?: (Parameter | { $ref: string })[];
  requestBody?: { content: Record<string, { schema: SchemaObject }> };
}

const document = (await buildOpenApiDocument()) as unknown as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, SchemaObject>; parameters: Record<string, Parameter> };
};
const validator = new ContractValidator(document as unknown as OpenApiDocument);

function resolve(schema: SchemaObject): SchemaObject {
  if (schema.$ref) return resolve(document.components.schemas[schema.$ref.split('/').pop()!]!);
  if (schema.allOf?.length === 1) return { ...resolve(schema.allOf[0]!), ...schema, allOf: undefined };
  return schema;
}

function parameter(p: Parameter | { $ref: string }): Parameter {
  return '$ref' in p ? document.components.parameters[p.$ref.split('/').pop()!]! : p;
}

// ------------------------------------------------------------------ values from schemas

/** Fixture values a generated field may take, so that requests also reach their success paths. */
interface Fixtures {
  taskIds: string[];
  sessionIds: string[];
  emails: string[];
  passwords: string[];
  refreshTokens: string[];
}

const PLACEHOLDER = /@@([a-zA-Z]+):(\d)@@/g;
const fixture = (kind: keyof Fixtures) => fc.integer({ min: 0, max: 9 }).map((i) => `@@${kind}:${i}@@`);

const textUnit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.constantFrom(' ', '\t', '\u00a0', 'é', 'e\u0301', '\u{1F600}', '\u2764\ufe0f', '中', '%', '_', '\\', '"', "'") },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
);

function text(schema: SchemaObject): fc.Arbitrary<string> {
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? 100;
  const rule = new RegExp(schema.pattern ?? '', 'u');
  const fits = (value: string) => {
    const length = codePointLength(value);
    return length >= min && length <= max && rule.test(value);
  };
  return fc
    .oneof(
      { weight: 6, arbitrary: fc.string({ unit: textUnit, minLength: min, maxLength: Math.min(max, Math.max(min, 40)) }) },
      // At the limit, in units that count differently (surrogate pairs, variation selectors).
      { weight: 1, arbitrary: fc.constantFrom('x', '\u{1F600}', 'é').map((unit) => unit.repeat(max)) },
      { weight: 1, arbitrary: fc.constantFrom('x', '\u{1F600}').map((unit) => unit.repeat(Math.max(min, 1))) },
    )
    .filter(fits);
}

const padded = (value: fc.Arbitrary<string>) =>
  fc.tuple(fc.constantFrom('', ' ', '\t'), value, fc.constantFrom('', ' ')).map(([a, v, b]) => `${a}${v}${b}`);

const email = fc.oneof(
  fc.emailAddress(),
  padded(fc.emailAddress()),
  fc.constantFrom('Ada@Example.COM', 'ü@münchen.de', '用户@例子.广告', 'a.b+c@sub.example.org'),
);

const dateOnly = fc
  .date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString().slice(0, 10));

const dateTime = fc
  .tuple(
    fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }),
    fc.constantFrom('Z', 'z', '+00:00', '-00:00', '+01:00', '-05:30', '+14:00'),
    fc.constantFrom('', '.5', '.123', '.123456789'),
    fc.boolean(),
  )
  .map(([d, offset, fraction, lower]) => {
    const iso = `${d.toISOString().slice(0, 19)}${fraction}${offset}`;
    return lower ? iso.replace('T', 't') : iso;
  });

const uuid = fc.uuid().chain((id) => fc.constantFrom(id, id.toUpperCase()));

function value(raw: SchemaObject, field: string): fc.Arbitrary<unknown> {
  const schema = resolve(raw);
  const nonNull = nonNullValue(schema, field);
  return schema.nullable ? fc.oneof({ weight: 4, arbitrary: nonNull }, { weight: 1, arbitrary: fc.constant(null) }) : nonNull;
}

function nonNullValue(schema: SchemaObject, field: string): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((branch) => value(branch, field)));
  if (schema.type === 'integer') return fc.integer({ min: schema.minimum ?? 0, max: schema.maximum ?? 1_000 });
  if (schema.format === 'uuid') return uuid;
  if (schema.format === 'date-time') return dateTime;
  if (schema.format === 'date') return dateOnly;
  if (field === 'email') {
    const rule = new RegExp(schema.pattern ?? '', 'u');
    return fc.oneof(email.filter((v) => rule.test(v) && codePointLength(v) <= (schema.maxLength ?? 254)), fixture('emails'));
  }
  if (field === 'refreshToken') return fc.oneof(text(schema), fixture('refreshTokens'));
  if (schema.format === 'password') return fc.oneof(text(schema), fixture('passwords'));
  return text(schema);
}

function body(raw: SchemaObject): fc.Arbitrary<Record<string, unknown>> {
  const schema = resolve(raw);
  const properties = Object.entries(schema.properties ?? {});
  const required = new Set(schema.required ?? []);
  return fc
    .tuple(
      ...properties.map(([field, property]) =>
        required.has(field) ? value(property, field) : fc.option(value(property, field), { nil: undefined, freq: 2 }),
      ),
    )
    .map((values) =>
      Object.fromEntries(properties.flatMap(([field], i) => (values[i] === undefined ? [] : [[field, values[i]]]))),
    )
    .map((generated) => withDependencies(generated, schema))
    .filter((generated) => Object.keys(generated).length >= (schema.minProperties ?? 0));
}

/**
 * A body whose schema makes some fields go together (`oneOf` a branch requiring them all, as
 * `email` with `currentPassword`): a partial group is dropped, so that the body stays valid.
 */
function withDependencies(generated: Record<string, unknown>, schema: SchemaObject): Record<string, unknown> {
  for (const branch of schema.oneOf ?? []) {
    const group = branch.required ?? [];
    const present = group.filter((field) => field in generated);
    if (present.length > 0 && present.length < group.length) for (const field of present) delete generated[field];
  }
  return generated;
}

// ------------------------------------------------------------------ headers and query

const entityTag = fc.oneof(fc.integer({ min: 1, max: 5 }).map(String), fc.string({ unit: fc.constantFrom('a', '1', '!', '#', '~', '\u00e9'), maxLength: 4 }));
const entityTags = fc
  .array(fc.tuple(fc.boolean(), entityTag), { minLength: 1, maxLength: 3 })
  .map((tags) => tags.map(([weak, tag]) => `${weak ? 'W/' : ''}"${tag}"`).join(', '));
const printable = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }).filter((s) => /^[ -~]+$/.test(s));

function headerValue(p: Parameter): fc.Arbitrary<string> {
  if (p.name === 'If-Match' || p.name === 'If-None-Match') return fc.oneof(fc.constant('*'), entityTags, fc.constant('"@@version:0@@"'));
  if (p.name === 'X-Request-Id') return printable;
  return text(p.schema);
}

function queryValue(p: Parameter): fc.Arbitrary<string> {
  return value(p.schema, p.name).map(String);
}

// ------------------------------------------------------------------ one request per operation

interface Planned {
  path: string;
  query: string;
  headers: Record<string, string>;
  body: string | undefined;
  contentType: string | undefined;
}

function plan(path: string, method: string, operation: Operation): fc.Arbitrary<Planned> {
  const parameters = (operation.parameters ?? []).map(parameter);
  const pathParameters = parameters.filter((p) => p.in === 'path');
  const queryParameters = parameters.filter((p) => p.in === 'query');
  const headerParameters = parameters.filter((p) => p.in === 'header');
  const bodySchema = operation.requestBody?.content['application/json']?.schema;
  const ids = pathParameters.map((p) =>
    fc.oneof(uuid, fixture(operation.operationId === 'revokeSession' ? 'sessionIds' : 'taskIds')).map((id) => ({ name: p.name, id })),
  );
  return fc.record({
    path: fc.tuple(...ids).map((values) => values.reduce((built, { name, id }) => built.replace(`{${name}}`, id), path)),
    query: fc
      .tuple(...queryParameters.map((p) => fc.option(queryValue(p), { nil: undefined, freq: 2 }).map((v) => [p.name, v] as const)))
      .map((pairs) => pairs.flatMap(([name, v]) => (v === undefined ? [] : [`${name}=${encodeURIComponent(v)}`])).join('&')),
    headers: fc
      .tuple(...headerParameters.map((p) => fc.option(headerValue(p), { nil: undefined, freq: 2 }).map((v) => [p.name, v] as const)))
      .map((pairs) => Object.fromEntries(pairs.filter(([, v]) => v !== undefined)) as Record<string, string>),
    body: bodySchema ? body(bodySchema).map((b) => JSON.stringify(b)) : fc.constant(undefined),
    // A body is JSON in any spelling of its media type; a request without one may name any type.
    contentType: bodySchema
      ? fc.constantFrom('application/json', 'application/json; charset=utf-8', 'Application/JSON')
      : fc.constantFrom(undefined, 'application/json', 'text/plain'),
  });
}

describe('requests generated from the document (e2e)', () => {
  let t: TestApp;
  let alice: TestUser;
  const fixtures: Fixtures = { taskIds: [], sessionIds: [], emails: [], passwords: [], refreshTokens: [] };
  let version = 1;

  beforeAll(async () => {
    // Throttles off: generated logins with Alice's email and a wrong password are answers about
    // state (401), and must not end her fixture logins with 429.
    t = await startTestApp({
      env: { LOGIN_MAX_FAILURES_PER_EMAIL: '10000', LOGIN_MAX_FAILURES_PER_IP: '100000', REGISTER_MAX_PER_IP: '1000000' },
    });
    alice = await registerAndLogin(t.app);
    await refreshFixtures();
  });

  afterAll(async () => {
    await t?.close();
  });

  /** Alice logged in afresh, and her current tasks, sessions and secrets as fixtures. */
  async function refreshFixtures(): Promise<void> {
    const login = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: alice.email, password: alice.password },
      remoteAddress: `10.77.${Math.floor(Math.random() * 250)}.1`,
    });
    if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
    const pair = login.json() as { accessToken: string; refreshToken: string };
    alice.accessToken = pair.accessToken;
    alice.auth = { authorization: `Bearer ${pair.accessToken}` };
    const tasks = await t.app.inject({ method: 'GET', url: '/api/v1/tasks?limit=5', headers: alice.auth });
    let items = (tasks.json() as { items: { id: string; version: number }[] }).items;
    if (items.length < 2) {
      await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: alice.auth, payload: { title: 'fixture' } });
      items = ((await t.app.inject({ method: 'GET', url: '/api/v1/tasks?limit=5', headers: alice.auth })).json() as { items: { id: string; version: number }[] }).items;
    }
    version = items[0]?.version ?? 1;
    const sessions = (await t.app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: alice.auth })).json() as { id: string }[];
    fixtures.taskIds = items.map((item) => item.id);
    fixtures.sessionIds = sessions.map((session) => session.id);
    fixtures.emails = [alice.email];
    fixtures.passwords = [alice.password];
    fixtures.refreshTokens = [pair.refreshToken];
  }

  /** Placeholders replaced by fixtures; inside JSON text (`json`), as JSON string content. */
  function substitute(text: string, json = false): string {
    return text.replace(PLACEHOLDER, (_match, kind: string, index: string) => {
      const values = fixtures[kind as keyof Fixtures] ?? [];
      const chosen = kind === 'version' ? String(version) : values.length > 0 ? values[Number(index) % values.length]! : randomUUID();
      return json ? JSON.stringify(chosen).slice(1, -1) : chosen;
    });
  }

  it('takes JSON bodies only (415 otherwise, forms included) and body-less requests whatever their content type', async () => {
    for (const [type, payload] of [
      ['application/x-www-form-urlencoded', 'title=x'],
      ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="title"\r\n\r\nx\r\n--x--'],
      ['text/plain', '{"title":"x"}'],
      ['application/merge-patch+json', '{"title":"x"}'],
    ]) {
      const res = await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: { ...alice.auth, 'content-type': type! }, payload });
      expect({ type, status: res.statusCode, code: res.json().code }).toEqual({ type, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
    const created = await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: alice.auth, payload: { title: 'to delete' } });
    for (const type of ['application/json', 'text/plain', 'nonsense', ';;']) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await t.app.inject({ method, url: '/api/v1/tasks', headers: { ...alice.auth, 'content-type': type } });
        expect({ type, method, status: res.statusCode }).toEqual({ type, method, status: 200 });
      }
    }
    const deleted = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/tasks/${(created.json() as { id: string }).id}`,
      headers: { ...alice.auth, 'content-type': 'application/json' },
    });
    expect(deleted.statusCode).toBe(204);
  });

  it('answers 405 with Allow on a known path, and WWW-Authenticate on 401', async () => {
    const wrong = await t.app.inject({ method: 'PUT', url: '/api/v1/tasks' });
    expect({ status: wrong.statusCode, allow: wrong.headers.allow, code: wrong.json().code }).toEqual({
      status: 405,
      allow: 'GET, HEAD, POST',
      code: 'METHOD_NOT_ALLOWED',
    });
    const none = await t.app.inject({ method: 'GET', url: '/api/v1/profile' });
    expect(none.headers['www-authenticate']).toBe('Bearer');
    const refused = await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: 'Bearer nope' } });
    expect(refused.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });

  const operations = Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ path, method: method.toUpperCase(), operation })),
  );

  it.each(operations.map((o) => [`${o.method} ${o.path} (${o.operation.operationId})`, o] as const))(
    '%s: no generated request is refused as invalid',
    async (_name, { path, method, operation }) => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(plan(path, method, operation), async (planned) => {
          const headers: Record<string, string> = {
            ...Object.fromEntries(Object.entries(planned.headers).map(([name, v]) => [name, substitute(v)])),
            ...alice.auth,
          };
          if (planned.contentType) headers['content-type'] = planned.contentType;
          const body = planned.body === undefined ? undefined : substitute(planned.body, true);
          const url = `${substitute(planned.path)}${planned.query ? `?${planned.query}` : ''}`;
          const options = { method: method as 'GET', url, headers, ...(body === undefined ? {} : { payload: body }), remoteAddress: `10.78.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}` };
          // Valid by construction: a request the document refuses is a bug of this generator.
          expect({ url, body, verdict: validator.judge(requestOf(options)) }).toEqual({ url, body, verdict: { allowed: true } });
          const res: LightMyRequestResponse = await t.app.inject(options);
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          expect({ url, status: res.statusCode < 500 ? 'not 5xx' : res.body }).toEqual({ url, status: 'not 5xx' });
          if (res.statusCode < 300 && ['logout', 'refresh', 'revokeSession', 'revokeAllSessions', 'changePassword', 'deleteTask', 'updateProfile'].includes(operation.operationId)) {
            if (operation.operationId === 'changePassword') alice.password = (JSON.parse(body!) as { newPassword: string }).newPassword;
            if (operation.operationId === 'updateProfile') alice.email = (res.json() as { email: string }).email;
            await refreshFixtures();
          }
        }),
        { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
      );
      // The runs went somewhere: not every answer a refusal for want of a known id or password.
      expect({ operation: operation.operationId, statuses: Object.fromEntries(statuses) }).toEqual({
        operation: operation.operationId,
        statuses: expect.any(Object),
      });
      expect([...statuses.keys()].some((status) => status < 300 || status === 304)).toBe(true);
    },
  );
});
