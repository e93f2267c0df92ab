import type { IncomingMessage } from 'node:http';
import { requestIdFor } from './request-id.js';

const request = (id?: string) => ({ headers: id === undefined ? {} : { 'x-request-id': id } }) as IncomingMessage;

describe('requestIdFor', () => {
  it("keeps a client's valid id", () => {
    expect(requestIdFor(request('client.id:42-a_b'))).toBe('client.id:42-a_b');
  });

  it('makes distinct UUIDv7s, across refills of its random pool', () => {
    const ids = Array.from({ length: 2_000 }, () => requestIdFor(request()));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // The random part differs too, not only the time part.
    expect(new Set(ids.map((id) => id.slice(-12))).size).toBe(ids.length);
  });
});
