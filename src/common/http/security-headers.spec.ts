import { SecurityHeaders } from './security-headers.js';

describe('SecurityHeaders', () => {
  const headers = new SecurityHeaders();

  it("gives JSON responses helmet's headers with the strictest policy", () => {
    expect(headers.for('/api/v1/tasks?limit=5')).toMatchObject({
      'content-security-policy': "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'strict-transport-security': 'max-age=31536000; includeSubDomains',
      'x-frame-options': 'SAMEORIGIN',
      'referrer-policy': 'no-referrer',
    });
    expect(headers.for('/docs-json')).toBe(headers.api);
  });

  it("gives Swagger UI's pages and assets their own policy", () => {
    for (const url of ['/docs', '/docs/', '/docs/swagger-ui.css', '/docs?x=1']) expect(headers.for(url)).toBe(headers.docs);
    expect(headers.docs['content-security-policy']).toContain("script-src 'self'");
    expect(headers.docs['content-security-policy']).not.toMatch(/unsafe-eval|upgrade-insecure-requests/);
    expect(headers.docs['x-content-type-options']).toBe('nosniff');
  });
});
