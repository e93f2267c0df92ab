/**
 * What the OpenAPI document must say of every operation because of machinery that applies to
 * every route, rather than of any one controller: the global exception filter (500), the
 * request deadline (504), Fastify's body parser (400 malformed JSON, 413, 415 for every
 * method that may carry a body, DELETE included), Fastify's router (414 for a path parameter
 * longer than its `maxParamLength`), the global access-token guard (401 with
 * `WWW-Authenticate` for every operation that declares the bearer scheme), the request id (an
 * optional `X-Request-Id` parameter of every operation, a header of every response), and the
 * validation pipe (request bodies refuse undeclared fields: `additionalProperties: false`).
 * Controllers declare what their own use cases can answer; this adds the rest, so that a route
 * cannot forget an answer it shares with all the others. Operations without a security
 * requirement of their own are public: the document's default is `security: []`.
 */
import type {
  OpenAPIObject,
  OperationObject,
  ParameterObject,
  ReferenceObject,
  ResponseObject,
  SchemaObject,
} from '@nestjs/swagger';
import { STATUS_CODES } from 'node:http';
import { PROBLEM_CONTENT_TYPE } from '../errors/problem.js';
import { requestBodySchemaExtras } from './request-schema.js';

export const PROBLEM_SCHEMA = 'ProblemDto';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const BODY_METHODS = new Set<string>(['post', 'put', 'patch', 'delete']);
const EVERY_OPERATION = [500, 504];
const WITH_BODY = [400, 413, 415];
const AUTHENTICATED = [401];
const WITH_PATH_PARAMETER = [414];

const REQUEST_ID = 'X-Request-Id';
const WWW_AUTHENTICATE = 'WWW-Authenticate';

const REQUEST_ID_PARAMETER: ParameterObject = {
  name: REQUEST_ID,
  in: 'header',
  required: false,
  description:
    'Your id for this request, echoed in the `X-Request-Id` answer header, in error bodies and in every log line of the request when it is 1–128 characters of `[A-Za-z0-9._:-]`; any other value is replaced by a generated id (never refused).',
  schema: { type: 'string' },
};

const REQUEST_ID_RESPONSE_HEADER = {
  description: 'The id of this request: yours when it was a valid one, otherwise a generated UUIDv7',
  schema: { type: 'string', example: '01936f3e-8b1c-7def-8a12-3456789abcde' },
};

const WWW_AUTHENTICATE_HEADER = {
  description:
    'RFC 6750: `Bearer` when no access token was sent; `Bearer error="invalid_token"` when one was sent and refused (malformed, expired, badly signed, or its session revoked)',
  schema: { type: 'string', example: 'Bearer error="invalid_token"' },
};

export function applyConventions(document: OpenAPIObject, bearerScheme: string): OpenAPIObject {
  document.security ??= [];
  document.components ??= {};
  document.components.parameters = { ...document.components.parameters, [REQUEST_ID]: REQUEST_ID_PARAMETER };
  document.components.headers = {
    ...document.components.headers,
    [REQUEST_ID]: REQUEST_ID_RESPONSE_HEADER,
    [WWW_AUTHENTICATE]: WWW_AUTHENTICATE_HEADER,
  };
  for (const [path, pathItem] of Object.entries(document.paths)) {
    for (const method of METHODS) {
      const operation = pathItem[method];
      if (!operation) continue;
      const statuses = [...EVERY_OPERATION];
      if (BODY_METHODS.has(method)) statuses.push(...WITH_BODY);
      if (path.includes('{')) statuses.push(...WITH_PATH_PARAMETER);
      if (requiresScheme(operation, bearerScheme)) statuses.push(...AUTHENTICATED);
      for (const status of statuses) addProblemResponse(operation, status);
      operation.responses = sortedByStatus(operation.responses);
      operation.parameters = [
        ...(operation.parameters ?? []),
        { $ref: `#/components/parameters/${REQUEST_ID}` },
      ];
      for (const [status, response] of Object.entries(operation.responses)) {
        addResponseHeaders(response as ResponseObject, status);
      }
      closeRequestBody(document, operation);
    }
  }
  return document;
}

function addResponseHeaders(response: ResponseObject, status: string): void {
  const headers: Record<string, ReferenceObject> = { [REQUEST_ID]: { $ref: `#/components/headers/${REQUEST_ID}` } };
  if (status === '401') headers[WWW_AUTHENTICATE] = { $ref: `#/components/headers/${WWW_AUTHENTICATE}` };
  response.headers = { ...response.headers, ...headers };
}

/**
 * The schema of the operation's JSON body refuses undeclared fields, as the validation pipe
 * does, and carries the rules its DTO adds (`RequestBodySchema`).
 */
function closeRequestBody(document: OpenAPIObject, operation: OperationObject): void {
  const body = operation.requestBody as { content?: Record<string, { schema?: SchemaObject | ReferenceObject }> } | undefined;
  const schema = body?.content?.['application/json']?.schema;
  if (!schema || !('$ref' in schema)) return;
  const name = schema.$ref.split('/').pop()!;
  const component = document.components?.schemas?.[name] as SchemaObject | undefined;
  if (!component) return;
  Object.assign(component, requestBodySchemaExtras(name), { additionalProperties: false });
  for (const property of Object.values(component.properties ?? {})) typeNullableUnion(property as SchemaObject);
}

/**
 * A nullable field whose schema is a union of string forms (`dueAt`) gets its `type` back:
 * OpenAPI 3.0 allows `nullable` only beside a `type`, which the Swagger module leaves out
 * when a schema has `anyOf`.
 */
function typeNullableUnion(property: SchemaObject): void {
  const branches = property.anyOf as SchemaObject[] | undefined;
  if (property.nullable && !property.type && branches?.every((branch) => branch.type === 'string')) {
    property.type = 'string';
  }
}

function requiresScheme(operation: OperationObject, scheme: string): boolean {
  return (operation.security ?? []).some((requirement) => scheme in requirement);
}

function addProblemResponse(operation: OperationObject, status: number): void {
  const key = String(status);
  if (operation.responses[key]) return;
  const response: ResponseObject = {
    description: STATUS_CODES[status] ?? 'Error',
    content: {
      [PROBLEM_CONTENT_TYPE]: { schema: { $ref: `#/components/schemas/${PROBLEM_SCHEMA}` } },
    },
  };
  operation.responses[key] = response;
}

function sortedByStatus<T extends object>(responses: T): T {
  return Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b))) as T;
}
