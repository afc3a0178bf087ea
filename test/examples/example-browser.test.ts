// The Agent Work page in a real browser (Debian's Chromium driven by
// playwright-core), streaming with ssecast/client served as an ES module: a
// task's progress, output and pull request as a user sees them, output that
// looks like HTML shown as text, a dropped stream that resumes with
// Last-Event-ID without repeating or losing a line, and, with auth on, the
// token sent as Authorization: Bearer (never in the URL) and a refusal shown
// with the server's own message, without a retry.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { hasChromium, useChromium, warnIfNoChromium } from '../support/chromium.js';
import { issueToken, keyFor } from '../../examples/agent-work/auth.mjs';
import { createAgentWorkApp } from '../../examples/agent-work/server.mjs';

warnIfNoChromium('browser tests');

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** Generous: a slow CI machine must not fail these, only a broken page or server. */
const WAIT = { timeout: 20_000 } as const;
const XSS_LINE = '<img src=x onerror="window.__xss=1">';
const SECRET = 'agent-work-browser-secret-at-least-32-bytes';

interface SseRequest {
  agents: string[];
  lastEventId: string | undefined;
  authorization: string | undefined;
  /** The request target as the server saw it (path and query). */
  url: string;
}

interface Harness {
  url: string;
  page: Page;
  /** Every request for the SSE endpoint, in arrival order. */
  sseRequests: SseRequest[];
  /** Uncaught exceptions in the page. */
  pageErrors: string[];
  /** What the app logged as an error. */
  appErrors: unknown[][];
  /** The app's hub (its counters tell whether a resume had to resync). */
  hub: { stats(): { resyncs: number; connections: number } };
  /** Destroys the server side of every socket that carried an SSE request; returns how many. */
  dropSse(): number;
}

interface TerminalLine {
  stream: string;
  text: string;
}

declare global {
  interface Window {
    __xss?: unknown;
    __states?: string[];
    __received?: { type: string; id: string }[];
  }
}

describe.skipIf(!hasChromium)('the Agent Work page in Chromium', () => {
  const { browser, cleanups } = useChromium();

  /** A fresh app on its own port, and a fresh browser context with one page. */
  async function start(env: Record<string, string> = {}): Promise<Harness> {
    const appErrors: unknown[][] = [];
    const log = {
      log: () => {},
      warn: (...args: unknown[]) => console.warn(...args),
      error: (...args: unknown[]) => {
        appErrors.push(args);
        console.error(...args);
      },
    };
    const aw = await createAgentWorkApp({ env: { SSE_RETRY_MS: '200', ...env }, log });
    const server = http.createServer(aw.app);
    const sockets = new Set<Socket>();
    const sseSockets = new Set<Socket>();
    const sseRequests: SseRequest[] = [];
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        sseSockets.delete(socket);
      });
    });
    server.on('request', (req: http.IncomingMessage) => {
      if (!req.url?.startsWith('/api/v1/sse')) return;
      sseSockets.add(req.socket);
      const header = req.headers['last-event-id'];
      sseRequests.push({
        agents: new URL(req.url, 'http://x').searchParams.getAll('agent_id'),
        lastEventId: Array.isArray(header) ? header[0] : header,
        authorization: req.headers.authorization,
        url: req.url,
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    aw.setOrigin(url);
    // Cleanups run last-in first-out: the page goes first, then the server, then the app.
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await aw.close();
    });

    const context = await browser().newContext({ viewport: { width: 1200, height: 900 } });
    cleanups.push(() => context.close());
    // Records every event that reaches the page's SSE client, before the page's
    // own duplicate filter: what crossed the wire, reconnects included. The
    // client reads the stream through fetch, so the record is a pass-through
    // tap on the bodies of /api/v1/sse responses.
    await context.addInitScript(() => {
      const nativeFetch = window.fetch;
      const received: { type: string; id: string }[] = (window.__received = []);
      // A function called with the caller's `this`, as the native fetch is: the tap must not hide a fetch called the wrong way.
      window.fetch = async function (this: unknown, input: RequestInfo | URL, init?: RequestInit) {
        const response = await nativeFetch.call(this, input, init);
        const target = new URL(input instanceof Request ? input.url : String(input), location.href);
        if (target.pathname !== '/api/v1/sse' || response.status !== 200 || !response.body) return response;
        const decoder = new TextDecoder();
        let buffer = '';
        const tap = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            // ssecast ends lines with LF, and every event with a blank line.
            buffer += decoder.decode(chunk, { stream: true });
            for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
              const fields = new Map<string, string>();
              for (const line of buffer.slice(0, end).split('\n')) {
                const colon = line.indexOf(':');
                if (colon === -1) fields.set(line, '');
                else fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^ /, ''));
              }
              buffer = buffer.slice(end + 2);
              const type = fields.get('event');
              if (type) received.push({ type, id: fields.get('id') ?? '' });
            }
            controller.enqueue(chunk);
          },
        });
        return new Response(response.body.pipeThrough(tap), {
          status: response.status,
          statusText: response.statusText,
          headers: response.headers,
        });
      };
    });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    return {
      url,
      page,
      sseRequests,
      pageErrors,
      appErrors,
      hub: aw.hub,
      dropSse() {
        const count = sseSockets.size;
        for (const socket of sseSockets) socket.destroy();
        sseSockets.clear();
        return count;
      },
    };
  }

  async function openConnected(page: Page, url: string): Promise<void> {
    await page.goto(url);
    try {
      await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'connected', null, WAIT);
    } catch (error) {
      // Say what the page shows instead: its connection state and the stream's last error.
      const shown = await page.evaluate(
        () => `${document.querySelector('#connection')?.textContent}; ${document.querySelector('#stream-error')?.textContent}`,
      );
      throw new Error(`the page never connected: ${shown}`, { cause: error });
    }
  }

  async function runTask(page: Page, command: string): Promise<void> {
    await page.fill('#command', command);
    await page.click('#run');
  }

  /** Waits for the task to end: a pull request link and the sandbox stopped. */
  async function waitForTaskEnd(page: Page): Promise<void> {
    await page.waitForFunction(
      () =>
        document.querySelector('#pr a') !== null && (document.querySelector('#sandbox') as HTMLElement | null)?.dataset.state === 'stopped',
      null,
      WAIT,
    );
  }

  /** The terminal's lines: command_output carries each line with its "\n", which the <pre> renders as a break. */
  async function terminalLines(page: Page): Promise<TerminalLine[]> {
    const spans = await page.$$eval('#terminal > span', (elements) =>
      elements.map((span) => ({ stream: span.className, text: span.textContent ?? '' })),
    );
    for (const span of spans) expect(span.text).toMatch(/\n$/);
    return spans.map((span) => ({ stream: span.stream, text: span.text.replace(/\n$/, '') }));
  }

  it('shows a task from sandbox to pull request, with output that looks like HTML as text', async () => {
    const { url, page, pageErrors, appErrors } = await start();
    await openConnected(page, `${url}/?agent_id=agent-1`);
    expect(await page.inputValue('#agent')).toBe('agent-1');

    // printf's own quoting keeps the shell from ever seeing the markup as syntax.
    await runTask(page, `printf '%s\\n' one two; printf '%s\\n' '${XSS_LINE}'; echo oops 1>&2`);

    for (const operation of ['clone', 'push']) {
      await page.waitForFunction(
        (op) => (document.querySelector(`#git .op[data-operation="${op}"] progress`) as HTMLProgressElement | null)?.value === 100,
        operation,
        WAIT,
      );
    }
    await waitForTaskEnd(page);

    const git = await page.$$eval('#git .op', (rows) =>
      rows.map((row) => ({
        operation: (row as HTMLElement).dataset.operation,
        status: (row as HTMLElement).dataset.status,
        value: row.querySelector('progress')?.value,
        percent: row.querySelector('.percent')?.textContent,
      })),
    );
    expect(git.map((row) => row.operation)).toEqual(['clone', 'branch', 'commit', 'push']);
    for (const row of git) expect(row).toMatchObject({ status: 'completed', value: 100, percent: '100 %' });

    // stdout and stderr are separate pipes, so only each stream's own order is certain.
    const lines = await terminalLines(page);
    expect(lines).toHaveLength(4);
    expect(lines.filter((line) => line.stream === 'stdout').map((line) => line.text)).toEqual(['one', 'two', XSS_LINE]);
    expect(lines.filter((line) => line.stream === 'stderr').map((line) => line.text)).toEqual(['oops']);

    const dom = await page.evaluate(() => ({
      terminalText: document.querySelector('#terminal')?.textContent ?? '',
      images: document.querySelectorAll('#terminal img').length,
      terminalElements: [...document.querySelectorAll('#terminal *')].map((el) => el.tagName),
      xss: window.__xss,
    }));
    expect(dom.terminalText).toContain(XSS_LINE);
    expect(dom.images).toBe(0);
    expect(new Set(dom.terminalElements)).toEqual(new Set(['SPAN']));
    expect(dom.xss).toBeUndefined();

    const link = page.locator('#pr a');
    const href = await link.getAttribute('href');
    expect(href).toMatch(/\/pull\/\d+$/);
    const number = /\/pull\/(\d+)$/.exec(href ?? '')?.[1];
    expect(await link.textContent()).toBe(`Pull request #${number}`);
    expect(await page.locator('#sandbox').getAttribute('data-state')).toBe('stopped');
    expect(await page.locator('#sandbox').textContent()).toBe('stopped');
    expect(await page.locator('#task-error').isHidden()).toBe(true);
    expect(await page.locator('#connection').textContent()).toBe('connected');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}agent-work.png`, fullPage: true });

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('resumes a dropped stream with Last-Event-ID: every line once, in order', async () => {
    const { url, page, sseRequests, pageErrors, appErrors, hub, dropSse } = await start();
    await openConnected(page, `${url}/?agent_id=agent-2`);
    // Every state #connection takes from now on (a MutationObserver sees each change, however brief).
    await page.evaluate(() => {
      const pill = document.querySelector('#connection') as HTMLElement;
      const states = (window.__states = [String(pill.dataset.state)]);
      new MutationObserver((records) => {
        records.forEach((_record, i) => states.push(String(records[i + 1]?.oldValue ?? pill.dataset.state)));
      }).observe(pill, { attributes: true, attributeFilter: ['data-state'], attributeOldValue: true });
    });

    await runTask(page, 'for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#terminal > span')].some((span) => span.textContent === 'line 10\n'),
      null,
      WAIT,
    );
    const before = sseRequests.length;
    expect(dropSse()).toBeGreaterThanOrEqual(1);
    const shownAtDrop = (await terminalLines(page)).length;

    await page.waitForFunction(
      () => {
        const states = window.__states ?? [];
        const dropped = states.indexOf('reconnecting');
        return dropped !== -1 && states.indexOf('connected', dropped) !== -1;
      },
      null,
      WAIT,
    );
    await waitForTaskEnd(page);

    const lines = await terminalLines(page);
    expect(lines.map((line) => line.text)).toEqual(Array.from({ length: 40 }, (_, i) => `line ${i + 1}`));
    expect(lines.every((line) => line.stream === 'stdout')).toBe(true);
    expect(await page.locator('#pr a').getAttribute('href')).toMatch(/\/pull\/\d+$/);
    expect(await page.locator('#connection').textContent()).toBe('connected');
    // The stream error line ("Reconnecting: …" while the stream was down) is gone once it is back.
    expect(await page.locator('#stream-error').isHidden()).toBe(true);

    const agent2 = sseRequests.filter((request) => request.agents.includes('agent-2'));
    expect(agent2.length).toBeGreaterThanOrEqual(2);
    expect(agent2[0]?.lastEventId).toBeUndefined();
    const resumed = sseRequests.slice(before);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    expect(resumed[0]?.agents).toEqual(['agent-2']);
    expect(resumed[0]?.lastEventId).toMatch(/^[0-9a-z]+\.[1-9]\d*$/);

    // On the wire too, not only on screen: the resume sent nothing twice and needed no resync.
    const received = await page.evaluate(() => window.__received ?? []);
    const output = received.filter((event) => event.type === 'command_output');
    expect(output).toHaveLength(40);
    expect(new Set(output.map((event) => event.id)).size).toBe(40);
    expect(new Set(received.map((event) => event.id)).size).toBe(received.length);
    expect(received.filter((event) => event.type === 'resync')).toEqual([]);
    expect(hub.stats().resyncs).toBe(0);
    // The dropped connection's subscription was let go: only the page's live one is left.
    for (let tries = 0; hub.stats().connections !== 1 && tries < 100; tries++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(hub.stats().connections).toBe(1);

    // For the record (not asserted: it depends on the machine's speed).
    const states = await page.evaluate(() => window.__states ?? []);
    console.info(
      `[example-browser] dropped after ${shownAtDrop}/40 lines; states ${states.join(' → ')}; SSE requests ${sseRequests.length}`,
    );

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  describe('with SSE_JWT_SECRET', () => {
    const key = keyFor(SECRET);

    it('sends the token from ?access_token= as Authorization: Bearer, never in the stream URL, and streams a task', async () => {
      const { url, page, sseRequests, pageErrors, appErrors } = await start({ SSE_JWT_SECRET: SECRET });
      const token = await issueToken({ sub: 'alice', agents: ['agent-1'] }, key);
      await openConnected(page, `${url}/?agent_id=agent-1&access_token=${token}`);

      await runTask(page, `printf '%s\\n' alpha beta`);
      await waitForTaskEnd(page);
      expect((await terminalLines(page)).map((line) => line.text)).toEqual(['alpha', 'beta']);
      expect(await page.locator('#connection').textContent()).toBe('connected');
      expect(await page.locator('#stream-error').isHidden()).toBe(true);
      expect(await page.locator('#task-error').isHidden()).toBe(true);

      // What the server saw: the header on every SSE request, and no token in any request target.
      expect(sseRequests.length).toBeGreaterThanOrEqual(1);
      for (const request of sseRequests) {
        expect(request.authorization).toBe(`Bearer ${token}`);
        expect(request.url).not.toContain('access_token');
        expect(request.url).not.toContain(token);
        expect(request.agents).toEqual(['agent-1']);
      }

      expect(pageErrors).toEqual([]);
      expect(appErrors).toEqual([]);
    }, 60_000);

    it.each([
      { what: 'no token', agent: 'agent-1', agents: undefined, status: 401, message: 'authentication required' },
      {
        what: 'a token for agent-1 only',
        agent: 'agent-2',
        agents: ['agent-1'],
        status: 403,
        message: 'not allowed to read stream "agent-2"',
      },
    ])(
      "with $what, shows the server's refusal ($status) and status closed, and does not try again",
      async ({ agent, agents, status, message }) => {
        const { url, page, sseRequests, pageErrors, appErrors } = await start({ SSE_JWT_SECRET: SECRET });
        const query = agents ? `&access_token=${await issueToken({ sub: 'alice', agents }, key)}` : '';
        await page.goto(`${url}/?agent_id=${agent}${query}`);

        await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'closed', null, WAIT);
        expect(await page.locator('#connection').getAttribute('data-state')).toBe('closed');
        const shown = page.locator('#stream-error');
        expect(await shown.isVisible()).toBe(true);
        expect(await shown.textContent()).toBe(`The stream closed (${status}): ${message}`);

        // A refusal is final: well past the client's first backoff (under 1 s here), still one request.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        expect(sseRequests).toHaveLength(1);
        expect(sseRequests[0]?.agents).toEqual([agent]);
        expect(sseRequests[0]?.authorization).toEqual(agents ? expect.stringMatching(/^Bearer \S+$/) : undefined);
        expect(await page.locator('#connection').textContent()).toBe('closed');
        expect(await page.evaluate(() => window.__received ?? [])).toEqual([]);

        expect(pageErrors).toEqual([]);
        expect(appErrors).toEqual([]);
      },
      30_000,
    );
  });
});
