/**
 * How the pool reads column values: as `pg` does, except `timestamptz`, which arrives as the
 * ISO 8601 string the API answers with (`2026-11-24T07:02:43.123Z`) instead of a Date that every
 * row mapper would format again. Sessions run in UTC, so PostgreSQL's text form
 * (`2026-11-24 07:02:43.123456+00`) only needs rearranging; anything else (another offset, a BC
 * date, infinity) goes through `pg`'s own parser. Fractions are truncated to milliseconds, as a
 * Date made by `pg` would be.
 */
import pg from 'pg';

/** Sent at connection start-up, so that the fast path applies to every row. */
export const SESSION_OPTIONS = '-c TimeZone=UTC';

const TIMESTAMPTZ = pg.types.builtins.TIMESTAMPTZ;
const parseWithPg = pg.types.getTypeParser(TIMESTAMPTZ, 'text') as (text: string) => Date | number;
const UTC_TEXT = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?\+00$/;

export function timestamptzToIso(text: string): string {
  if (UTC_TEXT.test(text)) {
    const fraction = text.length > 22 ? text.slice(20, -3) : '';
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${(fraction + '000').slice(0, 3)}Z`;
  }
  const parsed = parseWithPg(text);
  return parsed instanceof Date && !Number.isNaN(parsed.getTime()) ? parsed.toISOString() : text;
}

export const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === TIMESTAMPTZ && format !== 'binary') return timestamptzToIso;
    return pg.types.getTypeParser(oid, format) as (value: string) => unknown;
  },
};
