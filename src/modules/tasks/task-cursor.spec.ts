import { describe, expect, it } from '@jest/globals';
import { ValidationFailedError } from '../../common/errors/domain-errors.js';
import { TaskCursorCodec, type CursorScope } from './task-cursor.js';

const ID = '0193a000-0000-7000-8000-0000000000aa';
const scope: CursorScope = {
  userId: '0193a000-0000-7000-8000-000000000001',
  sort: 'dueAt',
  status: 'todo',
};

function payloadOf(token: string): unknown {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8'));
}

describe('TaskCursorCodec', () => {
  const codec = new TaskCursorCodec(Buffer.alloc(32, 1));

  it('round-trips a position for every kind of key', () => {
    for (const [sort, key] of [
      ['createdAt', '2026-02-20T09:15:00.000Z'],
      ['-dueAt', null],
      ['dueAt', '0001-01-01T00:00:00.000Z'],
      ['-priority', 3],
    ] as const) {
      const bound = { ...scope, sort };
      expect(codec.decode(codec.encode({ key, id: ID }, bound), bound)).toEqual({ key, id: ID });
    }
  });

  it('is URL-safe', () => {
    expect(codec.encode({ key: '2026-02-20T09:15:00.000Z', id: ID }, scope)).toMatch(
      /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
    );
  });

  it('refuses a cursor whose payload was altered, even to another valid position', () => {
    const token = codec.encode({ key: '2026-02-20T09:15:00.000Z', id: ID }, scope);
    const forged = Buffer.from(JSON.stringify([null, ID])).toString('base64url');
    expect(() => codec.decode(`${forged}.${token.split('.')[1]}`, scope)).toThrow(
      ValidationFailedError,
    );
  });

  it('refuses a cursor whose signature was altered', () => {
    const token = codec.encode({ key: null, id: ID }, scope);
    const last = token.at(-2) === 'A' ? 'B' : 'A';
    expect(() => codec.decode(`${token.slice(0, -2)}${last}${token.at(-1)}`, scope)).toThrow(
      ValidationFailedError,
    );
  });

  it('refuses a cursor of another user, sort or filter', () => {
    const token = codec.encode({ key: null, id: ID }, scope);
    for (const other of [
      { ...scope, userId: '0193a000-0000-7000-8000-000000000002' },
      { ...scope, sort: '-dueAt' as const },
      { ...scope, status: undefined },
      { ...scope, priority: 'high' as const },
      { ...scope, q: 'x' },
    ]) {
      expect(() => codec.decode(token, other)).toThrow(ValidationFailedError);
    }
  });

  it('refuses a cursor signed with another key', () => {
    const token = new TaskCursorCodec(Buffer.alloc(32, 2)).encode({ key: null, id: ID }, scope);
    expect(() => codec.decode(token, scope)).toThrow(ValidationFailedError);
  });

  it('refuses malformed input with a field error on cursor, never another error', () => {
    for (const bad of [
      '',
      '.',
      'abc',
      'a.b',
      '%%%.%%%',
      `${'a'.repeat(600)}.${'b'.repeat(22)}`,
      'e30.AAAAAAAAAAAAAAAAAAAAAA',
    ]) {
      let caught: unknown;
      try {
        codec.decode(bad, scope);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ValidationFailedError);
      expect((caught as ValidationFailedError).errors).toEqual([
        { field: 'cursor', message: expect.any(String) },
      ]);
    }
  });

  it('validates the content even under a valid signature (a key of the wrong kind for the sort)', () => {
    // Signed by this very codec, so only the content check can refuse it.
    const wrongKind = codec.encode({ key: 'not-a-time', id: ID }, scope);
    expect(() => codec.decode(wrongKind, scope)).toThrow(ValidationFailedError);
    const priorityAsTime = codec.encode({ key: 7, id: ID }, { ...scope, sort: 'priority' });
    expect(() => codec.decode(priorityAsTime, { ...scope, sort: 'priority' })).toThrow(
      ValidationFailedError,
    );
    const badId = codec.encode({ key: null, id: 'nope' }, scope);
    expect(() => codec.decode(badId, scope)).toThrow(ValidationFailedError);
  });

  it('carries only the sort key and id', () => {
    expect(payloadOf(codec.encode({ key: 2, id: ID }, { ...scope, sort: 'priority' }))).toEqual([
      2,
      ID,
    ]);
  });

  it('derives the same key from the same secret on every instance', () => {
    const a = TaskCursorCodec.fromSecret('s'.repeat(40));
    const b = TaskCursorCodec.fromSecret('s'.repeat(40));
    const token = a.encode({ key: null, id: ID }, scope);
    expect(b.decode(token, scope)).toEqual({ key: null, id: ID });
    expect(() => TaskCursorCodec.fromSecret('t'.repeat(40)).decode(token, scope)).toThrow(
      ValidationFailedError,
    );
  });
});
