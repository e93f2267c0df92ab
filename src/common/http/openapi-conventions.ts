/**
 * What the OpenAPI document must say of every operation because of machinery that applies to
 * every route, rather than of any one controller: the global exception filter (500), the
 * request deadline (504), Fastify's body parser (400 malformed JSON, 413, 415 for every
 * method that may carry a body, DELETE included), Fastify's router (414 for a path parameter
 * longer than its `maxParamLength`) and the global access-token guard (401 for every operation
 * that declares the bearer scheme). Controllers declare what their own use
 * cases can answer; this adds the rest, so that a route cannot forget an answer it shares with
 * all the others. Operations without a security requirement of their own are public: the
 * document's default is `security: []`.
 */
import type { OpenAPIObject, OperationObject, ResponseObject } from '@nestjs/swagger';
import { STATUS_CODES } from 'node:http';
import { PROBLEM_CONTENT_TYPE } from '../errors/problem.js';

export const PROBLEM_SCHEMA = 'ProblemDto';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const BODY_METHODS = new Set<string>(['post', 'put', 'patch', 'delete']);
const EVERY_OPERATION = [500, 504];
const WITH_BODY = [400, 413, 415];
const AUTHENTICATED = [401];
const WITH_PATH_PARAMETER = [414];

export function applyConventions(document: OpenAPIObject, bearerScheme: string): OpenAPIObject {
  document.security ??= [];
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
    }
  }
  return document;
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
