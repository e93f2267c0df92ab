/**
 * The contract validator that every e2e response goes through: it must refuse what the
 * document does not promise, or the contract tests could pass while the service drifts.
 */
import { describe, expect, it } from '@jest/globals';
import {
  ContractValidator,
  type ObservedResponse,
  type OpenApiDocument,
} from '../support/contract.js';

const problem = {
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/ProblemDto' } } },
};
const document: OpenApiDocument = {
  paths: {
    '/api/v1/things': {
      get: {
        operationId: 'listThings',
        responses: {
          '200': {
            content: {
              'application/json': {
                schema: { type: 'array', items: { $ref: '#/components/schemas/Thing' } },
              },
            },
          },
          '401': problem,
        },
      },
    },
    '/api/v1/things/{id}': {
      get: {
        operationId: 'getThing',
        responses: {
          '200': {
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Thing' } } },
          },
          '304': {},
          '404': problem,
        },
      },
      delete: { operationId: 'deleteThing', responses: { '204': { description: 'Deleted' } } },
    },
    '/api/v1/notes': {
      post: {
        operationId: 'createNote',
        parameters: [{ name: 'Idempotency-Key', in: 'header', schema: { type: 'string', pattern: '^[!-~]+$' } }],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                additionalProperties: false,
                required: ['text'],
                properties: { text: { type: 'string', minLength: 1, maxLength: 3 } },
              },
            },
          },
        },
        responses: { '201': { description: 'Created' }, '400': problem, '415': problem },
      },
    },
    '/api/v1/things/mine': {
      get: {
        operationId: 'myThings',
        responses: { '200': { content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
  },
  components: {
    schemas: {
      Thing: {
        type: 'object',
        required: ['id', 'note', 'status'],
        properties: {
          id: { type: 'string', format: 'uuid' },
          note: { type: 'string', nullable: true },
          status: { type: 'string', enum: ['open', 'done'] },
          at: { type: 'string', format: 'date-time', nullable: true },
        },
      },
      ProblemDto: {
        type: 'object',
        required: ['status', 'code'],
        properties: { status: { type: 'integer' }, code: { type: 'string' } },
      },
    },
  },
};

const validator = new ContractValidator(document);
const THING = { id: '0193a000-0000-7000-8000-0000000000aa', note: null, status: 'open', at: null };
const json = (
  statusCode: number,
  body: unknown,
  type = 'application/json; charset=utf-8',
): ObservedResponse => ({
  statusCode,
  headers: { 'content-type': type, 'x-request-id': 'r1' },
  body: JSON.stringify(body),
});
const check = (method: string, url: string, response: ObservedResponse) =>
  validator.check({ method, url }, response);

describe('ContractValidator', () => {
  it('accepts a declared status whose body matches, nullable fields and $ref included', () => {
    expect(check('GET', `/api/v1/things/${THING.id}?x=1`, json(200, THING))).toEqual([]);
    expect(
      check(
        'GET',
        '/api/v1/things',
        json(200, [THING, { ...THING, note: 'n', at: '2026-01-01T00:00:00.000Z' }]),
      ),
    ).toEqual([]);
    expect(
      check(
        'GET',
        '/api/v1/things/x',
        json(404, { status: 404, code: 'NOT_FOUND', requestId: 'r1' }, 'application/problem+json'),
      ),
    ).toEqual([]);
  });

  it('rejects a status the operation does not declare', () => {
    const violations = check(
      'GET',
      `/api/v1/things/${THING.id}`,
      json(500, { status: 500, code: 'INTERNAL', requestId: 'r1' }, 'application/problem+json'),
    );
    expect(violations).toEqual([
      expect.stringMatching(/getThing.*status 500 is not declared \(declared: 200, 304, 404\)/),
    ]);
  });

  it('rejects a body that does not match the schema', () => {
    expect(
      check('GET', `/api/v1/things/${THING.id}`, json(200, { ...THING, status: 'archived' })),
    ).toEqual([expect.stringContaining('/status must be equal to one of the allowed values')]);
    expect(
      check('GET', `/api/v1/things/${THING.id}`, json(200, { ...THING, id: 'nope', note: 3 })),
    ).toEqual([expect.stringMatching(/\/id must match format "uuid".*\/note must be string,null/)]);
    expect(check('GET', '/api/v1/things', json(200, [{ id: THING.id }]))).toEqual([
      expect.stringContaining("must have required property 'note'"),
    ]);
  });

  it('rejects a content type the status does not declare, and a body where none is declared', () => {
    expect(
      check(
        'GET',
        '/api/v1/things/x',
        json(404, { status: 404, code: 'NOT_FOUND', requestId: 'r1' }),
      ),
    ).toEqual([
      expect.stringContaining(
        'content type application/json is not declared (declared: application/problem+json)',
      ),
    ]);
    expect(check('DELETE', `/api/v1/things/${THING.id}`, json(204, {}))).toEqual([
      expect.stringContaining('declared without content, yet has a body'),
    ]);
    expect(
      check('DELETE', `/api/v1/things/${THING.id}`, {
        statusCode: 204,
        headers: { 'x-request-id': 'r1' },
        body: '',
      }),
    ).toEqual([]);
    expect(
      check('GET', `/api/v1/things/${THING.id}`, {
        statusCode: 304,
        headers: { 'x-request-id': 'r1' },
        body: '',
      }),
    ).toEqual([]);
  });

  it('prefers a literal path segment to a template, as the router does', () => {
    expect(
      check('GET', '/api/v1/things/mine', {
        statusCode: 200,
        headers: { 'content-type': 'text/plain', 'x-request-id': 'r1' },
        body: 'a',
      }),
    ).toEqual([]);
  });

  it('demands the 404 problem for requests that match no operation, and ignores the docs routes', () => {
    expect(
      check(
        'GET',
        '/nowhere',
        json(404, { status: 404, code: 'NOT_FOUND', requestId: 'r1' }, 'application/problem+json'),
      ),
    ).toEqual([]);
    expect(check('PUT', `/api/v1/things/${THING.id}`, json(200, THING))).toEqual([
      expect.stringContaining('yet the answer is not 405'),
    ]);
    expect(check('GET', '/nowhere', json(404, { error: 'Not Found' }))).toEqual([
      expect.stringContaining('must be application/problem+json'),
    ]);
    expect(
      check('GET', '/docs', {
        statusCode: 200,
        headers: { 'content-type': 'text/html' },
        body: '<html>',
      }),
    ).toEqual([]);
  });

  it('rejects a JSON content type whose body is not JSON', () => {
    expect(
      check('GET', '/api/v1/things', {
        statusCode: 200,
        headers: { 'content-type': 'application/json', 'x-request-id': 'r1' },
        body: '{',
      }),
    ).toEqual([expect.stringContaining('the body is not JSON')]);
  });

  it('demands X-Request-Id on every response, and the same id in a problem', () => {
    const thing = json(200, THING);
    expect(
      check('GET', `/api/v1/things/${THING.id}`, {
        ...thing,
        headers: { 'content-type': 'application/json' },
      }),
    ).toEqual([expect.stringContaining('no X-Request-Id header')]);
    expect(
      check(
        'GET',
        '/nowhere',
        json(
          404,
          { status: 404, code: 'NOT_FOUND', requestId: 'other' },
          'application/problem+json',
        ),
      ),
    ).toEqual([
      expect.stringContaining("the problem's requestId other is not the X-Request-Id r1"),
    ]);
  });
});

describe('ContractValidator, requests', () => {
  const post = (body: string | undefined, headers: Record<string, string> = { 'content-type': 'application/json' }) => ({
    method: 'POST',
    url: '/api/v1/notes',
    headers,
    body,
  });
  const created: ObservedResponse = { statusCode: 201, headers: { 'x-request-id': 'r1' }, body: '' };
  const invalid = json(400, { status: 400, code: 'VALIDATION_FAILED', requestId: 'r1' }, 'application/problem+json');

  it('judges a request by its body, content type and headers', () => {
    expect(validator.judge(post('{"text":"abc"}'))).toEqual({ allowed: true });
    expect(validator.judge(post('{"text":"\u{1F600}\u{1F600}\u{1F600}"}'))).toEqual({ allowed: true });
    for (const request of [
      post('{"text":"abcd"}'),
      post('{"text":"a","extra":1}'),
      post('{}'),
      post(undefined),
      post('{"text":"a"}', { 'content-type': 'application/x-www-form-urlencoded' }),
      post('{"text":"a"}', { 'content-type': 'application/json', 'idempotency-key': ' ' }),
    ]) {
      expect({ request, verdict: validator.judge(request) }).toEqual({ request, verdict: { allowed: false, reasons: expect.any(Array) } });
    }
  });

  it('rejects a refusal as invalid of a request the document allows, and a success of one it refuses', () => {
    expect(validator.check(post('{"text":"abc"}'), invalid)).toEqual([expect.stringContaining('the document allows this request, yet it was refused as invalid')]);
    expect(validator.check(post('{"text":"abcd"}'), created)).toEqual([expect.stringContaining('the document refuses this request')]);
    expect(validator.check(post('{"text":"abcd"}'), invalid)).toEqual([]);
    expect(validator.check(post('{"text":"abc"}'), created)).toEqual([]);
  });

  it('demands 405 with the documented methods in Allow on a described path', () => {
    const refused = (allow: string) => ({
      ...json(405, { status: 405, code: 'METHOD_NOT_ALLOWED', requestId: 'r1' }, 'application/problem+json'),
      headers: { 'content-type': 'application/problem+json', 'x-request-id': 'r1', allow },
    });
    expect(check('PUT', '/api/v1/notes', refused('POST'))).toEqual([]);
    expect(check('PUT', '/api/v1/notes', refused('GET, POST'))).toEqual([expect.stringContaining('Allow is')]);
  });
});
