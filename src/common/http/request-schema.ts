/**
 * What the OpenAPI document says of a request body as a whole, beyond its fields: every body
 * refuses fields it does not declare (`additionalProperties: false`, added to each body schema
 * by the document's conventions), and a DTO may add rules of its own (`minProperties`, an
 * `anyOf` between fields), enforced by its validation or its use case.
 */
import type { SchemaObject } from '@nestjs/swagger';

const extrasByName = new Map<string, Partial<SchemaObject>>();

/** Adds `schema` to the document's schema of the decorated request body class. */
export function RequestBodySchema(schema: Partial<SchemaObject>): ClassDecorator {
  return (target) => {
    extrasByName.set(target.name, schema);
  };
}

/** The extra schema keywords of the request body schema called `name`, if any. */
export function requestBodySchemaExtras(name: string): Partial<SchemaObject> | undefined {
  return extrasByName.get(name);
}
