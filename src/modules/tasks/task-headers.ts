/**
 * The HTTP headers of the task routes, parsed into what the use cases understand.
 *
 * ETags are the task's version, strong and quoted: `"3"`. `If-Match` (RFC 9110 §13.1.1) uses
 * strong comparison, so a weak tag never matches; `If-None-Match` (§13.1.2) uses weak
 * comparison. A malformed `If-Match` is a 400 (ignoring a precondition the client meant to set
 * could overwrite someone else's change); a malformed `If-None-Match` is ignored, which only
 * costs a full response.
 */
import { ValidationFailedError } from '../../common/errors/domain-errors.js';
import type { VersionCondition } from './task.js';

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const IDEMPOTENT_REPLAYED_HEADER = 'idempotent-replayed';

/**
 * The document's patterns of the headers the server refuses when malformed, and the server's
 * own rules: one declaration for both.
 */
export const HEADER_PATTERNS = {
  /** 1–128 printable ASCII characters, no leading or trailing space. */
  idempotencyKey: '^[!-~](?:[ -~]{0,126}[!-~])?$',
  /** `*`, or entity tags separated by commas (a trailing one allowed), as RFC 9110 §13.1.1 lists them. */
  ifMatch:
    '^\\s*(?:\\*|(?:W/)?"[!#-~\\u0080-\\u00FF]*"(?:[ \\t]*,[ \\t]*(?:W/)?"[!#-~\\u0080-\\u00FF]*")*(?:[ \\t]*,)?)\\s*$',
} as const;

const IDEMPOTENCY_KEY = new RegExp(HEADER_PATTERNS.idempotencyKey, 'u');
const IF_MATCH = new RegExp(HEADER_PATTERNS.ifMatch, 'u');
/** One entity tag and the comma that may follow it (RFC 9110 §8.8.3). */
const ENTITY_TAG = /[ \t]*(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)/y;
const VERSION = /^[1-9]\d{0,9}$/;

type HeaderValue = string | string[] | undefined;

export function etagOf(version: number): string {
  return `"${version}"`;
}

/** The client's `Idempotency-Key`, if it sent one; a 400 when it is malformed. */
export function parseIdempotencyKey(header: HeaderValue): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !IDEMPOTENCY_KEY.test(header)) {
    throw ValidationFailedError.forField(
      'Idempotency-Key',
      'must be 1–128 printable ASCII characters',
    );
  }
  return header;
}

/** `If-Match` as versions the task must have (`*`: any, as long as it exists). */
export function parseIfMatch(header: HeaderValue): VersionCondition | undefined {
  if (header === undefined) return undefined;
  const value = joined(header).trim();
  if (value === '*') return '*';
  const tags = IF_MATCH.test(value) ? parseEntityTags(value) : undefined;
  if (!tags) {
    throw ValidationFailedError.forField(
      'If-Match',
      'must be * or a list of entity tags such as "3"',
    );
  }
  // Strong comparison: weak tags and tags that are no version of ours can never match.
  return tags.filter((tag) => !tag.weak).flatMap((tag) => versionOf(tag.opaque));
}

/** True when `If-None-Match` names the current version (or is `*`): the client's copy is fresh. */
export function ifNoneMatchHits(header: HeaderValue, version: number): boolean {
  if (header === undefined) return false;
  const value = joined(header).trim();
  if (value === '*') return true;
  const tags = parseEntityTags(value) ?? [];
  return tags.some((tag) => versionOf(tag.opaque).includes(version));
}

interface EntityTag {
  weak: boolean;
  opaque: string;
}

function parseEntityTags(value: string): EntityTag[] | undefined {
  if (value === '') return undefined;
  const tags: EntityTag[] = [];
  ENTITY_TAG.lastIndex = 0;
  while (ENTITY_TAG.lastIndex < value.length) {
    const match = ENTITY_TAG.exec(value);
    if (!match) return undefined;
    tags.push({ weak: match[1] !== undefined, opaque: match[2]! });
  }
  return tags;
}

function versionOf(opaque: string): number[] {
  return VERSION.test(opaque) ? [Number(opaque)] : [];
}

function joined(header: string | string[]): string {
  return Array.isArray(header) ? header.join(', ') : header;
}
