/**
 * A login body that is not valid JSON still carries the password. The 400
 * answer hides the parser's message; the log must not carry it either (V8's JSON.parse messages
 * quote the input).
 */
import { startTestApp, type TestApp } from '../support/test-app.js';

class CapturedLog {
  readonly raw: string[] = [];
  write(chunk: string): void {
    this.raw.push(chunk);
  }
}

describe('malformed JSON bodies and the log (e2e)', () => {
  const log = new CapturedLog();
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { LOG_LEVEL: 'info' }, logDestination: log });
  });

  afterAll(async () => {
    await t.close();
  });

  it('never writes the password of a malformed login body', async () => {
    const password = 'S3cret-Passw0rd-in-a-broken-body';
    const bodies = [
      `{"email":"a@example.com","password":"${password}"`,
      `{"email":"a@example.com","password":"${password}",}`,
      `{"password":"${password}" "email":"a@example.com"}`,
    ];
    for (const payload of bodies) {
      const res = await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'content-type': 'application/json' }, payload });
      expect(res.statusCode).toBe(400);
      expect(res.body).not.toContain(password);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(log.raw.join('')).toContain('"statusCode":400');
    expect(log.raw.join('')).not.toContain(password);
  });
});
