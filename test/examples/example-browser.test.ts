// The Agent Work page in a real browser (Debian's Chromium driven by
// playwright-core), streaming with ssecast/client served as an ES module: a
// task's card from sandbox to pull request, output that looks like HTML shown
// as text, a dropped stream that resumes with Last-Event-ID without repeating
// or losing a line, a late joiner that sees a finished 2,000-line task whole,
// two tasks of one agent in two cards, several agents on one connection, a
// server restart said in words, named heartbeats that keep the live/stale
// indicator honest, and, with auth on, the token sent as Authorization: Bearer
// (never in the URL) and a refusal shown with the server's own message.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { hasChromium, useChromium, warnIfNoChromium } from '../support/chromium.js';
import { openStream, type StreamClient } from '../support/helpers.js';
import { issueToken, keyFor } from '../../examples/agent-work/auth.mjs';
import { createAgentWorkApp } from '../../examples/agent-work/server.mjs';

warnIfNoChromium('browser tests');

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** Generous: a slow CI machine must not fail these, only a broken page or server. */
const WAIT = { timeout: 20_000 } as const;
const XSS_LINE = '<img src=x onerror="window.__xss=1">';
const SECRET = 'agent-work-browser-secret-at-least-32-bytes';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface SseRequest {
  agents: string[];
  lastEventId: string | undefined;
  authorization: string | undefined;
  /** The request target as the server saw it (path and query). */
  url: string;
}

type AgentWork = Awaited<ReturnType<typeof createAgentWorkApp>>;

interface Harness {
  url: string;
  page: Page;
  /** Every request for the SSE endpoint, in arrival order (across restarts). */
  sseRequests: SseRequest[];
  /** Uncaught exceptions in the page. */
  pageErrors: string[];
  /** What the app logged as an error. */
  appErrors: unknown[][];
  /** The running app's hub (its counters tell whether a resume had to resync). */
  hub(): AgentWork['hub'];
  /** Destroys the server side of every socket that carried an SSE request; returns how many. */
  dropSse(): number;
  /** Stops the app (its hub and history gone), serves `between` on its port if given, then starts a new app there. */
  stop(): Promise<void>;
  serve(handler: http.RequestListener): Promise<void>;
  /** Serves the running app again on its port (after `serve`): its hub and history as they are now. */
  serveApp(): Promise<void>;
  restart(): Promise<void>;
}

interface TerminalLine {
  line: number;
  stream: string;
  text: string;
}

declare global {
  interface Window {
    __xss?: unknown;
    __states?: string[];
    __received?: { type: string; id: string }[];
    /** Set by a test: the tap eats heartbeat events, as a path that silently stops delivering would. */
    __dropHeartbeats?: boolean;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const data = (event: { data: string }) => JSON.parse(event.data) as Record<string, unknown>;
const taskEnded = (client: StreamClient, taskId: string) =>
  client.events.some((e) => e.event === 'task_status' && data(e).task_id === taskId && data(e).status !== 'running');

async function startTask(base: string, agent: string, command: string): Promise<string> {
  const response = await fetch(`${base}/api/v1/agents/${agent}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command }),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { task_id: string }).task_id;
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
    const sseRequests: SseRequest[] = [];
    const sockets = new Set<Socket>();
    const sseSockets = new Set<Socket>();
    let port = 0;
    let server: http.Server | undefined;
    let aw: AgentWork | undefined;

    async function listenOn(handler: http.RequestListener): Promise<http.Server> {
      const created = http.createServer(handler);
      created.on('connection', (socket) => {
        sockets.add(socket);
        socket.on('close', () => {
          sockets.delete(socket);
          sseSockets.delete(socket);
        });
      });
      created.on('request', (req: http.IncomingMessage) => {
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
      await new Promise<void>((resolve) => created.listen(port, '127.0.0.1', resolve));
      port = (created.address() as AddressInfo).port;
      return created;
    }
    async function closeServer(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      const closing = server;
      server = undefined;
      if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
    }
    async function stop(): Promise<void> {
      await closeServer();
      const closing = aw;
      aw = undefined;
      await closing?.close();
    }
    async function boot(): Promise<void> {
      aw = await createAgentWorkApp({ env: { SSE_RETRY_MS: '200', ...env }, log });
      server = await listenOn(aw.app);
      aw.setOrigin(`http://127.0.0.1:${port}`);
    }
    await boot();
    const url = `http://127.0.0.1:${port}`;
    // Cleanups run last-in first-out: the page goes first, then the server and the app.
    cleanups.push(stop);

    const context = await browser().newContext({ viewport: { width: 1280, height: 900 } });
    cleanups.push(() => context.close());
    // Records every event that reaches the page's SSE client, before the page's
    // own duplicate filter: what crossed the wire, reconnects included. The
    // client reads the stream through fetch, so the record is a tap on the
    // bodies of /api/v1/sse responses. It passes every event on whole (and
    // drops heartbeats when a test says so).
    await context.addInitScript(() => {
      const nativeFetch = window.fetch;
      const received: { type: string; id: string }[] = (window.__received = []);
      // A function called with the caller's `this`, as the native fetch is: the tap must not hide a fetch called the wrong way.
      window.fetch = async function (this: unknown, input: RequestInfo | URL, init?: RequestInit) {
        const response = await nativeFetch.call(this, input, init);
        const target = new URL(input instanceof Request ? input.url : String(input), location.href);
        if (target.pathname !== '/api/v1/sse' || response.status !== 200 || !response.body) return response;
        const decoder = new TextDecoder();
        const encoder = new TextEncoder();
        let buffer = '';
        const tap = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            // ssecast ends lines with LF, and every event with a blank line.
            buffer += decoder.decode(chunk, { stream: true });
            for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
              const block = buffer.slice(0, end + 2);
              const fields = new Map<string, string>();
              for (const line of buffer.slice(0, end).split('\n')) {
                const colon = line.indexOf(':');
                if (colon === -1) fields.set(line, '');
                else fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^ /, ''));
              }
              buffer = buffer.slice(end + 2);
              const type = fields.get('event');
              if (type === 'heartbeat' && window.__dropHeartbeats) continue;
              if (type) received.push({ type, id: fields.get('id') ?? '' });
              controller.enqueue(encoder.encode(block));
            }
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
      hub: () => {
        if (!aw) throw new Error('the app is stopped');
        return aw.hub;
      },
      dropSse() {
        const count = sseSockets.size;
        for (const socket of sseSockets) socket.destroy();
        sseSockets.clear();
        return count;
      },
      stop,
      async serve(handler) {
        await closeServer();
        server = await listenOn(handler);
      },
      async serveApp() {
        if (!aw) throw new Error('the app is stopped');
        await closeServer();
        server = await listenOn(aw.app);
      },
      async restart() {
        await stop();
        await boot();
      },
    };
  }

  async function openLive(page: Page, url: string): Promise<void> {
    await page.goto(url);
    try {
      await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);
    } catch (error) {
      // Say what the page shows instead: its connection state and the stream's last error.
      const shown = await page.evaluate(
        () => `${document.querySelector('#connection')?.textContent}; ${document.querySelector('#stream-error')?.textContent}`,
      );
      throw new Error(`the page never went live: ${shown}`, { cause: error });
    }
  }

  /** Records every state #connection takes from now on (a MutationObserver sees each change, however brief). */
  async function recordStates(page: Page): Promise<void> {
    await page.evaluate(() => {
      const pill = document.querySelector('#connection') as HTMLElement;
      const states = (window.__states = [String(pill.dataset.state)]);
      new MutationObserver((records) => {
        records.forEach((_record, i) => states.push(String(records[i + 1]?.oldValue ?? pill.dataset.state)));
      }).observe(pill, { attributes: true, attributeFilter: ['data-state'], attributeOldValue: true });
    });
  }

  /** Runs a task from the page's form; returns its id, from the server's answer. */
  async function runTask(page: Page, command: string, agent?: string): Promise<string> {
    if (agent) await page.selectOption('#agent', agent);
    await page.fill('#command', command);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && /\/api\/v1\/agents\/[^/]+\/tasks$/.test(r.url())),
      page.click('#run'),
    ]);
    expect(response.status()).toBe(202);
    return ((await response.json()) as { task_id: string }).task_id;
  }

  const card = (taskId: string) => `.task[data-task-id="${taskId}"]`;

  /** Waits for the task's card to show the end: completed, a pull request link, the sandbox stopped. */
  async function waitForTaskEnd(page: Page, taskId: string): Promise<void> {
    await page.waitForFunction(
      (selector) => {
        const el = document.querySelector(selector) as HTMLElement | null;
        return (
          el?.dataset.status === 'completed' &&
          el.querySelector('.pr a') !== null &&
          (el.querySelector('.sandbox') as HTMLElement | null)?.dataset.state === 'stopped'
        );
      },
      card(taskId),
      WAIT,
    );
  }

  /** A card's terminal lines: command_output carries each line with its "\n", which the <pre> renders as a break. */
  async function terminalLines(page: Page, taskId: string): Promise<TerminalLine[]> {
    const spans = await page.$$eval(`${card(taskId)} .terminal > [data-line]`, (elements) =>
      elements.map((span) => ({
        line: Number((span as HTMLElement).dataset.line),
        stream: span.className,
        text: span.textContent ?? '',
      })),
    );
    for (const span of spans) expect(span.text).toMatch(/\n$/);
    return spans.map((span) => ({ ...span, text: span.text.replace(/\n$/, '') }));
  }

  /** Every git bar of a card: operation, status, value and the percentage shown. */
  async function gitBars(page: Page, taskId: string) {
    return page.$$eval(`${card(taskId)} .git .op`, (rows) =>
      rows.map((row) => ({
        operation: (row as HTMLElement).dataset.operation,
        status: (row as HTMLElement).dataset.status,
        value: row.querySelector('progress')?.value,
        percent: row.querySelector('.percent')?.textContent,
      })),
    );
  }

  async function expectWholeAndDone(page: Page, taskId: string): Promise<void> {
    const bars = await gitBars(page, taskId);
    expect(bars.map((row) => row.operation)).toEqual(['clone', 'branch', 'commit', 'push']);
    for (const row of bars) expect(row).toMatchObject({ status: 'completed', value: 100, percent: '100 %' });
    const el = page.locator(card(taskId));
    expect(await el.locator('.sandbox').textContent()).toBe('stopped');
    expect(await el.locator('.status').textContent()).toBe('completed');
    const href = await el.locator('.pr a').getAttribute('href');
    expect(href).toMatch(/\/pull\/\d+$/);
    expect(await el.locator('.pr a').textContent()).toBe(`Pull request #${/\/pull\/(\d+)$/.exec(href ?? '')?.[1]}`);
    // Its start time, as a <time> with the ISO instant, and how long it took.
    expect(await el.locator('time.started').getAttribute('datetime')).toMatch(ISO);
    expect(await el.locator('.duration').textContent()).toMatch(/^· took \d+(\.\d)? s$|^· took \d+ min \d+ s$/);
  }

  it('shows a task from sandbox to pull request in its card, with output that looks like HTML as text', async () => {
    const { url, page, pageErrors, appErrors } = await start();
    await openLive(page, `${url}/?agent_id=agent-1`);
    expect(await page.inputValue('#agent')).toBe('agent-1');
    expect(await page.locator('#empty').isVisible()).toBe(true);

    // printf's own quoting keeps the shell from ever seeing the markup as syntax.
    const command = `printf '%s\\n' one two; printf '%s\\n' '${XSS_LINE}'; echo oops 1>&2`;
    const taskId = await runTask(page, command);
    for (const operation of ['clone', 'push']) {
      await page.waitForFunction(
        ([selector, op]) =>
          (document.querySelector(`${selector} .op[data-operation="${op}"] progress`) as HTMLProgressElement | null)?.value === 100,
        [card(taskId), operation] as const,
        WAIT,
      );
    }
    await waitForTaskEnd(page, taskId);
    await expectWholeAndDone(page, taskId);
    expect(await page.locator(`${card(taskId)} .command`).textContent()).toBe(command);
    expect(await page.locator(`${card(taskId)} .agent`).textContent()).toBe('agent-1');
    expect(await page.locator('#empty').isHidden()).toBe(true);

    // stdout and stderr are separate pipes, so only each stream's own order is certain; the numbers are the publish order.
    const lines = await terminalLines(page, taskId);
    expect(lines.map((line) => line.line)).toEqual([1, 2, 3, 4]);
    expect(lines.filter((line) => line.stream === 'stdout').map((line) => line.text)).toEqual(['one', 'two', XSS_LINE]);
    expect(lines.filter((line) => line.stream === 'stderr').map((line) => line.text)).toEqual(['oops']);
    expect(await page.locator(`${card(taskId)} .terminal .trimmed`).isHidden()).toBe(true);

    const dom = await page.evaluate(
      (selector) => ({
        terminalText: document.querySelector(`${selector} .terminal`)?.textContent ?? '',
        images: document.querySelectorAll('.terminal img').length,
        terminalElements: [...document.querySelectorAll('.terminal *')].map((el) => el.tagName),
        xss: window.__xss,
      }),
      card(taskId),
    );
    expect(dom.terminalText).toContain(XSS_LINE);
    expect(dom.images).toBe(0);
    expect(new Set(dom.terminalElements)).toEqual(new Set(['SPAN']));
    expect(dom.xss).toBeUndefined();
    expect(await page.locator('#task-error').isHidden()).toBe(true);
    expect(await page.locator('#notice').isHidden()).toBe(true);
    expect(await page.locator('#connection').textContent()).toBe('live');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}agent-work.png`, fullPage: true });

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('resumes a dropped stream with Last-Event-ID: every line once, in order', async () => {
    const { url, page, sseRequests, pageErrors, appErrors, hub, dropSse } = await start();
    await openLive(page, `${url}/?agent_id=agent-2`);
    await recordStates(page);

    const taskId = await runTask(page, 'for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done');
    await page.waitForFunction(
      (selector) => [...document.querySelectorAll(`${selector} .terminal > span`)].some((span) => span.textContent === 'line 10\n'),
      card(taskId),
      WAIT,
    );
    const before = sseRequests.length;
    expect(dropSse()).toBeGreaterThanOrEqual(1);
    const shownAtDrop = (await terminalLines(page, taskId)).length;

    await page.waitForFunction(
      () => {
        const states = window.__states ?? [];
        const dropped = states.indexOf('reconnecting');
        return dropped !== -1 && states.indexOf('live', dropped) !== -1;
      },
      null,
      WAIT,
    );
    await waitForTaskEnd(page, taskId);

    const lines = await terminalLines(page, taskId);
    expect(lines.map((line) => line.text)).toEqual(Array.from({ length: 40 }, (_, i) => `line ${i + 1}`));
    expect(lines.every((line) => line.stream === 'stdout')).toBe(true);
    expect(await page.locator('#connection').textContent()).toBe('live');
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
    const received = (await page.evaluate(() => window.__received ?? [])).filter((event) => event.type !== 'heartbeat');
    const output = received.filter((event) => event.type === 'command_output');
    expect(output).toHaveLength(40);
    expect(new Set(output.map((event) => event.id)).size).toBe(40);
    expect(new Set(received.map((event) => event.id)).size).toBe(received.length);
    expect(received.filter((event) => event.type === 'resync')).toEqual([]);
    expect(hub().stats().resyncs).toBe(0);
    // The dropped connection's subscription was let go: only the page's live one is left.
    for (let tries = 0; hub().stats().connections !== 1 && tries < 100; tries++) await sleep(50);
    expect(hub().stats().connections).toBe(1);

    // For the record (not asserted: it depends on the machine's speed).
    const states = await page.evaluate(() => window.__states ?? []);
    console.info(
      `[example-browser] dropped after ${shownAtDrop}/40 lines; states ${states.join(' → ')}; SSE requests ${sseRequests.length}`,
    );

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('shows a late joiner a finished 2,000-line task whole: bars at 100, sandbox stopped, the PR, the last lines and how many went before', async () => {
    const { url, page, pageErrors, appErrors } = await start();
    const watch = await openStream(`${url}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => watch.close());
    const taskId = await startTask(url, 'agent-1', 'seq 1 2000; sleep 0.2; echo "a warning at the end" 1>&2');
    await watch.waitFor((c) => taskEnded(c, taskId), 60_000, 'the long task to finish');
    watch.close();
    // What a client that connects now gets: the output lines the server still holds.
    const fresh = await openStream(`${url}/api/v1/sse?agent_id=agent-1`);
    cleanups.push(() => fresh.close());
    await fresh.waitFor((c) => taskEnded(c, taskId), 10_000, 'the replay');
    fresh.close();
    const held = fresh.events.filter((e) => e.event === 'command_output').map((e) => data(e).line as number);
    const firstHeld = held[0] as number;
    expect(firstHeld).toBeGreaterThan(1);
    expect(held.at(-1)).toBe(2001);

    await openLive(page, `${url}/?agent_id=agent-1`);
    await waitForTaskEnd(page, taskId);
    await expectWholeAndDone(page, taskId);
    const lines = await terminalLines(page, taskId);
    expect(lines.map((line) => line.line)).toEqual(held);
    expect(lines.at(-2)).toEqual({ line: 2000, stream: 'stdout', text: '2000' });
    expect(lines.at(-1)).toEqual({ line: 2001, stream: 'stderr', text: 'a warning at the end' });
    expect(lines[0]).toEqual({ line: firstHeld, stream: 'stdout', text: String(firstHeld) });
    // The marker says how many earlier lines the server no longer holds, at the top of the terminal.
    const trimmed = page.locator(`${card(taskId)} .terminal > .trimmed`);
    expect(await trimmed.isVisible()).toBe(true);
    expect(await trimmed.getAttribute('data-missing')).toBe(String(firstHeld - 1));
    expect(await trimmed.textContent()).toBe(`… ${firstHeld - 1} earlier lines not shown\n`);
    expect(await page.$$eval(`${card(taskId)} .terminal > *`, (els) => els[0]?.className)).toBe('trimmed');
    expect(await page.locator(`${card(taskId)} .terminal .gap`).count()).toBe(0);
    expect(await page.locator('.task').count()).toBe(1);

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 90_000);

  it('shows two tasks of one agent running at once in two cards, each with its own terminal, newest first', async () => {
    const { url, page, pageErrors, appErrors } = await start();
    await openLive(page, `${url}/?agent_id=agent-1`);
    const a = await runTask(page, 'for i in $(seq 1 20); do echo "A $i"; sleep 0.03; done; echo "A done" 1>&2');
    const b = await runTask(page, 'for i in $(seq 1 20); do echo "B $i"; sleep 0.03; done; echo "B done" 1>&2');
    // Both run at once: each card says running before either has finished.
    await page.waitForFunction(
      ([x, y]) => [x, y].every((selector) => (document.querySelector(selector) as HTMLElement | null)?.dataset.status === 'running'),
      [card(a), card(b)] as const,
      WAIT,
    );
    await waitForTaskEnd(page, a);
    await waitForTaskEnd(page, b);
    await expectWholeAndDone(page, a);
    await expectWholeAndDone(page, b);

    for (const [taskId, name] of [
      [a, 'A'],
      [b, 'B'],
    ] as const) {
      const lines = await terminalLines(page, taskId);
      expect(lines.filter((line) => line.stream === 'stdout').map((line) => line.text)).toEqual(
        Array.from({ length: 20 }, (_, i) => `${name} ${i + 1}`),
      );
      expect(lines.filter((line) => line.stream === 'stderr').map((line) => line.text)).toEqual([`${name} done`]);
      expect(lines.map((line) => line.line)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    }
    expect(await page.$$eval('.task', (cards) => cards.map((el) => (el as HTMLElement).dataset.taskId))).toEqual([b, a]);
    const prs = await page.$$eval('.task .pr a', (links) => links.map((link) => link.getAttribute('href')));
    expect(new Set(prs).size).toBe(2);

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('follows several agents on one connection: adding one opens a fresh one with both and shows its tasks, removing hides them', async () => {
    const { url, page, sseRequests, pageErrors, appErrors, hub } = await start();
    const watch = await openStream(`${url}/api/v1/sse?agent_id=agent-1&agent_id=agent-2`);
    cleanups.push(() => watch.close());
    const one = await startTask(url, 'agent-1', 'seq 1 5');
    const two = await startTask(url, 'agent-2', 'echo from agent-2');
    await watch.waitFor((c) => taskEnded(c, one) && taskEnded(c, two), 30_000, 'both tasks to finish');
    watch.close();
    // The page's requests: the test's own stream above was one too.
    const fromPage = () => sseRequests.slice(1);

    await openLive(page, `${url}/?agent_id=agent-1`);
    await waitForTaskEnd(page, one);
    expect(await page.locator(card(two)).count()).toBe(0);
    expect(fromPage()).toHaveLength(1);

    await page.fill('#follow-agent', 'agent-2');
    await page.click('#follow button[type="submit"]');
    await waitForTaskEnd(page, two);
    await expectWholeAndDone(page, two);
    expect(await page.$$eval('#agents li', (chips) => chips.map((chip) => (chip as HTMLElement).dataset.agent))).toEqual([
      'agent-1',
      'agent-2',
    ]);
    expect(new URL(page.url()).searchParams.getAll('agent_id')).toEqual(['agent-1', 'agent-2']);
    // One new request with both agents, fresh: a resume from agent-1's position would not bring agent-2's earlier state.
    expect(fromPage()).toHaveLength(2);
    expect(fromPage()[1]).toMatchObject({ agents: ['agent-1', 'agent-2'], lastEventId: undefined });
    // agent-1's card, replayed again on the new connection, is the same card with every line once.
    expect(await page.locator('.task').count()).toBe(2);
    expect((await terminalLines(page, one)).map((line) => line.text)).toEqual(['1', '2', '3', '4', '5']);
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);

    await page.click('#agents li[data-agent="agent-1"] .remove');
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);
    expect(await page.locator(card(one)).count()).toBe(0);
    expect(await page.locator(card(two)).count()).toBe(1);
    expect(fromPage()).toHaveLength(3);
    expect(fromPage()[2]).toMatchObject({ agents: ['agent-2'], lastEventId: undefined });
    expect(await page.$$eval('#agent option', (options) => options.map((option) => (option as HTMLOptionElement).value))).toEqual([
      'agent-2',
    ]);

    // The new connection is live: a task of agent-2 shows up; the old connections are gone.
    const three = await runTask(page, 'echo again');
    await waitForTaskEnd(page, three);
    expect(await page.$$eval('.task', (cards) => cards.map((el) => (el as HTMLElement).dataset.taskId))).toEqual([three, two]);
    for (let tries = 0; hub().stats().connections !== 1 && tries < 100; tries++) await sleep(50);
    expect(hub().stats().connections).toBe(1);
    expect(fromPage()).toHaveLength(3);

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('says so when the server restarts (resync foreign), shows no proxy HTML meanwhile, then the fresh state', async () => {
    const h = await start();
    const { url, page, sseRequests, pageErrors, appErrors } = h;
    await openLive(page, `${url}/?agent_id=agent-1`);
    const before = await runTask(page, 'echo before the restart');
    await waitForTaskEnd(page, before);
    const lastBefore = (await page.evaluate(() => window.__received ?? [])).filter((e) => e.id).at(-1)?.id;

    // The app goes away; a proxy in front answers 502 with its own HTML page meanwhile.
    await h.stop();
    const proxyPage = '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>';
    await h.serve((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end(proxyPage));
    await page.waitForFunction(() => document.querySelector('#stream-error')?.textContent?.includes('502'), null, WAIT);
    await page.fill('#command', 'echo while it is down');
    await page.click('#run');
    await page.waitForFunction(() => !(document.querySelector('#task-error') as HTMLElement).hidden, null, WAIT);
    const down = await page.evaluate(() => ({
      stream: document.querySelector('#stream-error')?.textContent,
      task: document.querySelector('#task-error')?.textContent,
      connection: document.querySelector('#connection')?.textContent,
    }));
    expect(down).toEqual({
      stream: 'Reconnecting: HTTP 502 Bad Gateway',
      task: 'Could not start the task: the server answered 502 Bad Gateway',
      connection: 'reconnecting',
    });
    expect(await page.locator('body').textContent()).not.toContain('<');

    // A new app, a new hub, the same port: the page resumes with its old id, which the new hub calls foreign.
    await h.restart();
    await page.waitForFunction(() => !(document.querySelector('#notice') as HTMLElement).hidden, null, WAIT);
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);
    const resumed = sseRequests.find((request) => request.lastEventId === lastBefore);
    expect(resumed).toBeDefined();
    const received = await page.evaluate(() => window.__received ?? []);
    expect(received.filter((event) => event.type === 'resync')).toHaveLength(1);
    expect(await page.locator('#notice-text').textContent()).toBe(
      'The server restarted and no longer has the events this page had. Showing what it holds now. ' +
        '1 earlier task is kept below, marked "from before the server restarted".',
    );
    // Never a silent clear: the earlier card is still there, marked.
    expect(await page.locator(card(before)).getAttribute('data-archived')).toBe('true');
    expect(await page.locator(`${card(before)} .archived-badge`).isVisible()).toBe(true);
    expect(await page.locator(`${card(before)} .pr a`).count()).toBe(1);
    // Recovered: the stream's error is gone; the next task starts, and its error goes too.
    expect(await page.locator('#stream-error').isHidden()).toBe(true);
    const after = await runTask(page, 'echo after the restart');
    await waitForTaskEnd(page, after);
    expect(await page.locator('#task-error').isHidden()).toBe(true);
    expect(await page.locator(card(after)).getAttribute('data-archived')).toBeNull();
    expect((await terminalLines(page, after)).map((line) => line.text)).toEqual(['after the restart']);
    expect(await page.$$eval('.task', (cards) => cards.map((el) => (el as HTMLElement).dataset.taskId))).toEqual([after, before]);

    // The earlier tasks can go once read.
    await page.click('#notice-archive');
    expect(await page.locator(card(before)).count()).toBe(0);
    await page.click('#notice-dismiss');
    expect(await page.locator('#notice').isHidden()).toBe(true);

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('says so when the page was away longer than the server keeps events (resync expired), and keeps every task whole', async () => {
    const h = await start();
    const { url, page, pageErrors, appErrors } = h;
    await openLive(page, `${url}/?agent_id=agent-1`);
    const task = await runTask(page, 'echo before the gap');
    await waitForTaskEnd(page, task);
    // Away: the server answers 503 while 1,100 unkeyed lines of another task push the page's
    // position out of the agent's history (1,000 events).
    await h.serve((_req, res) =>
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"unavailable","message":"down"}'),
    );
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent !== 'live', null, WAIT);
    const hub = h.hub();
    for (let line = 1; line <= 1100; line++) {
      await hub.publish('agent-1', 'command_output', {
        task_id: 'task-elsewhere',
        agent_id: 'agent-1',
        sandbox_id: 'sb-elsewhere',
        line,
        output: `line ${line}\n`,
        stream: 'stdout',
        timestamp: new Date().toISOString(),
      });
    }
    await h.serveApp();
    await page.waitForFunction(() => !(document.querySelector('#notice') as HTMLElement).hidden, null, WAIT);
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live', null, WAIT);
    expect(await page.locator('#notice-text').textContent()).toContain('This page was away longer than the server keeps events');
    const received = await page.evaluate(() => window.__received ?? []);
    expect(received.filter((event) => event.type === 'resync')).toHaveLength(1);
    // Never a silent clear: the finished task is whole, from the keyed state (its events left the tail long ago).
    expect(await page.locator(card(task)).count()).toBe(1);
    expect(await page.locator(`${card(task)} .pr a`).count()).toBe(1);
    expect(await page.locator(card(task)).getAttribute('data-archived')).toBeNull();
    expect(h.hub().stats().resyncs).toBe(1);
    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 60_000);

  it('stays live on a quiet stream thanks to named heartbeats, and says stale when they stop arriving', async () => {
    const { url, page, pageErrors, appErrors } = await start({ SSE_HEARTBEAT_MS: '500' });
    await openLive(page, `${url}/?agent_id=agent-3`);
    await recordStates(page);
    // Nothing is published: only heartbeats cross the wire, and they are enough.
    await sleep(3000);
    expect(await page.evaluate(() => window.__states)).toEqual(['live']);
    const heartbeats = (await page.evaluate(() => window.__received ?? [])).filter((event) => event.type === 'heartbeat');
    expect(heartbeats.length).toBeGreaterThanOrEqual(3);
    expect(heartbeats.every((event) => event.id === '')).toBe(true);

    // A path that stops delivering (the tap eats the heartbeats): stale after two intervals, then the client replaces the connection.
    await page.evaluate(() => {
      window.__dropHeartbeats = true;
    });
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'stale', null, WAIT);
    expect(await page.locator('#heard').textContent()).toMatch(/^nothing heard for \d+ s$/);
    await page.evaluate(() => {
      window.__dropHeartbeats = false;
    });
    await page.waitForFunction(
      () => {
        const states = window.__states ?? [];
        const stale = states.indexOf('stale');
        return stale !== -1 && states.indexOf('live', stale) !== -1;
      },
      null,
      WAIT,
    );
    expect(await page.locator('#heard').textContent()).toBe('');

    expect(pageErrors).toEqual([]);
    expect(appErrors).toEqual([]);
  }, 30_000);

  describe('with SSE_JWT_SECRET', () => {
    const key = keyFor(SECRET);

    it('sends the token from ?access_token= as Authorization: Bearer, never in the stream URL, and streams a task', async () => {
      const { url, page, sseRequests, pageErrors, appErrors } = await start({ SSE_JWT_SECRET: SECRET });
      const token = await issueToken({ sub: 'alice', agents: ['agent-1'] }, key);
      await openLive(page, `${url}/?agent_id=agent-1&access_token=${token}`);

      const taskId = await runTask(page, `printf '%s\\n' alpha beta`);
      await waitForTaskEnd(page, taskId);
      expect((await terminalLines(page, taskId)).map((line) => line.text)).toEqual(['alpha', 'beta']);
      expect(await page.locator('#connection').textContent()).toBe('live');
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
        await sleep(1500);
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
