/**
 * The opaque `cursor` of the task list: where the next page starts (the last task's sort key
 * and id, for keyset pagination), signed with HMAC-SHA256.
 *
 * Format: `base64url(JSON [key, id]) "." base64url(first 16 bytes of the MAC)`. The MAC also
 * covers the user, the sort and the filters, so a cursor is refused (400) when altered, forged,
 * or replayed with another query or by another user: the keyset condition would otherwise
 * mean something else. Even so its content is validated strictly after the MAC matches: a
 * cursor is client input. The key is derived from JWT_SECRET (HKDF, its own label), which every
 * instance shares, so any instance can continue a listing another one started.
 */
import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { ValidationFailedError } from '../../common/errors/domain-errors.js';
import { isCanonicalInstant } from './iso-time.js';
import type { TaskFilter, TaskPageStart, TaskSort } from './task.js';

const MAC_BYTES = 16;
const MAX_TOKEN_LENGTH = 512;
const TOKEN = /^([A-Za-z0-9_-]{1,480})\.([A-Za-z0-9_-]{22})$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a cursor is bound to: the caller and the query it continues. */
export interface CursorScope extends TaskFilter {
  userId: string;
  sort: TaskSort;
}

export class TaskCursorCodec {
  /** A KeyObject: given raw bytes, createHmac makes one on every call (about 10 µs more). */
  private readonly key: KeyObject;

  constructor(key: Buffer) {
    this.key = createSecretKey(key);
  }

  /** A codec whose key is derived from the service's JWT secret, shared by all instances. */
  static fromSecret(secret: string): TaskCursorCodec {
    return new TaskCursorCodec(
      Buffer.from(hkdfSync('sha256', secret, 'taskd', 'tasks-list-cursor-v1', 32)),
    );
  }

  encode(position: TaskPageStart, scope: CursorScope): string {
    const payload = Buffer.from(JSON.stringify([position.key, position.id])).toString('base64url');
    return `${payload}.${this.mac(payload, scope).toString('base64url')}`;
  }

  /** The position a cursor points at; a `VALIDATION_FAILED` error for anything else. */
  decode(token: string, scope: CursorScope): TaskPageStart {
    const match = token.length <= MAX_TOKEN_LENGTH ? TOKEN.exec(token) : null;
    if (!match) throw invalidCursor();
    const [, payload, mac] = match as unknown as [string, string, string];
    const given = Buffer.from(mac, 'base64url');
    const expected = this.mac(payload, scope);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw invalidCursor();
    }
    const position = parsePosition(payload, scope.sort);
    if (!position) throw invalidCursor();
    return position;
  }

  private mac(payload: string, scope: CursorScope): Buffer {
    // JSON of an array: an unambiguous encoding of every field, whatever characters `q` holds.
    const bound = JSON.stringify([
      scope.userId,
      scope.sort,
      scope.status ?? null,
      scope.priority ?? null,
      scope.q ?? null,
      payload,
    ]);
    return createHmac('sha256', this.key).update(bound).digest().subarray(0, MAC_BYTES);
  }
}

function parsePosition(payload: string, sort: TaskSort): TaskPageStart | undefined {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(decoded) || decoded.length !== 2) return undefined;
  const [key, id] = decoded as [unknown, unknown];
  if (typeof id !== 'string' || !UUID.test(id) || !isValidKey(key, sort)) return undefined;
  return { key, id };
}

function isValidKey(key: unknown, sort: TaskSort): key is string | number | null {
  switch (sort) {
    case 'createdAt':
    case '-createdAt':
      return isCanonicalInstant(key);
    case 'dueAt':
    case '-dueAt':
      return key === null || isCanonicalInstant(key);
    case 'priority':
    case '-priority':
      return key === 1 || key === 2 || key === 3;
  }
}

function invalidCursor(): ValidationFailedError {
  return ValidationFailedError.forField(
    'cursor',
    'is not a cursor of this listing; start again without one',
  );
}
