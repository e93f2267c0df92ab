/**
 * Property-based tests (fast-check) of every operation in the OpenAPI document: whatever the
 * body, query string, path id and headers (Authorization, Content-Type, Idempotency-Key,
 * If-Match, If-None-Match, X-Request-Id, User-Agent), the service never answers 5xx, every
 * answer is one the document promises (the harness checks each response), and an answer that is
 * not a success changes nothing that is stored: the rows of PostgreSQL and the sessions in
 * Redis are the same before and after.
 *
 * The operations come from the document itself, so a new endpoint is fuzzed without a change
 * here. Requests name the fixtures (Alice's task, her access and refresh tokens, Bob's task…)
 * through placeholders resolved when the request is sent, because successful requests change
 * them between runs (a refresh rotates the token, a delete removes the task).
 *
 * Two things change on a client error by design and are left out of the comparison: the login
 * throttle's failure counters (and those of current-password checks), and the revocation of a session whose already-used refresh token
 * is presented (which the fuzzer never does: it only knows the current one).
 *
 * FUZZ_RUNS (default 300) sets the runs per operation; FUZZ_SEED replays a reported failure.
 */
import { jest } from '@jest/globals';
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { LightMyRequestResponse } from 'fastify';
import { buildOpenApiDocument } from '../../src/openapi.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import type { SchemaObject } from '../support/contract.js';
import { databaseUrlFor, REDIS_URL, startTestApp, type TestApp } from '../support/test-app.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
/**
 * A Redis logical database of the suite's own: a snapshot scans the keyspace for the suite's
 * sessions, and on the shared server's database that scan costs whatever else it holds (other
 * suites' and benches' sessions, which live for weeks): 75 s for the suite became 537 s with
 * a few hundred thousand keys there.
 */
const FUZZ_REDIS_URL = Object.assign(new URL(REDIS_URL), { pathname: '/9' }).toString();
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
jest.setTimeout(Math.max(120_000, RUNS * 1_000));

// ------------------------------------------------------------------ the operations

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  schema?: SchemaObject;
}

interface OperationSpec {
  method: string;
  path: string;
  operationId: string;
  secured: boolean;
  parameters: Parameter[];
  body?: SchemaObject;
}

const document = (await buildOpenApiDocument()) as unknown as {
  paths: Record<
    string,
    Record<
      string,
      {
        operationId: string;
        security?: Record<string, string[]>[];
        parameters?: Parameter[];
        requestBody?: { content: Record<string, { schema: SchemaObject }> };
      }
    >
  >;
  components: { schemas: Record<string, SchemaObject> };
};

function resolve(schema: SchemaObject): SchemaObject {
  if (schema.$ref) return resolve(document.components.schemas[schema.$ref.split('/').pop()!]!);
  if (schema.allOf?.length === 1)
    return { ...resolve(schema.allOf[0]!), ...schema, allOf: undefined };
  return schema;
}

const OPERATIONS: OperationSpec[] = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, operation]) => ({
    method: method.toUpperCase(),
    path,
    operationId: operation.operationId,
    secured: (operation.security ?? []).length > 0,
    parameters: operation.parameters ?? [],
    body: operation.requestBody
      ? resolve(operation.requestBody.content['application/json']!.schema)
      : undefined,
  })),
);

// ------------------------------------------------------------------ placeholders

/** Resolved when the request is sent: the fixtures change as successful requests run. */
const P = {
  aliceTask: '@@ALICE_TASK@@',
  aliceVersion: '@@ALICE_VERSION@@',
  bobTask: '@@BOB_TASK@@',
  aliceSession: '@@ALICE_SESSION@@',
  bobSession: '@@BOB_SESSION@@',
  aliceAccess: '@@ALICE_ACCESS@@',
  bobAccess: '@@BOB_ACCESS@@',
  aliceRefresh: '@@ALICE_REFRESH@@',
  alicePassword: '@@ALICE_PASSWORD@@',
  aliceEmail: '@@ALICE_EMAIL@@',
  bobEmail: '@@BOB_EMAIL@@',
  carolEmail: '@@CAROL_EMAIL@@',
  carolPassword: '@@CAROL_PASSWORD@@',
} as const;

// ------------------------------------------------------------------ value arbitraries

/** Characters that break naive code: NUL, lone surrogates, BOM, bidi, combining, LIKE wildcards, quotes. */
const nastyChar = fc.oneof(
  fc.constantFrom(
    '\u0000',
    '\ud800',
    '\udfff',
    '\ufeff',
    '\u202e',
    '\u200b',
    '\ufe0f',
    '\u0301',
    '\u{1F600}',
    '\u{10FFFF}',
    '%',
    '_',
    '\\',
    "'",
    '"',
    '\n',
    '\r',
    '\t',
    ' ',
    '/',
    '?',
    '#',
    '&',
    '=',
    '+',
    '{',
    '}',
    '$',
    '.',
    '..',
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
);
const nastyString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: nastyChar, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      'null',
      'undefined',
      'NaN',
      '-1',
      '0',
      '1e400',
      '__proto__',
      'constructor',
      "'; DROP TABLE tasks; --",
    ),
  },
);

/** Strings around a length limit, made of units that count differently (surrogate pairs, variation selectors). */
function aroundLength(max: number): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.integer({ min: Math.max(0, max - 2), max: max + 2 }),
      fc.constantFrom('a', '\u{1F600}', 'e\u0301', '\u2764\ufe0f', 'é', '\ufe0f'),
    )
    .map(([count, unit]) => unit.repeat(count));
}

const dateTime = fc.oneof(
  fc
    .date({
      min: new Date('0001-01-01T00:00:00Z'),
      max: new Date('9999-12-31T23:59:59Z'),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString()),
  fc.constantFrom(
    '2026-02-30T00:00:00Z',
    '2026-03-01',
    '2026-03-01T17:00:00+14:00',
    '2026-03-01T17:00:00-23:59',
    '+275760-09-13T00:00:00Z',
    '2026-03-01T24:00:00Z',
    '1970-01-01T00:00:00.0000001Z',
    'tomorrow',
  ),
);

/**
 * Fixtures an operation's fields may name. Login only ever names Carol, who is there to be
 * logged in as (and throttled): Alice and Bob must be able to log in again after a fuzzed
 * request ends their session.
 */
interface Known {
  emails: string[];
  passwords: string[];
}

function knownFor(operationId: string): Known {
  return operationId === 'login'
    ? { emails: [P.carolEmail], passwords: [P.carolPassword] }
    : { emails: [P.aliceEmail, P.bobEmail], passwords: [P.alicePassword] };
}

/** A plausible value of `schema`, often valid, sometimes just outside its rules. */
function plausible(schema: SchemaObject, field: string, known: Known): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  if (s.enum) return fc.constantFrom(...s.enum);
  if (s.type === 'integer' || s.type === 'number') {
    return fc.integer({ min: (s.minimum ?? -5) - 2, max: (s.maximum ?? 1_000) + 2 });
  }
  if (s.type === 'boolean') return fc.boolean();
  if (s.format === 'email') {
    return fc.oneof(
      fc.emailAddress(),
      fc.constantFrom(...known.emails, ' Mixed.Case@Example.COM ', 'a@b', 'no-at-sign'),
    );
  }
  if (s.format === 'date-time') return dateTime;
  if (s.format === 'uuid') return fc.uuid();
  if (s.format === 'password') {
    return fc.oneof(
      fc.constantFrom(...known.passwords),
      aroundLength(s.maxLength ?? 128),
      fc.string({ minLength: 8, maxLength: 20 }),
    );
  }
  if (field === 'refreshToken')
    return fc.oneof(fc.constant(P.aliceRefresh), fc.constant(`${P.aliceRefresh}x`), nastyString);
  return fc.oneof(
    fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 50, 50) }),
    aroundLength(s.maxLength ?? 100),
    nastyString,
  );
}

/** Any JSON value at all, hostile ones favoured. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  nastyString,
  fc.constantFrom(null, true, false, 0, -0, 1.5, -1, 2 ** 53 + 1, 1e308, [], {}, [null], {
    a: { b: { c: [] } },
  }),
);

// ------------------------------------------------------------------ JSON text, written by hand

/** JSON text of an object whose keys may include `__proto__` and friends, as a client could send. */
function objectText(entries: [string, string][]): string {
  return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;
}

const dangerousKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'id',
  'userId',
  'version',
  'createdAt',
  'updatedAt',
  'idempotencyKey',
  '',
);

function bodyText(schema: SchemaObject | undefined, known: Known): fc.Arbitrary<string> {
  const properties = Object.entries(resolve(schema ?? {}).properties ?? {});
  const shaped = fc
    .tuple(
      ...properties.map(([field, property]) =>
        fc.oneof(
          { weight: 2, arbitrary: fc.constant(undefined) },
          {
            weight: 6,
            arbitrary: plausible(property, field, known).map((value) => JSON.stringify(value)),
          },
          { weight: 1, arbitrary: hostileValue.map((value) => JSON.stringify(value)) },
        ),
      ),
      fc.array(
        fc.tuple(
          fc.oneof(dangerousKey, fc.string({ maxLength: 8 })),
          hostileValue.map((v) => JSON.stringify(v)),
        ),
        { maxLength: 2 },
      ),
      fc.integer({ min: 0, max: 9 }),
    )
    .map(([...parts]) => {
      const extras = parts[properties.length] as [string, string][];
      const extraChance = parts[properties.length + 1] as number;
      const entries = properties.flatMap(([field], i) =>
        parts[i] === undefined ? [] : [[field, parts[i] as string] as [string, string]],
      );
      // Mostly only known fields, so that valid requests happen; sometimes unknown or dangerous ones.
      return objectText(extraChance < 3 ? [...entries, ...extras] : entries);
    });
  return fc.oneof(
    { weight: 8, arbitrary: shaped },
    { weight: 1, arbitrary: hostileValue.map((value) => JSON.stringify(value)) },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 1, max: 20_000 })
        .map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 1, max: 10_000 })
        .map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '{',
        '{"title":}',
        "{'title':'x'}",
        '{"title":"x",}',
        'NaN',
        '',
        ' ',
        '\u0000',
        '{"title":"\\ud800"}',
        '{"title":"a\\u0000b"}',
        '{"__proto__":{"admin":true}}',
        '{"constructor":{"prototype":{"x":1}}}',
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 90_000, max: 140_000 })
        .map((size) => JSON.stringify({ title: 'x'.repeat(size) })),
    },
  );
}

// ------------------------------------------------------------------ URL parts

/** Percent-encodes every byte of the UTF-8 form (lone surrogates become U+FFFD, as a browser sends them). */
function encodeBytes(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) =>
      /[A-Za-z0-9._~-]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).padStart(2, '0')}`,
    )
    .join('');
}

const rawPercent = fc.constantFrom(
  '%00',
  '%ff',
  '%c0%80',
  '%ed%a0%80',
  '%e2%80%ae',
  '%',
  '%zz',
  '%2F',
  '%2e%2e',
  '..',
  '+',
);

const pathId = fc.oneof(
  { weight: 3, arbitrary: fc.constant(P.aliceTask) },
  { weight: 1, arbitrary: fc.constant(P.bobTask) },
  { weight: 1, arbitrary: fc.constant(P.aliceSession) },
  { weight: 1, arbitrary: fc.constant(P.bobSession) },
  { weight: 2, arbitrary: fc.uuid().map((id) => id) },
  {
    weight: 1,
    arbitrary: fc
      .uuid()
      .chain((id) =>
        fc.constantFrom(
          id.toUpperCase(),
          `%7B${id}%7D`,
          id.replaceAll('-', ''),
          `${id}%20`,
          `${id}%00`,
        ),
      ),
  },
  { weight: 2, arbitrary: nastyString.filter((s) => s.length > 0).map(encodeBytes) },
  { weight: 1, arbitrary: rawPercent },
  { weight: 1, arbitrary: fc.integer({ min: 150, max: 400 }).map((n) => 'a'.repeat(n)) },
);

function queryString(parameters: Parameter[], known: Known): fc.Arbitrary<string> {
  const documented = parameters.filter((p) => p.in === 'query');
  const pair = (name: string, schema?: SchemaObject) =>
    fc.oneof(
      {
        weight: 4,
        arbitrary: (schema ? plausible(schema, name, known) : nastyString).map(
          (v) => `${name}=${encodeBytes(String(v))}`,
        ),
      },
      { weight: 2, arbitrary: nastyString.map((v) => `${name}=${encodeBytes(v)}`) },
      { weight: 1, arbitrary: rawPercent.map((v) => `${name}=${v}`) },
      { weight: 1, arbitrary: fc.constant(name) },
    );
  return fc
    .tuple(
      fc
        .subarray(documented)
        .chain((chosen) => fc.tuple(...chosen.map((p) => pair(p.name, p.schema)))),
      fc.array(
        fc.oneof(
          pair('__proto__'),
          pair('constructor'),
          pair('page'),
          dangerousKey.chain((k) => pair(encodeBytes(k))),
          ...documented.map((p) => pair(p.name, p.schema)),
        ),
        { maxLength: 2 },
      ),
    )
    .map(([chosen, extra]) => [...chosen, ...extra].join('&'));
}

// ------------------------------------------------------------------ headers

/** What HTTP can carry in a header value: tab, visible ASCII, space, obs-text. */
const headerText = fc.string({
  unit: fc.oneof(
    fc.constantFrom('\t', ' ', '"', ',', '*', 'W', '/', '\u00ff', '\u0080'),
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 60,
});

const authorization = fc.oneof(
  { weight: 6, arbitrary: fc.constant(`Bearer ${P.aliceAccess}`) },
  { weight: 1, arbitrary: fc.constant(`Bearer ${P.bobAccess}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      `bearer ${P.aliceAccess}`,
      `Bearer  ${P.aliceAccess}`,
      `Bearer ${P.aliceAccess}x`,
      `Bearer ${P.aliceAccess}.x`,
      `Basic ${P.aliceAccess}`,
      P.aliceAccess,
      'Bearer',
      'Bearer ',
      'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
    ),
  },
  { weight: 1, arbitrary: headerText.map((v) => `Bearer ${v}`) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  { weight: 2, arbitrary: fc.constant(undefined) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'Application/JSON',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/problem+json',
      'application/xml',
      '*/*',
      'application/json, text/plain',
      'application/json;',
    ),
  },
  { weight: 1, arbitrary: headerText },
);

const ifMatch = fc.oneof(
  fc.constantFrom(
    `"${P.aliceVersion}"`,
    `W/"${P.aliceVersion}"`,
    '*',
    '"1"',
    '"1", "2"',
    '"0"',
    '"99999999999"',
    '""',
    'W/',
    '"',
    '1',
  ),
  headerText,
);

function headers(): fc.Arbitrary<Record<string, string | undefined>> {
  return fc.record(
    {
      authorization,
      'content-type': contentType,
      'idempotency-key': fc.oneof(
        fc.constantFrom('key-1', 'key-2', ' key', 'k'.repeat(128), 'k'.repeat(129)),
        headerText,
      ),
      'if-match': ifMatch,
      'if-none-match': ifMatch,
      'x-request-id': fc.oneof(
        fc.constantFrom('trace-1', 'x'.repeat(128), 'x'.repeat(129)),
        headerText,
      ),
      'user-agent': headerText,
    },
    { requiredKeys: ['authorization', 'content-type'] },
  );
}

// ------------------------------------------------------------------ one request

interface PlannedRequest {
  pathIds: string[];
  query: string;
  headers: Record<string, string | undefined>;
  body: string | undefined;
  ip: number;
}

function requestPlan(operation: OperationSpec): fc.Arbitrary<PlannedRequest> {
  const pathParams = (operation.path.match(/\{[^}]+\}/g) ?? []).length;
  const carriesBody =
    operation.body !== undefined || ['POST', 'PUT', 'PATCH', 'DELETE'].includes(operation.method);
  const known = knownFor(operation.operationId);
  return fc.record({
    pathIds: fc.array(pathId, { minLength: pathParams, maxLength: pathParams }),
    query: fc.oneof(
      { weight: 1, arbitrary: fc.constant('') },
      { weight: 2, arbitrary: queryString(operation.parameters, known) },
    ),
    headers: headers(),
    body: carriesBody
      ? fc.oneof(
          { weight: operation.body ? 12 : 1, arbitrary: bodyText(operation.body, known) },
          { weight: 1, arbitrary: fc.constant(undefined) },
        )
      : fc.option(bodyText(undefined, known), { freq: 8 }).map((b) => b ?? undefined),
    // A few addresses, so that the per-IP login throttle is reached too.
    ip: fc.integer({ min: 1, max: 4 }),
  });
}

// ------------------------------------------------------------------ known successes

const AS_ALICE = { authorization: `Bearer ${P.aliceAccess}`, 'content-type': 'application/json' };

/**
 * One request per operation that succeeds, which fast-check runs before the random ones: every
 * run of the suite goes down each success path at least once, whatever the random runs reach.
 */
const SUCCESSES: Record<string, Partial<PlannedRequest>> = {
  liveness: {},
  readiness: {},
  metrics: {},
  register: {
    body: '{"email":"fuzz.example@example.com","password":"a good passphrase","name":"Fuzz"}',
  },
  login: { body: `{"email":"${P.carolEmail}","password":"${P.carolPassword}"}` },
  refresh: { body: `{"refreshToken":"${P.aliceRefresh}"}` },
  logout: {},
  listSessions: {},
  revokeAllSessions: {},
  revokeSession: { pathIds: [P.aliceSession] },
  getProfile: {},
  updateProfile: { body: '{"name":"Alice Fuzz"}' },
  changePassword: {
    body: `{"currentPassword":"${P.alicePassword}","newPassword":"a new passphrase"}`,
  },
  createTask: { body: '{"title":"fuzz example","priority":"high","dueAt":"2026-03-01T17:00:00Z"}' },
  listTasks: { query: 'limit=5&sort=-priority&q=fuzz' },
  getTask: { pathIds: [P.aliceTask] },
  updateTask: { pathIds: [P.aliceTask], body: '{"status":"done"}' },
  deleteTask: { pathIds: [P.aliceTask] },
};

function knownSuccess(operation: OperationSpec): PlannedRequest {
  const known = SUCCESSES[operation.operationId];
  if (!known)
    throw new Error(`no known success for ${operation.operationId}: add one to SUCCESSES`);
  return { pathIds: [], query: '', headers: AS_ALICE, body: undefined, ip: 4, ...known };
}

// ------------------------------------------------------------------ the suite

describe('fuzzing every operation (e2e)', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let bobTaskId: string;
  let db: pg.Client;
  let redis: Redis;
  let tables: string[];

  beforeAll(async () => {
    // Four addresses meet the registration throttle within a few runs: its refusals are
    // answered at once here (their pause is register-flood's subject), or they would be most of
    // the suite's time.
    t = await startTestApp({ env: { REGISTER_REFUSAL_PAUSE_MS: '0', REDIS_URL: FUZZ_REDIS_URL } });
    [alice, bob, carol] = await Promise.all([
      registerAndLogin(t.app),
      registerAndLogin(t.app),
      registerAndLogin(t.app),
    ]);
    await seedTasks(alice, 3);
    bobTaskId = (await seedTasks(bob, 1))[0]!;
    db = new pg.Client({ connectionString: databaseUrlFor(t.databaseName) });
    await db.connect();
    redis = new Redis(FUZZ_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    tables = (
      await db.query<{ name: string }>(
        "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'migrations' ORDER BY 1",
      )
    ).rows.map((row) => row.name);
  });

  afterAll(async () => {
    await db?.end();
    redis?.disconnect();
    await t?.close();
  });

  async function seedTasks(user: TestUser, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers: user.auth,
        payload: { title: `seed ${i}` },
      });
      if (res.statusCode !== 201) throw new Error(`seeding failed: ${res.statusCode} ${res.body}`);
      ids.push(res.json().id);
    }
    return ids;
  }

  async function relogin(user: TestUser): Promise<void> {
    // The fuzzer's own failed logins may have spent this email's budget; the fixture's re-login
    // is not what it tests, so the email's throttle is cleared first.
    const throttled = await redis.keys(`${t.databaseName}:login-email:*`);
    if (throttled.length > 0) await redis.del(...throttled);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: user.email, password: user.password },
      remoteAddress: `10.200.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}`,
    });
    if (res.statusCode !== 200) throw new Error(`re-login failed: ${res.statusCode} ${res.body}`);
    const pair = res.json() as { accessToken: string; refreshToken: string };
    user.accessToken = pair.accessToken;
    user.refreshToken = pair.refreshToken;
    user.auth = { authorization: `Bearer ${pair.accessToken}` };
  }

  /** Every stored row (one digest per table) and every session key in Redis, with its content. */
  async function snapshot(): Promise<Record<string, unknown>> {
    const digests = await db.query(
      `SELECT ${tables.map((table) => `(SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM "${table}" r) AS "${table}"`).join(', ')}`,
    );
    const prefix = `${t.databaseName}:`;
    const keys: string[] = [];
    for (const pattern of ['sess:*', 'usess:*', 'revoked']) {
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(
          cursor,
          'MATCH',
          `${prefix}${pattern}`,
          'COUNT',
          1000,
        );
        cursor = next;
        keys.push(...found);
      } while (cursor !== '0');
    }
    keys.sort();
    const types = ((await redis.pipeline(keys.map((key) => ['type', key])).exec()) ?? []).map(
      ([, type]) => type as string,
    );
    const reads = keys.map((key, i) => {
      if (types[i] === 'hash') return ['hgetall', key];
      if (types[i] === 'set') return ['smembers', key];
      if (types[i] === 'zset') return ['zrange', key, '0', '-1', 'WITHSCORES'];
      return ['get', key];
    });
    const values = ((await redis.pipeline(reads).exec()) ?? []).map(([, value]) =>
      Array.isArray(value) ? [...value].sort() : value,
    );
    const contents = Object.fromEntries(keys.map((key, i) => [key, values[i]]));
    return { postgres: digests.rows[0], redis: contents };
  }

  async function fixtures(): Promise<Record<string, string>> {
    const task = await db.query<{ id: string; version: number }>(
      'SELECT id, version FROM tasks WHERE user_id = $1 ORDER BY created_at, id LIMIT 1',
      [alice.userId],
    );
    return {
      [P.aliceTask]: task.rows[0]?.id ?? randomUUID(),
      [P.aliceVersion]: String(task.rows[0]?.version ?? 1),
      [P.bobTask]: bobTaskId,
      [P.aliceSession]: sessionOf(alice.accessToken),
      [P.bobSession]: sessionOf(bob.accessToken),
      [P.aliceAccess]: alice.accessToken,
      [P.bobAccess]: bob.accessToken,
      [P.aliceRefresh]: alice.refreshToken,
      [P.alicePassword]: alice.password,
      [P.aliceEmail]: alice.email,
      [P.bobEmail]: bob.email,
      [P.carolEmail]: carol.email,
      [P.carolPassword]: carol.password,
    };
  }

  function sessionOf(token: string): string {
    return (
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string }
    ).sid;
  }

  function substitute(text: string, values: Record<string, string>): string {
    return text.replace(/@@[A-Z_]+@@/g, (placeholder) => values[placeholder] ?? placeholder);
  }

  /**
   * Keeps the fixtures usable after a success that changed them. Any spelling of Alice's token
   * that the service accepted (`bearer …`, extra spaces) counts as hers.
   */
  async function afterSuccess(
    operation: OperationSpec,
    sent: { headers: Record<string, string>; body?: string },
    res: LightMyRequestResponse,
  ): Promise<void> {
    const asAlice = (sent.headers.authorization ?? '').includes(alice.accessToken);
    // Only called after a success, so a body the operation reads was valid JSON.
    const body = () => JSON.parse(sent.body ?? '{}') as Record<string, unknown>;
    switch (operation.operationId) {
      case 'refresh':
        if (body().refreshToken === alice.refreshToken)
          alice.refreshToken = (res.json() as { refreshToken: string }).refreshToken;
        return;
      case 'updateProfile':
        if (asAlice) alice.email = (res.json() as { email: string }).email;
        return;
      case 'changePassword':
        if (asAlice) alice.password = body().newPassword as string;
        await relogin(alice);
        return;
      case 'logout':
      case 'revokeAllSessions':
      case 'revokeSession':
        await relogin(alice);
        if ((sent.headers.authorization ?? '').includes(bob.accessToken)) await relogin(bob);
        return;
      case 'deleteTask': {
        const left = await db.query('SELECT 1 FROM tasks WHERE user_id = $1', [alice.userId]);
        if (left.rowCount! < 2) await seedTasks(alice, 2);
        return;
      }
      default:
        return;
    }
  }

  describe('what the fuzzer found, kept as examples', () => {
    const post = (url: string, payload: string, headers: Record<string, string> = {}) =>
      t.app.inject({
        method: 'POST',
        url,
        payload,
        headers: { 'content-type': 'application/json', ...headers },
      });
    const fieldErrors = (res: LightMyRequestResponse) => ({
      status: res.statusCode,
      errors: res.json().errors,
    });

    it('refuses a name longer than its column in code points, though class-validator counts fewer (was a 500)', async () => {
      const name = '\u2764\ufe0f'.repeat(100); // 100 to class-validator, 200 to PostgreSQL
      const email = `hearts-${randomUUID()}@example.com`;
      const registered = await post(
        '/api/v1/auth/register',
        JSON.stringify({ email, password: 'long enough', name }),
      );
      expect(fieldErrors(registered)).toEqual({
        status: 400,
        errors: [{ field: 'name', message: 'must be shorter than or equal to 100 characters' }],
      });
      expect((await db.query('SELECT 1 FROM users WHERE email = $1', [email])).rowCount).toBe(0);
      const renamed = await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/profile',
        headers: alice.auth,
        payload: { name },
      });
      expect(fieldErrors(renamed)).toEqual({
        status: 400,
        errors: [{ field: 'name', message: 'must be shorter than or equal to 100 characters' }],
      });
    });

    it('refuses a NUL character in a name or an email (was a 500)', async () => {
      const registered = await post(
        '/api/v1/auth/register',
        JSON.stringify({
          email: `nul-${randomUUID()}@example.com`,
          password: 'long enough',
          name: 'a\u0000b',
        }),
      );
      expect(fieldErrors(registered)).toEqual({
        status: 400,
        errors: [{ field: 'name', message: 'must not contain NUL characters' }],
      });
      const renamed = await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/profile',
        headers: alice.auth,
        payload: { name: 'a\u0000b' },
      });
      expect(fieldErrors(renamed)).toEqual({
        status: 400,
        errors: [{ field: 'name', message: 'must not contain NUL characters' }],
      });
    });

    it('refuses text with a lone surrogate (an email was a 500: isEmail threw; a title was stored as U+FFFD)', async () => {
      for (const [url, payload, headers] of [
        ['/api/v1/auth/login', '{"email":"\\ud800","password":"long enough"}', {}],
        [
          '/api/v1/auth/register',
          '{"email":"a\\udfff@example.com","password":"long enough","name":"A"}',
          {},
        ],
        ['/api/v1/tasks', '{"title":"half \\ud83d of a smile"}', alice.auth],
      ] as const) {
        const res = await post(url, payload, headers);
        expect({ url, ...fieldErrors(res) }).toEqual({
          url,
          status: 400,
          errors: [{ field: expect.any(String), message: 'must be well-formed Unicode text' }],
        });
      }
    });

    it('refuses null for the name or email of a profile change (was a 500)', async () => {
      for (const field of ['name', 'email']) {
        const res = await t.app.inject({
          method: 'PATCH',
          url: '/api/v1/profile',
          headers: alice.auth,
          payload: { [field]: null },
        });
        expect({ field, status: res.statusCode, code: res.json().code }).toEqual({
          field,
          status: 400,
          code: 'VALIDATION_FAILED',
        });
      }
    });

    it('refuses a body nested thousands of levels deep (was a 500: the validator overflowed the stack)', async () => {
      const deep = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
      for (const [url, headers] of [
        ['/api/v1/auth/register', {}],
        ['/api/v1/auth/refresh', {}],
        ['/api/v1/tasks', alice.auth],
      ] as const) {
        for (const payload of [deep, `{"title":${deep}}`]) {
          const res = await post(url, payload, headers);
          expect({ url, status: res.statusCode, code: res.json().code }).toEqual({
            url,
            status: 400,
            code: 'VALIDATION_FAILED',
          });
        }
      }
    });

    it('answers a badly percent-encoded URL and an over-long path parameter with problem details (were plain JSON)', async () => {
      for (const [method, url, status] of [
        ['GET', '/api/v1/tasks/%ff', 400],
        ['PATCH', '/api/v1/tasks/%c0%80', 400],
        ['GET', `/api/v1/tasks/${'a'.repeat(201)}`, 400],
        ['GET', `/api/v1/tasks/${'a'.repeat(2049)}`, 414],
        ['DELETE', `/api/v1/auth/sessions/${'a'.repeat(2049)}`, 414],
      ] as const) {
        const res = await t.app.inject({ method, url, headers: alice.auth });
        expect({ url, status: res.statusCode, type: res.headers['content-type'] }).toEqual({
          url,
          status,
          type: expect.stringMatching(/^application\/problem\+json/),
        });
        expect(res.json()).toMatchObject({
          status,
          code: 'VALIDATION_FAILED',
          requestId: res.headers['x-request-id'],
        });
        expect(res.json().detail).not.toMatch(/aaaa|%/);
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.headers['content-security-policy']).toBe("default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'");
      }
    });
  });

  describe.each(
    OPERATIONS.map(
      (operation) =>
        [`${operation.method} ${operation.path} (${operation.operationId})`, operation] as const,
    ),
  )('%s', (_name, operation) => {
    it(`never answers 5xx, and changes nothing when it answers an error (${RUNS} runs)`, async () => {
      // Wrong current passwords sent to other operations (an email change) count against
      // Alice's budget for password checks; each operation's known success starts afresh.
      const spent = await redis.keys(`${t.databaseName}:password-user:*`);
      if (spent.length > 0) await redis.del(...spent);
      const statuses = new Map<number, number>();
      // The known success runs first; its answer is kept to explain a failure below.
      let firstAnswer: string | undefined;
      await fc.assert(
        fc.asyncProperty(requestPlan(operation), async (plan) => {
          const values = await fixtures();
          let index = 0;
          const path = operation.path.replace(/\{[^}]+\}/g, () =>
            substitute(plan.pathIds[index++]!, values),
          );
          const sentHeaders = Object.fromEntries(
            Object.entries(plan.headers).flatMap(([name, value]) =>
              value === undefined ? [] : [[name, substitute(value, values)]],
            ),
          ) as Record<string, string>;
          const body = plan.body === undefined ? undefined : substitute(plan.body, values);
          const url = `${path}${plan.query ? `?${substitute(plan.query, values)}` : ''}`;
          const before = await snapshot();
          const res = await t.app.inject({
            method: operation.method as 'GET',
            url,
            headers: sentHeaders,
            ...(body === undefined ? {} : { payload: body }),
            remoteAddress: `10.99.0.${plan.ip}`,
          });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          firstAnswer ??= `${operation.method} ${url} -> ${res.statusCode} ${res.body.slice(0, 300)}`;
          const outcome = { request: `${operation.method} ${url}`, status: res.statusCode };
          if (res.statusCode >= 500)
            throw new Error(`${operation.method} ${url} answered ${res.statusCode}: ${res.body}`);
          if (res.statusCode >= 300) {
            const after = await snapshot();
            if (JSON.stringify(after) !== JSON.stringify(before)) {
              expect({ request: outcome, state: after }).toEqual({
                request: outcome,
                state: before,
              });
            }
          } else {
            await afterSuccess(operation, { headers: sentHeaders, body }, res);
          }
        }),
        {
          numRuns: RUNS,
          examples: [[knownSuccess(operation)]],
          ...(SEED === undefined ? {} : { seed: SEED }),
        },
      );
      if (process.env.FUZZ_STATS) console.log(operation.operationId, Object.fromEntries(statuses));
      // The runs went down the success path and, where anything can be refused (a token, a
      // parameter, a body), into the refusals: not only one of them.
      const seen = [...statuses.keys()];
      // X-Request-Id, a parameter of every operation, is never refused (an invalid one is replaced).
      const refusable = operation.secured || operation.parameters.some((p) => !('$ref' in p)) || !!operation.body;
      expect({
        success: seen.some((status) => status < 300),
        refusal: seen.some((status) => status >= 400),
        firstAnswer,
        statuses: Object.fromEntries(statuses),
      }).toEqual({ success: true, refusal: refusable, firstAnswer: expect.any(String), statuses: expect.any(Object) });
    });
  });
});
