/**
 * Contract checks, both ways:
 * - is a response one that the OpenAPI document promises? The status must be declared for the
 *   operation, the content type must be one declared for that status (none for a response
 *   without content), and the body must match the declared schema (ajv, with OpenAPI 3.0's
 *   `nullable` turned into JSON Schema). A request whose path the document does not describe
 *   must get the service's 404 problem; a described path asked with another method, 405 with
 *   `Allow` naming the document's methods.
 * - was the request answered as the document says of it? A request the document allows (path
 *   parameters, query, headers, content type and body all valid) must not be refused as invalid
 *   (400 `VALIDATION_FAILED`, 415), except for what only stored state decides (a `cursor` is
 *   valid only as a `nextCursor` the service gave); one the document refuses must be refused
 *   (4xx). Query parameters an operation does not declare count as refused when it declares
 *   any (the service refuses them) and are not looked at otherwise (the service ignores them).
 * `startTestApp` runs every injected request and response through this.
 */
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { parse as parseQuery } from 'fast-querystring';
import type { AppConfig } from '../../src/config/app-config.js';
import { createOpenApiDocument } from '../../src/swagger.js';

/** A schema object of the document, as the suites that generate requests from it read one. */
export interface SchemaObject {
  type?: string;
  format?: string;
  pattern?: string;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  nullable?: boolean;
  properties?: Record<string, SchemaObject>;
  required?: string[];
  minProperties?: number;
  anyOf?: SchemaObject[];
  oneOf?: SchemaObject[];
  allOf?: SchemaObject[];
  $ref?: string;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, unknown>>;
  components?: { schemas?: Record<string, unknown> };
}

interface Operation {
  operationId?: string;
  parameters?: (ParameterObject | { $ref: string })[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: unknown }> };
  responses: Record<string, ResponseObject>;
}

interface ParameterObject {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: { type?: string };
}

interface ResponseObject {
  content?: Record<string, { schema?: unknown }>;
}

export interface ObservedRequest {
  method: string;
  url: string;
  /** Header names in any case; absent: not checked against the document. */
  headers?: Record<string, unknown>;
  /** The body as sent; undefined when there is none. */
  body?: string | undefined;
}

/** What the document says of a request: allowed, refused (and why), or not said. */
export type RequestVerdict = { allowed: true } | { allowed: false; reasons: string[] } | undefined;

/** Query parameters whose validity depends on stored state, not on the document. */
const STATEFUL_PARAMETERS = new Set(['cursor']);

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
    if (!found) return this.checkUnrouted(label, method, path, response);
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
    const contentProblems = this.checkContent(name, pointer, declared, response, method === 'head');
    if (contentProblems.length > 0) return contentProblems;
    return this.checkAnswerToRequest(name, request, response, this.verdict(request, template, operationMethod, operation));
  }

  /** What the document says of `request`: undefined when no operation describes it. */
  judge(request: ObservedRequest): RequestVerdict {
    const method = request.method.toLowerCase() === 'head' ? 'get' : request.method.toLowerCase();
    const found = this.operationFor(method, pathOf(request.url));
    return found && this.verdict(request, found.template, found.operationMethod, found.operation);
  }

  private checkAnswerToRequest(name: string, request: ObservedRequest, response: ObservedResponse, verdict: RequestVerdict): string[] {
    if (!verdict) return [];
    const status = response.statusCode;
    if (!verdict.allowed) {
      if (status >= 400 && status < 500) return [];
      return [`${name}: the document refuses this request (${verdict.reasons.join('; ')}), yet it was answered ${status}`];
    }
    if (status === 415) return [`${name}: the document allows this request, yet it was refused as 415`];
    if (status !== 400) return [];
    let problem: { code?: string; errors?: { field: string }[] } = {};
    try {
      problem = JSON.parse(response.body) as typeof problem;
    } catch {
      return []; // reported by the schema check
    }
    if (problem.code !== 'VALIDATION_FAILED') return [];
    const fields = (problem.errors ?? []).map((error) => error.field);
    if (fields.length > 0 && fields.every((field) => STATEFUL_PARAMETERS.has(field))) return [];
    return [`${name}: the document allows this request, yet it was refused as invalid: ${truncate(response.body)}`];
  }

  /** Whether the document allows `request`; undefined when the request was not observed in full. */
  private verdict(request: ObservedRequest, template: string, method: string, operation: Operation): RequestVerdict {
    if (!request.headers) return undefined;
    // A body the operation does not declare: the document says nothing of it (the service
    // ignores a JSON one and refuses another type with 415).
    if (!operation.requestBody && request.body !== undefined && request.body !== '') return undefined;
    const headers = lowerCaseKeys(request.headers);
    const parameters = (operation.parameters ?? []).map((parameter) => this.resolveParameter(parameter));
    const reasons = [
      ...this.pathProblems(request.url, template, method, parameters),
      ...this.queryProblems(request.url, template, method, parameters),
      ...this.headerProblems(headers, template, method, parameters),
      ...this.bodyProblems(request.body, headers, template, method, operation),
    ];
    return reasons.length === 0 ? { allowed: true } : { allowed: false, reasons };
  }

  private resolveParameter(parameter: ParameterObject | { $ref: string }): ParameterObject {
    if (!('$ref' in parameter)) return parameter;
    const name = parameter.$ref.split('/').pop()!;
    return (this.document.components as { parameters: Record<string, ParameterObject> }).parameters[name]!;
  }

  private parameterPointer(template: string, method: string, parameter: ParameterObject): string {
    const declared = (this.document.paths[template]![method] as Operation).parameters ?? [];
    const index = declared.findIndex((candidate) => this.resolveParameter(candidate) === parameter);
    const entry = declared[index]!;
    if ('$ref' in entry) return pointerOf(['components', 'parameters', entry.$ref.split('/').pop()!, 'schema']);
    return pointerOf(['paths', template, method, 'parameters', String(index), 'schema']);
  }

  private valueProblems(where: string, pointer: string, value: unknown): string[] {
    const validate = this.validatorFor(pointer);
    if (validate(value)) return [];
    return (validate.errors ?? []).map((error) => `${where}${error.instancePath} ${error.message ?? ''}`.trim());
  }

  private pathProblems(url: string, template: string, method: string, parameters: ParameterObject[]): string[] {
    const names = [...template.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]!);
    if (names.length === 0) return [];
    const pattern = new RegExp(`^${template.split(/\{[^}]+\}/).map(escapeRegExp).join('([^/]+)')}$`);
    const raw = pattern.exec(pathOf(url))?.slice(1) ?? [];
    return names.flatMap((name, i) => {
      let value: string;
      try {
        value = decodeURIComponent(raw[i] ?? '');
      } catch {
        return [`path ${name} is not validly percent-encoded`];
      }
      const parameter = parameters.find((p) => p.in === 'path' && p.name === name);
      if (!parameter) return [`path ${name} is not declared`];
      return this.valueProblems(`path ${name}`, this.parameterPointer(template, method, parameter), value);
    });
  }

  private queryProblems(url: string, template: string, method: string, parameters: ParameterObject[]): string[] {
    const declared = parameters.filter((p) => p.in === 'query');
    const queryIndex = url.indexOf('?');
    const query = queryIndex < 0 ? {} : (parseQuery(url.slice(queryIndex + 1).split('#', 1)[0]!) as Record<string, unknown>);
    const problems: string[] = [];
    for (const [name, value] of Object.entries(query)) {
      const parameter = declared.find((p) => p.name === name);
      if (!parameter) {
        if (declared.length > 0) problems.push(`query ${name} is not declared`);
        continue;
      }
      if (Array.isArray(value)) {
        problems.push(`query ${name} is given more than once`);
        continue;
      }
      problems.push(...this.valueProblems(`query ${name}`, this.parameterPointer(template, method, parameter), coerce(String(value), parameter)));
    }
    for (const parameter of declared) {
      if (parameter.required && !(parameter.name in query)) problems.push(`query ${parameter.name} is required`);
    }
    return problems;
  }

  private headerProblems(headers: Record<string, unknown>, template: string, method: string, parameters: ParameterObject[]): string[] {
    return parameters
      .filter((p) => p.in === 'header')
      .flatMap((parameter) => {
        const value = headers[parameter.name.toLowerCase()];
        if (value === undefined) return parameter.required ? [`header ${parameter.name} is required`] : [];
        return this.valueProblems(`header ${parameter.name}`, this.parameterPointer(template, method, parameter), String(value));
      });
  }

  private bodyProblems(
    body: string | undefined,
    headers: Record<string, unknown>,
    template: string,
    method: string,
    operation: Operation,
  ): string[] {
    const declared = operation.requestBody;
    if (!declared) return [];
    if (body === undefined || body === '') return declared.required ? ['a body is required'] : [];
    const type = mediaType(headers['content-type']);
    // Own keys only: a client may name any content type, `__proto__` included.
    if (!type || !Object.hasOwn(declared.content, type)) return [`content type ${type ?? 'none'} is not declared`];
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return ['the body is not JSON'];
    }
    return this.valueProblems('body', pointerOf(['paths', template, method, 'requestBody', 'content', type, 'schema']), value);
  }

  /**
   * A path the document does not describe must get the service's 404 problem; a described path
   * asked with a method it does not list, 405 with `Allow` naming those it lists.
   */
  private checkUnrouted(label: string, method: string, path: string, response: ObservedResponse): string[] {
    const allowed = this.methodsOf(path);
    const expected = allowed.length > 0 ? 405 : 404;
    if (response.statusCode !== expected) {
      return [
        `${label}: no operation of the document matches ${method.toUpperCase()} on this path, yet the answer is not ${expected}`,
      ];
    }
    if (expected === 405) {
      const allow = String(response.headers.allow ?? '').split(',').map((m) => m.trim()).filter(Boolean).sort();
      if (allow.join(', ') !== allowed.join(', '))
        return [`${label}: Allow is "${String(response.headers.allow)}", the document's methods are ${allowed.join(', ')}`];
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
    if (!type || !Object.hasOwn(content, type)) {
      return [
        `${name}: content type ${type ?? 'none'} is not declared (declared: ${declaredTypes.join(', ')})`,
      ];
    }
    if (headOnly || !content[type].schema) return [];
    return this.validate(name, pointerOf([...pointer, 'content', type, 'schema']), response.body, type);
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

  /** The methods the document lists for `path` (HEAD with GET), sorted. */
  private methodsOf(path: string): string[] {
    const route = this.routes.find((candidate) => candidate.pattern.test(path));
    if (!route) return [];
    const methods = Object.keys(this.document.paths[route.template]!).map((m) => m.toUpperCase());
    if (methods.includes('GET')) methods.push('HEAD');
    return methods.sort();
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

function lowerCaseKeys(headers: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

/** A query value as its schema reads it: digits become a number for an integer. */
function coerce(value: string, parameter: ParameterObject): unknown {
  return parameter.schema?.type === 'integer' && /^-?\d+$/.test(value) ? Number(value) : value;
}

function pointerOf(segments: string[]): string {
  return `${DOC}#${segments.map(escapePointer).map((s) => `/${s}`).join('')}`;
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
  // Beside a union (`anyOf` of string forms, say), null is one more choice, not one more type
  // that every branch would still have to accept.
  const composed = ['anyOf', 'oneOf', 'allOf'].some((keyword) => keyword in converted);
  if (typeof converted.type === 'string' && !composed) return { ...converted, type: [converted.type, 'null'] };
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
export function enforceContract(app: NestFastifyApplication, config?: AppConfig): ContractEnforcement {
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
  const validator = new ContractValidator(
    createOpenApiDocument(app, { publicUrl: config?.http.publicUrl }) as unknown as OpenApiDocument,
  );
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

/** The request as light-my-request sends it: an object payload becomes JSON. */
export function requestOf(options: InjectOptions): ObservedRequest {
  const target = options.url ?? options.path ?? '/';
  const url = typeof target === 'string' ? target : target.pathname;
  const headers: Record<string, unknown> = { ...(options.headers ?? {}) };
  const payload = options.payload ?? options.body;
  let body: string | undefined;
  if (payload === undefined || payload === null) {
    body = undefined;
  } else if (typeof payload === 'string') {
    body = payload;
  } else if (Buffer.isBuffer(payload)) {
    body = payload.toString('utf8');
  } else if (typeof (payload as { pipe?: unknown }).pipe === 'function') {
    return { method: options.method ?? 'GET', url }; // a stream: not observed
  } else {
    body = JSON.stringify(payload);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  return { method: options.method ?? 'GET', url, headers, body };
}
