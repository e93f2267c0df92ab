import { describe, expect, it } from '@jest/globals';
import { addressBucket } from './address-bucket.js';

describe('addressBucket', () => {
  it('keeps an IPv4 address as it is, and one written as IPv6', () => {
    expect(addressBucket('203.0.113.7')).toBe('203.0.113.7');
    expect(addressBucket('::ffff:203.0.113.7')).toBe('203.0.113.7');
  });

  it('counts IPv6 addresses per /64, however they are written', () => {
    const bucket = '2001:db8:85a3:1::/64';
    expect(addressBucket('2001:db8:85a3:1::1')).toBe(bucket);
    expect(addressBucket('2001:0DB8:85A3:0001:abcd:ef01:2345:6789')).toBe(bucket);
    expect(addressBucket('2001:db8:85a3:1:ffff::')).toBe(bucket);
    expect(addressBucket('2001:db8:85a3:2::1')).not.toBe(bucket);
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
    expect(addressBucket('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
