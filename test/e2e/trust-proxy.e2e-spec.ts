/**
 * Per-IP login throttling behind a proxy (TRUST_PROXY naming the proxies' network, as
 * deploy/k8s/configmap.yaml does). A load balancer appends the address it saw to
 * X-Forwarded-For; whatever the client put there itself stays on the left. The client IP used for
 * throttling must be the one the trusted proxy appended, not a value the client chose.
 */
import { startTestApp, type TestApp } from '../support/test-app.js';

describe('per-IP throttle behind a trusted proxy (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      env: { TRUST_PROXY: '10.0.0.0/8', LOGIN_MAX_FAILURES_PER_EMAIL: '1000', LOGIN_MAX_FAILURES_PER_IP: '3', LOGIN_BLOCK_SECONDS: '60' },
    });
  });

  afterAll(async () => {
    await t.close();
  });

  it('blocks one real client that varies the X-Forwarded-For it sends', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: `spray-${i}@example.com`, password: 'wrong-password' },
        // The ingress (10.0.0.5) appended the real client 203.0.113.9 to what the client sent.
        remoteAddress: '10.0.0.5',
        headers: { 'x-forwarded-for': `198.51.100.${i + 1}, 203.0.113.9` },
      });
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429]);
  });
});
