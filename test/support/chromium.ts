import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
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

/** A page and its event stream on one origin, for a browser's own EventSource. */
export interface PageSite {
  url: string;
  /** The Last-Event-ID of every request for /events, in order. */
  lastEventIds: (string | undefined)[];
  /** Destroys the open sockets: what a dropped network or a crashed server does. */
  drop(): void;
  /** Destroys open sockets and closes the server. */
  close(): Promise<void>;
}

/**
 * Serves `page` at every path but /events, which goes to the handler `events()`
 * returns at the time (a test may swap it, as a restart does), on 127.0.0.1.
 */
export async function servePage(page: string, events: () => http.RequestListener): Promise<PageSite> {
  const lastEventIds: (string | undefined)[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/events')) {
      lastEventIds.push(req.headers['last-event-id'] as string | undefined);
      return events()(req, res);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    lastEventIds,
    drop: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
