/**
 * The unit a throttle counts a client address in. An IPv6 client usually holds a whole /64 (and
 * its own address within it changes by itself, RFC 8981): counted per address, one client would
 * have 2^64 budgets. So IPv6 addresses count per /64, and an IPv4 address written as IPv6
 * (`::ffff:203.0.113.7`) counts as the IPv4 address it is.
 */
import { isIPv6 } from 'node:net';

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

export function addressBucket(ip: string): string {
  const mapped = MAPPED_IPV4.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  return `${expandIPv6(ip).slice(0, 4).join(':')}::/64`;
}

/** The eight groups of an IPv6 address, each in lower-case hex without leading zeros. */
function expandIPv6(ip: string): string[] {
  const [head, tail] = ip.toLowerCase().split('%')[0]!.split('::') as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const left = groups(head);
  const right = groups(tail);
  const missing = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((group) => (group.includes('.') ? group : parseInt(group, 16).toString(16)));
}
