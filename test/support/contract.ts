/**
 * Contract checks: is a response one that the OpenAPI document promises? The status must be
 * declared for the operation, the content type must be one declared for that status (none for
 * a response without content), and the body must match the declared schema (ajv, with
 * OpenAPI 3.0's `nullable` turned into JSON Schema). A request that matches no operation must
 * get the service's 404 problem. `startTestApp` runs every injected response through this.
 */
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { createOpenApiDocument } from '../../src/swagger.js';

export interface OpenApiDocument {
  paths: Record<string, Record<string, unknown>>;
  components?: { schemas?: Record<string, unknown> };
}

interface Operation {
  operationId?: string;
  responses: Record<string, ResponseObject>;
}

interface ResponseObject {
  content?: Record<string, { schema?: unknown }>;
}

export interface ObservedRequest {
  method: string;
  url: string;
}

export interface ObservedResponse {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}

/** Routes that belong to the documentation tooling (Swagger UI and its assets), not the API. */
const UNDESCRIBED = [/^\/docs(?:\/.*)?$/, /^\/docs-json$/, /^\/docs-yaml$/];
const DOC = 'openapi';
const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const PROBLEM_SCHEMA = 'ProblemDto';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as (ajv: Ajv) => Ajv;

interface Route {
  template: string;
  pattern: RegExp;
  /** Literal segments rank before templated ones, as in the router. */
  literalSegments: number;
}

export class ContractValidator {
  private readonly ajv: Ajv;
  private readonly routes: Route[];
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(private readonly document: OpenApiDocument) {
    this.ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    addFormats(this.ajv);
    for (const format of ['password', 'JWT']) this.ajv.addFormat(format, true);
    this.ajv.addSchema(toJsonSchema(document) as object, DOC);
    this.routes = Object.keys(document.paths)
      .map((template) => ({
        template,
        pattern: new RegExp(
          `^${template
            .split(/\{[^}]+\}/)
            .map(escapeRegExp)
            .join('[^/]+')}$`,
        ),
        literalSegments: template.split('/').filter((segment) => !segment.startsWith('{')).length,
      }))
      .sort((a, b) => b.literalSegments - a.literalSegments);
  }

  /** The ways `response` breaks the contract; empty when it keeps it. */
  check(request: ObservedRequest, response: ObservedResponse): string[] {
    const path = pathOf(request.url);
    if (UNDESCRIBED.some((pattern) => pattern.test(path))) return [];
    const requestIdProblems = checkRequestId(request, response);
    if (requestIdProblems.length > 0) return requestIdProblems;
    const method = request.method.toLowerCase();
    // A CORS preflight the CORS layer answered (CORS_ORIGINS allows the origin) is HTTP
    // machinery, not an operation of the API; it still carries the request id (above).
    if (method === 'options' && response.statusCode === 204 && response.headers['access-control-allow-origin'] !== undefined) return [];
    const found = this.operationFor(method, path);
    const label = `${request.method.toUpperCase()} ${path} → ${response.statusCode}`;
    if (!found) return this.checkUnrouted(label, method, response);
    const { template, operationMethod, operation } = found;
    const name = `${label} (${operation.operationId ?? `${operationMethod} ${template}`})`;
    const key = String(response.statusCode);
    const responseKey = [key, `${key[0]}XX`, 'default'].find((k) => operation.responses[k]);
    if (!responseKey) {
      const statuses = Object.keys(operation.responses).join(', ');
      return [`${name}: status ${key} is not declared (declared: ${statuses})`];
    }
    const declared = operation.responses[responseKey]!;
    const pointer = ['paths', template, operationMethod, 'responses', responseKey];
    return this.checkContent(name, pointer, declared, response, method === 'head');
  }

  /** A request no operation describes must get the service's 404 problem. */
  private checkUnrouted(label: string, method: string, response: ObservedResponse): string[] {
    if (response.statusCode !== 404) {
      return [
        `${label}: no operation of the document matches ${method.toUpperCase()} on this path, yet the answer is not 404`,
      ];
    }
    const type = mediaType(response.headers['content-type']);
    if (type !== PROBLEM_CONTENT_TYPE)
      return [`${label}: a 404 must be ${PROBLEM_CONTENT_TYPE}, got ${type ?? 'none'}`];
    return this.validate(
      label,
      `${DOC}#/components/schemas/${PROBLEM_SCHEMA}`,
      response.body,
      type,
    );
  }

  private checkContent(
    name: string,
    pointer: string[],
    declared: ResponseObject,
    response: ObservedResponse,
    headOnly: boolean,
  ): string[] {
    const type = mediaType(response.headers['content-type']);
    const content = declared.content ?? {};
    const declaredTypes = Object.keys(content);
    if (declaredTypes.length === 0) {
      if (response.body.length > 0)
        return [`${name}: declared without content, yet has a body (${type ?? 'no content type'})`];
      return [];
    }
    if (!type || !content[type]) {
      return [
        `${name}: content type ${type ?? 'none'} is not declared (declared: ${declaredTypes.join(', ')})`,
      ];
    }
    if (headOnly || !content[type].schema) return [];
    const schemaRef = `${DOC}#${[...pointer, 'content', type, 'schema']
      .map(escapePointer)
      .map((s) => `/${s}`)
      .join('')}`;
    return this.validate(name, schemaRef, response.body, type);
  }

  private validate(name: string, schemaRef: string, body: string, type: string): string[] {
    let value: unknown = body;
    if (type === 'application/json' || type.endsWith('+json')) {
      try {
        value = JSON.parse(body);
      } catch {
        return [
          `${name}: the body is not JSON although the content type is ${type}: ${truncate(body)}`,
        ];
      }
    }
    const validate = this.validatorFor(schemaRef);
    if (validate(value)) return [];
    const problems = (validate.errors ?? []).map((error) =>
      `${error.instancePath || '(body)'} ${error.message ?? ''}`.trim(),
    );
    return [
      `${name}: the ${type} body does not match the schema: ${problems.join('; ')}; body: ${truncate(body)}`,
    ];
  }

  private validatorFor(schemaRef: string): ValidateFunction {
    let validate = this.validators.get(schemaRef);
    if (!validate) {
      validate = this.ajv.compile({ $ref: schemaRef });
      this.validators.set(schemaRef, validate);
    }
    return validate;
  }

  private operationFor(
    method: string,
    path: string,
  ): { template: string; operationMethod: string; operation: Operation } | undefined {
    // Fastify answers HEAD with the GET route, without a body.
    const operationMethod = method === 'head' ? 'get' : method;
    for (const route of this.routes) {
      if (!route.pattern.test(path)) continue;
      const operation = this.document.paths[route.template]![operationMethod] as
        Operation | undefined;
      if (operation) return { template: route.template, operationMethod, operation };
    }
    return undefined;
  }
}

/** The contract: every response carries `X-Request-Id`, and a problem names the same id. */
function checkRequestId(request: ObservedRequest, response: ObservedResponse): string[] {
  const label = `${request.method.toUpperCase()} ${pathOf(request.url)} → ${response.statusCode}`;
  const id = response.headers['x-request-id'];
  if (typeof id !== 'string' || id.length === 0) return [`${label}: no X-Request-Id header`];
  if (mediaType(response.headers['content-type']) !== PROBLEM_CONTENT_TYPE) return [];
  try {
    const { requestId } = JSON.parse(response.body) as { requestId?: unknown };
    return requestId === id
      ? []
      : [`${label}: the problem's requestId ${String(requestId)} is not the X-Request-Id ${id}`];
  } catch {
    return []; // reported by the schema check
  }
}

/** The response's media type, without parameters, lower-cased. */
function mediaType(header: unknown): string | undefined {
  if (typeof header !== 'string') return undefined;
  return header.split(';', 1)[0]!.trim().toLowerCase() || undefined;
}

function pathOf(url: string): string {
  return url.split('?', 1)[0]!.split('#', 1)[0]!;
}

/**
 * OpenAPI 3.0 schema objects as JSON Schema: `nullable: true` becomes a `null` type (or an
 * `anyOf` with null when there is no `type`, as beside `$ref` or `allOf`).
 */
export function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (!node || typeof node !== 'object') return node;
  const converted: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) converted[key] = toJsonSchema(value);
  if (converted.nullable !== true) return converted;
  delete converted.nullable;
  if (Array.isArray(converted.enum) && !converted.enum.includes(null))
    converted.enum = [...converted.enum, null];
  if (typeof converted.type === 'string') return { ...converted, type: [converted.type, 'null'] };
  return { anyOf: [converted, { type: 'null' }] };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function escapePointer(segment: string): string {
  return encodeURIComponent(segment.replaceAll('~', '~0').replaceAll('/', '~1'));
}

function truncate(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Thrown from `inject` when a response breaks the contract, failing the test that sent it. */
export class ContractViolation extends Error {
  override readonly name = 'ContractViolation';
  constructor(readonly violations: string[]) {
    super(`the response breaks the OpenAPI document:\n  ${violations.join('\n  ')}`);
  }
}

export interface ContractEnforcement {
  /** Every violation seen so far, including any a test caught and ignored. */
  violations: string[];
}

/**
 * Wraps `app.inject` so that every response is checked against the document the app itself
 * serves at `/docs-json`; a violation rejects the `inject` promise with `ContractViolation`.
 */
export function enforceContract(app: NestFastifyApplication): ContractEnforcement {
  // The Nest application is a proxy that forwards `inject` to its HTTP adapter at each call:
  // the adapter's method is the one to wrap.
  const adapter = app.getHttpAdapter() as unknown as {
    inject: (options?: InjectOptions | string) => unknown;
  };
  const inject = adapter.inject.bind(adapter) as (
    options: InjectOptions | string,
  ) => Promise<LightMyRequestResponse>;
  // The very function that builds what `/docs-json` serves (the OpenAPI suite checks that they
  // are equal), called directly so that the check leaves no trace in the app's metrics.
  const validator = new ContractValidator(createOpenApiDocument(app) as unknown as OpenApiDocument);
  const enforcement: ContractEnforcement = { violations: [] };
  const checked = async (options?: InjectOptions | string): Promise<LightMyRequestResponse> => {
    if (options === undefined)
      throw new Error('inject() without options is not contract-checked: pass the request');
    const response = await inject(options);
    const request =
      typeof options === 'string' ? { method: 'GET', url: options } : requestOf(options);
    const violations = validator.check(request, {
      statusCode: response.statusCode,
      headers: response.headers,
      body: response.body,
    });
    if (violations.length > 0) {
      enforcement.violations.push(...violations);
      throw new ContractViolation(violations);
    }
    return response;
  };
  adapter.inject = checked;
  return enforcement;
}

function requestOf(options: InjectOptions): ObservedRequest {
  const target = options.url ?? options.path ?? '/';
  const url = typeof target === 'string' ? target : target.pathname;
  return { method: options.method ?? 'GET', url };
}
