/**
 * Swagger UI in a real browser: headless Chromium (`test/support/chromium.ts` says which one),
 * driven by playwright-core. A user with tasks opens
 * `/docs`, authorizes with their real access token, and runs "Try it out" on `GET /api/v1/tasks`:
 * the page must show a 200 and the user's tasks, with no Content-Security-Policy violation or
 * script error on the way. The page is opened under a host name, not 127.0.0.1: Chromium treats
 * loopback as a secure origin and would hide what plain http on a real host does to the page.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { chromiumExecutable } from '../support/chromium.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

const HOST = 'taskd.test';
/** What this machine's Chromium needs: no sandbox as root, and no calls to Google's services. */
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
];
const STEP_TIMEOUT_MS = 15_000;

describe('Swagger UI in Chromium (e2e)', () => {
  let t: TestApp;
  let user: TestUser;
  let profileDir: string;
  let browser: BrowserContext;
  let page: Page;
  const titles = ['Buy oat milk', 'Write the quarterly report', 'Call the plumber'];
  /** CSP violations, script errors and failed requests seen by the page. */
  const problems: string[] = [];

  beforeAll(async () => {
    const executablePath = await chromiumExecutable();
    t = await startTestApp({ listen: true });
    user = await registerAndLogin(t.app);
    for (const title of titles) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers: user.auth,
        payload: { title },
      });
      expect(res.statusCode).toBe(201);
    }
    profileDir = mkdtempSync(path.join(tmpdir(), 'taskd-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      timeout: 30_000,
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on('console', (message) => {
      // Chromium's notice that COOP only applies over https (TLS is terminated in front of the
      // service) is not a fault of the page.
      if (
        message.type() === 'error' &&
        !message.text().startsWith('The Cross-Origin-Opener-Policy header has been ignored')
      ) {
        problems.push(`console: ${message.text()}`);
      }
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) =>
      problems.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ''}`),
    );
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await t?.close();
  });

  it('authorizes with a real token and shows the user\'s tasks from "Try it out" on GET /api/v1/tasks', async () => {
    const origin = t.url.replace('127.0.0.1', HOST);
    await page.goto(`${origin}/docs`);
    await page.locator('.swagger-ui .info .title').filter({ hasText: 'taskd' }).waitFor();

    // Authorize: the bearer scheme's dialog takes the access token.
    await page.getByRole('button', { name: 'Authorize' }).first().click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    await dialog.locator('.auth-container input').first().fill(user.accessToken);
    await dialog.locator('button.authorize').click();
    await dialog.getByRole('button', { name: 'Close' }).click();
    await dialog.waitFor({ state: 'detached' });

    // GET /api/v1/tasks → Try it out → Execute.
    const operation = page.locator('#operations-tasks-listTasks');
    await operation.locator('.opblock-summary').first().click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    const answer = page.waitForResponse(
      (response) => new URL(response.url()).pathname === '/api/v1/tasks',
    );
    await operation.getByRole('button', { name: 'Execute' }).click();
    const response = await answer;
    expect(new URL(response.url()).origin).toBe(origin);
    expect(response.request().headers().authorization).toBe(`Bearer ${user.accessToken}`);

    // What the page shows.
    const live = operation.locator('.live-responses-table .response').first();
    await live.locator('.response-col_status').filter({ hasText: '200' }).waitFor();
    const shown = await live.locator('.response-col_description').innerText();
    for (const title of titles) expect(shown).toContain(title);
    expect(shown).toContain('"nextCursor": null');
    expect(problems).toEqual([]);
  }, 90_000);

  it('keeps the strictest policy for everything else', async () => {
    const page = await t.app.inject({ method: 'GET', url: '/docs' });
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).not.toMatch(
      /unsafe-eval|upgrade-insecure-requests|script-src[^;]*unsafe-inline/,
    );
    for (const url of ['/docs-json', '/health/live', '/api/v1/tasks']) {
      const res = await t.app.inject({ method: 'GET', url, headers: user.auth });
      expect({ url, csp: res.headers['content-security-policy'] }).toEqual({
        url,
        csp: "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
      });
    }
  });
});
