import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll } from 'vitest';

/** Debian's Chromium, driven by playwright-core; `.ci/run` installs it. */
export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = fs.existsSync(CHROMIUM);

/** Says loudly, once per file, that `what` is skipped for want of Chromium. */
export function warnIfNoChromium(what: string): void {
  if (hasChromium) return;
  console.warn(
    [
      '',
      '!'.repeat(100),
      `!!! Chromium not found at ${CHROMIUM}: ${what} SKIPPED (install Debian's chromium; .ci/run does)`,
      '!'.repeat(100),
      '',
    ].join('\n'),
  );
}

/**
 * Launches one headless Chromium for the enclosing describe block and closes
 * it after; `cleanups` run after each test, last first. Call inside the
 * describe block.
 */
export function useChromium(): { browser(): Browser; cleanups: (() => unknown)[] } {
  let browser: Browser | undefined;
  const cleanups: (() => unknown)[] = [];
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    });
  }, 30_000);
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()?.();
  }, 30_000);
  afterAll(async () => {
    await browser?.close();
  }, 30_000);
  return {
    browser: () => {
      if (!browser) throw new Error('Chromium is not running (useChromium() outside a describe block?)');
      return browser;
    },
    cleanups,
  };
}
