/**
 * Strict parsing of the times a client sends. `Date.parse` is too lenient for a contract: it
 * rolls 2025-02-30 over into March and reads a time without an offset in the server's zone.
 * Accepted: an RFC 3339 date-time (seconds required, fractions optional, an explicit offset `Z`
 * or `±hh:mm`) or an RFC 3339 full date alone (midnight UTC), in the years 0001–9999, naming an
 * instant in those years too. Fractions beyond milliseconds are truncated, the precision the
 * service stores.
 *
 * The patterns are the OpenAPI document's (`format: date-time` / `format: date` plus
 * `pattern`): what they and a real calendar day allow is exactly what is accepted.
 */

const YEAR = '(?!0000)\\d{4}';
const MONTH_DAY = '-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])';
const TIME = '(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,9})?';
const OFFSET = '(?:[Zz]|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)';
/**
 * On the first and last days of the range only offsets that keep the instant inside it: no
 * positive offset on 0001-01-01 (the instant would fall in year 0), no negative one on
 * 9999-12-31 (in year 10000).
 */
const IN_RANGE = '(?!0001-01-01[Tt][^+]*\\+(?!00:00))(?!9999-12-31[Tt]\\d{2}:\\d{2}:\\d{2}(?:\\.\\d+)?-(?!00:00))';

export const DATE_TIME_PATTERN = `^${IN_RANGE}${YEAR}${MONTH_DAY}[Tt]${TIME}${OFFSET}$`;
export const DATE_PATTERN = `^${YEAR}${MONTH_DAY}$`;

const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2}))?$/;
const DATE_TIME_RULE = new RegExp(DATE_TIME_PATTERN, 'u');
const DATE_RULE = new RegExp(DATE_PATTERN, 'u');

/** The instant `value` denotes, or undefined when it is not a strict ISO 8601 date-time. */
export function parseIsoInstant(value: string): Date | undefined {
  if (!DATE_TIME_RULE.test(value) && !DATE_RULE.test(value)) return undefined;
  const match = DATE_TIME.exec(value);
  if (!match) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', fraction = '', zone = 'Z'] = match;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    return undefined;
  }
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const offsetMinutes = parseOffset(zone);
  if (offsetMinutes === undefined) return undefined;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not read years below 100 as 19xx.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const instant = new Date(date.getTime() - offsetMinutes * 60_000);
  const utcYear = instant.getUTCFullYear();
  return utcYear >= 1 && utcYear <= 9999 ? instant : undefined;
}

/** The canonical form (`YYYY-MM-DDTHH:mm:ss.sssZ`) of a valid input, else undefined. */
export function normaliseIsoInstant(value: string): string | undefined {
  return parseIsoInstant(value)?.toISOString();
}

/** True for exactly the canonical form that `normaliseIsoInstant` produces (cursors carry it). */
export function isCanonicalInstant(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(value) &&
    normaliseIsoInstant(value) === value
  );
}

function parseOffset(zone: string): number | undefined {
  if (zone === 'Z' || zone === 'z') return 0;
  const hours = Number(zone.slice(1, 3));
  const minutes = Number(zone.slice(4, 6));
  if (hours > 23 || minutes > 59) return undefined;
  return (zone[0] === '-' ? -1 : 1) * (hours * 60 + minutes);
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}
