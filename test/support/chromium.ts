/**
 * The Chromium a browser test drives: `CHROMIUM_PATH` when set, Debian's `/usr/bin/chromium`
 * when installed, and otherwise the headless Chromium that `@sparticuz/chromium` ships inside
 * its npm package (unpacked to the temp directory on first use), so that `npm ci && npm test`
 * needs nothing beyond the lockfile. Nothing is downloaded at run time.
 */
import { existsSync } from 'node:fs';

const SYSTEM_CHROMIUM = '/usr/bin/chromium';

export async function chromiumExecutable(): Promise<string> {
  const configured = process.env.CHROMIUM_PATH;
  if (configured) {
    if (!existsSync(configured)) throw new Error(`CHROMIUM_PATH names no file: ${configured}`);
    return configured;
  }
  if (existsSync(SYSTEM_CHROMIUM)) return SYSTEM_CHROMIUM;
  const { default: packaged } = await import('@sparticuz/chromium');
  return packaged.executablePath();
}
