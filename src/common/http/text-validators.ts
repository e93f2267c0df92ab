/**
 * Text fields of requests, with one declaration per rule for both the server and the OpenAPI
 * document: the validator and the schema read the same lengths and the same pattern, so that
 * a value the document allows is never refused, and the other way round.
 *
 * - Lengths count Unicode code points, as PostgreSQL's `varchar(n)` and JSON Schema's
 *   `minLength`/`maxLength` do (class-validator's `MaxLength` counts differently: it discounts
 *   variation selectors, so a value it accepts could overflow the column).
 * - Lengths and patterns apply to the value as sent. A trimmed field is trimmed after it is
 *   validated (`Trimmed`), so that `"  x  "` is three code points too many for a 1-character
 *   limit in the document and on the server alike.
 * - Patterns are JSON Schema patterns, matched with the `u` flag as JSON Schema validators do.
 *   Every text refuses lone surrogates (not well-formed Unicode; the screening pipe refuses
 *   them too); stored text also refuses NUL, which PostgreSQL text cannot hold.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { ValidateBy } from 'class-validator';

/** Well-formed Unicode text: no lone surrogate (a surrogate pair is one code point). */
const ANY = '[^\\uD800-\\uDFFF]';
/** A code point PostgreSQL text can store: neither NUL nor a lone surrogate. */
const STORABLE = '[^\\u0000\\uD800-\\uDFFF]';
/** A storable code point that String.prototype.trim would not remove. */
const VISIBLE = '[^\\s\\u0000\\uD800-\\uDFFF]';

/** A character of an unquoted local part: no whitespace, control, quote, bracket or separator. */
const EMAIL_ATOM = '[^\\s\\u0000-\\u001F\\u007F\\uD800-\\uDFFF@"(),.:;<>[\\\\\\]]';
/** Dot-separated atoms, no dot first, last or twice in a row. */
const EMAIL_LOCAL = `${EMAIL_ATOM}+(?:\\.${EMAIL_ATOM}+)*`;
/** A letter or digit of a domain label: any character but ASCII punctuation, space and controls. */
const LABEL_CHAR = '[^\\s\\u0000-\\u002F\\u003A-\\u0040\\u005B-\\u0060\\u007B-\\u007F\\uD800-\\uDFFF]';
/** A domain label: letters and digits, hyphens inside. */
const DOMAIN_LABEL = `${LABEL_CHAR}(?:(?:${LABEL_CHAR}|-)*${LABEL_CHAR})?`;
/** The last label: two letters or more (no digits, so that an IP address is no domain). */
const TOP_LEVEL_LABEL = '[^\\s\\u0000-\\u0040\\u005B-\\u0060\\u007B-\\u007F\\uD800-\\uDFFF]{2,}';

export const TEXT_PATTERNS = {
  /** Any well-formed text (passwords, tokens: never stored as sent). */
  any: `^${ANY}*$`,
  /** Text stored as sent. */
  storable: `^${STORABLE}*$`,
  /** Text stored trimmed, which must keep at least one character once trimmed. */
  notBlank: `^\\s*${VISIBLE}${STORABLE}*$`,
  /**
   * An email address as the service takes it (trimmed, then lower-cased): a local part and a
   * domain of at least two labels, the last of two letters or more; Unicode (internationalised
   * addresses) allowed; no whitespace, control characters, quotes, brackets or other characters
   * that need quoting in an address.
   */
  email: `^\\s*${EMAIL_LOCAL}@(?:${DOMAIN_LABEL}\\.)+${TOP_LEVEL_LABEL}\\s*$`,
} as const;

export type TextPattern = keyof typeof TEXT_PATTERNS;

export interface TextRule {
  minLength: number;
  maxLength: number;
  pattern: TextPattern;
}

const COMPILED = Object.fromEntries(
  Object.entries(TEXT_PATTERNS).map(([name, source]) => [name, new RegExp(source, 'u')]),
) as Record<TextPattern, RegExp>;

const PATTERN_MESSAGES: Record<TextPattern, string> = {
  any: 'must be well-formed Unicode text',
  storable: 'must not contain NUL characters',
  notBlank: 'must not be empty',
  email: 'must be an email address',
};

/** The rule's schema keywords, as the document states them. */
export function textSchema(rule: TextRule): { minLength?: number; maxLength: number; pattern: string } {
  return {
    ...(rule.minLength > 0 ? { minLength: rule.minLength } : {}),
    maxLength: rule.maxLength,
    pattern: TEXT_PATTERNS[rule.pattern],
  };
}

/** Validates a text field against `rule` (the value as sent). */
export function IsText(rule: TextRule): PropertyDecorator {
  return ValidateBy({
    name: 'isText',
    constraints: [rule],
    validator: {
      validate: (value: unknown) => textProblem(value, rule) === undefined,
      defaultMessage: (args) => `${args?.property ?? 'value'} ${textProblem(args?.value, rule) ?? 'is invalid'}`,
    },
  });
}

/**
 * A text field of a request body or query: its schema in the document (lengths, pattern, and
 * `options`: description, example, nullable…) and its validation, from the one rule.
 */
export function TextField(rule: TextRule, options: ApiPropertyOptions & { required?: boolean } = {}): PropertyDecorator {
  const { required = true, ...rest } = options;
  const schema = { type: 'string', ...textSchema(rule), ...rest } as ApiPropertyOptions;
  return applyDecorators(required ? ApiProperty(schema) : ApiPropertyOptional(schema), IsText(rule));
}

export function codePointLength(value: string): number {
  let length = value.length;
  for (let i = 0; i < value.length; i += 1) {
    const unit = value.charCodeAt(i);
    // A high surrogate followed by a low one is a single code point.
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length -= 1;
        i += 1;
      }
    }
  }
  return length;
}

function textProblem(value: unknown, rule: TextRule): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  if (!value.isWellFormed()) return PATTERN_MESSAGES.any;
  if (rule.pattern !== 'any' && value.includes('\u0000')) return PATTERN_MESSAGES.storable;
  const length = codePointLength(value);
  if (length < rule.minLength) {
    return rule.minLength === 1 ? 'must not be empty' : `must be longer than or equal to ${rule.minLength} characters`;
  }
  if (length > rule.maxLength) return `must be shorter than or equal to ${rule.maxLength} characters`;
  if (!COMPILED[rule.pattern].test(value)) return PATTERN_MESSAGES[rule.pattern];
  return undefined;
}

/** Properties trimmed once validated, by DTO class. */
const trimmedByClass = new WeakMap<object, string[]>();

/**
 * Marks a text field that is stored without its leading and trailing whitespace. The value is
 * validated as sent (the document's lengths and pattern) and trimmed afterwards, by the
 * validation pipe (`trimFields`).
 */
export function Trimmed(): PropertyDecorator {
  return (target, property) => {
    const names = trimmedByClass.get(target.constructor) ?? [];
    trimmedByClass.set(target.constructor, [...names, String(property)]);
  };
}

/** Whether DTOs of class `metatype` have `Trimmed` fields. */
export function hasTrimmedFields(metatype: unknown): boolean {
  return typeof metatype === 'function' && trimmedByClass.has(metatype);
}

/** Trims the `Trimmed` fields of a validated DTO in place. */
export function trimFields(dto: unknown): void {
  if (typeof dto !== 'object' || dto === null) return;
  for (const name of trimmedByClass.get(dto.constructor) ?? []) {
    const value = (dto as Record<string, unknown>)[name];
    if (typeof value === 'string') (dto as Record<string, unknown>)[name] = value.trim();
  }
}
