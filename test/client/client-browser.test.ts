// ssecast/client in a real browser (Debian's Chromium driven by
// playwright-core): the built ES module (dist/client/index.js, resolved
// through the package's exports as an app would) loaded by a page from a
// real ssecast server, with an Authorization header EventSource could not
// send. The test publishes, drops the connection, publishes more, then
// restarts the hub (a new epoch), and checks what the browser got: every
// event once and in order, the resync after the restart, and reconnects that
// carried the header and Last-Event-ID.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hasChromium, useChromium, warnIfNoChromium } from '../support/chromium.js';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';

warnIfNoChromium('the ssecast/client browser test');

/** Generous: a slow CI machine must not fail this, only a broken client or server. */
const WAIT = { timeout: 20_000 } as const;
const TOKEN = 'browser-test-token';
const STREAM = 'orders';

type Events = { tick: { n: number } };

interface Received {
  type: string;
  id: string | undefined;
  data: unknown;
}

interface SseRequest {
  authorization: string | undefined;
  lastEventId: string | undefined;
}

/** What the page records, under one name of its own on window. */
interface PageLog {
  client: { status: string; lastEventId: string | undefined; close(): void };
  received: Received[];
  statuses: string[];
  errors: string[];
  headerCalls: number;
}

declare global {
  interface Window {
    __clientTest?: PageLog;
  }
}

// The page a user would write: the client from /client.js, the token in a header read on every attempt.
const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ssecast/client in the browser</title></head>
<body>
<script type="module">
  import { createClient } from '/client.js';
  const log = (window.__clientTest = { received: [], statuses: [], errors: [], headerCalls: 0 });
  const client = (log.client = createClient('/events?stream=${STREAM}', {
    headers: () => {
      log.headerCalls++;
      return { authorization: 'Bearer ${TOKEN}' };
    },
    backoff: { initialMs: 50, maxMs: 500 },
  }));
  for (const type of ['tick', 'resync']) client.on(type, ({ type, id, data }) => log.received.push({ type, id, data }));
  client.onStatus((status, error) => log.statuses.push(error ? status + ':' + error.code : status));
  client.onError((error) => log.errors.push(error.code + ': ' + error.message));
</script>
</body>
</html>
`;

describe.skipIf(!hasChromium)('ssecast/client in Chromium', () => {
  const { browser, cleanups } = useChromium();

  it('streams with an Authorization header, resumes a drop with Last-Event-ID, and resyncs after a restart: every event once, in order', async () => {
    // The file a user's bundler or server would pick: the `import` condition of ssecast/client.
    const clientFile = fileURLToPath(import.meta.resolve('ssecast/client'));
    expect(clientFile.replaceAll('\\', '/')).toMatch(/\/dist\/client\/index\.js$/);
    if (!fs.existsSync(clientFile)) throw new Error(`${clientFile} is missing: run npm run build first`);
    const clientSource = fs.readFileSync(clientFile, 'utf8');

    let hub = new EventManager<Events>({ historySize: 100 });
    const sseOptions = {
      authorize: (req: http.IncomingMessage) =>
        req.headers.authorization === `Bearer ${TOKEN}` ? { id: 'browser', streams: [STREAM] } : null,
      retryMs: 100,
    };
    let sse = createSseHandler(hub, sseOptions);
    const sseRequests: SseRequest[] = [];
    const sseSockets = new Set<Socket>();
    const sockets = new Set<Socket>();
    const server = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/events') {
        const header = req.headers['last-event-id'];
        sseRequests.push({ authorization: req.headers.authorization, lastEventId: Array.isArray(header) ? header[0] : header });
        sseSockets.add(req.socket);
        return sse(req, res);
      }
      if (path === '/client.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' });
        return res.end(clientSource);
      }
      if (path === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        return res.end(PAGE);
      }
      res.writeHead(404).end();
    });
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        sseSockets.delete(socket);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.close();
    });

    const context = await browser().newContext();
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));

    const received = () => page.evaluate(() => window.__clientTest?.received ?? []);
    const ticks = async () => (await received()).filter((event) => event.type === 'tick');
    const waitForTicks = (count: number) =>
      page.waitForFunction((n) => (window.__clientTest?.received ?? []).filter((event) => event.type === 'tick').length >= n, count, WAIT);
    const waitForConnections = async (count: number) => {
      for (let tries = 0; hub.stats().connections !== count; tries++) {
        if (tries > 400) throw new Error(`the hub never had ${count} connection(s); it has ${hub.stats().connections}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    };
    /** Waits for the client to be open; on a timeout, says what the client reported instead. */
    const waitForOpen = async () => {
      try {
        await page.waitForFunction(() => window.__clientTest?.client.status === 'open', null, WAIT);
      } catch (error) {
        const log = await page.evaluate(() => ({ statuses: window.__clientTest?.statuses, errors: window.__clientTest?.errors }));
        const errors = log.errors ?? [];
        throw new Error(
          `the client did not open: statuses ${JSON.stringify(log.statuses)}; ${errors.length} errors, the last ${JSON.stringify(errors.slice(-3))}`,
          { cause: error },
        );
      }
    };
    const publish = async (from: number, to: number) => {
      for (let n = from; n <= to; n++) await hub.publish(STREAM, 'tick', { n });
    };

    await page.goto(url);
    await waitForOpen();
    await waitForConnections(1);

    // 1. Live events.
    await publish(1, 5);
    await waitForTicks(5);
    const beforeDrop = await ticks();
    const lastBeforeDrop = beforeDrop.at(-1)?.id;

    // 2. A dropped connection; what is published meanwhile comes with the resume.
    for (const socket of sseSockets) socket.destroy();
    await publish(6, 10);
    await waitForTicks(10);
    await waitForOpen();
    const lastBeforeRestart = (await ticks()).at(-1)?.id;

    // 3. The server restarts: a new hub, so a new epoch, and the old hub's streams end.
    const oldHub = hub;
    hub = new EventManager<Events>({ historySize: 100 });
    sse = createSseHandler(hub, sseOptions);
    await oldHub.close();
    await page.waitForFunction(() => (window.__clientTest?.received ?? []).some((event) => event.type === 'resync'), null, WAIT);
    await waitForConnections(1);
    await publish(11, 15);
    await waitForTicks(15);

    const events = await received();
    const tickEvents = events.filter((event) => event.type === 'tick');
    // Every event once, in order.
    expect(tickEvents.map((event) => (event.data as { n: number }).n)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    const ids = tickEvents.map((event) => String(event.id));
    expect(new Set(ids).size).toBe(15);
    const epochs = ids.map((id) => id.split('.')[0]);
    const seqs = ids.map((id) => Number(id.split('.')[1]));
    expect(new Set(epochs.slice(0, 10)).size).toBe(1);
    expect(new Set(epochs.slice(10)).size).toBe(1);
    expect(epochs[10]).not.toBe(epochs[0]);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5]);

    // One resync (the id is from another epoch), between the old epoch's last event and the new one's first, naming that id.
    const resyncs = events.filter((event) => event.type === 'resync');
    expect(resyncs).toHaveLength(1);
    // Its id is the new hub's position when the replay was read: the client's cursor moves there.
    expect(resyncs[0]).toEqual({
      type: 'resync',
      id: expect.stringMatching(/^[0-9a-z]+\.\d+$/),
      data: { reason: 'foreign', lastEventId: lastBeforeRestart },
    });
    expect(String(resyncs[0]?.id).split('.')[0]).toBe(epochs[10]);
    expect(events.map((event) => (event.type === 'resync' ? 'resync' : (event.data as { n: number }).n)).slice(9, 12)).toEqual([
      10,
      'resync',
      11,
    ]);

    // What the server saw: the header on every request, and each reconnect resuming after the last event received.
    expect(sseRequests.length).toBeGreaterThanOrEqual(3);
    for (const request of sseRequests) expect(request.authorization).toBe(`Bearer ${TOKEN}`);
    expect(sseRequests[0]?.lastEventId).toBeUndefined();
    expect(sseRequests.map((request) => request.lastEventId)).toContain(lastBeforeDrop);
    expect(sseRequests.at(-1)?.lastEventId).toBe(lastBeforeRestart);
    for (const request of sseRequests.slice(1)) expect(request.lastEventId).toMatch(/^[0-9a-z]+\.[1-9]\d*$/);

    const state = await page.evaluate(() => ({
      status: window.__clientTest?.client.status,
      lastEventId: window.__clientTest?.client.lastEventId,
      statuses: window.__clientTest?.statuses ?? [],
      errors: window.__clientTest?.errors ?? [],
      headerCalls: window.__clientTest?.headerCalls ?? 0,
    }));
    expect(state.status).toBe('open');
    expect(state.lastEventId).toBe(ids.at(-1));
    expect(state.statuses[0]).toBe('open');
    expect(state.statuses.filter((status) => status === 'reconnecting').length).toBeGreaterThanOrEqual(2);
    expect(state.statuses.at(-1)).toBe('open');
    // The headers function runs before every attempt, so a reconnect can carry a refreshed token.
    expect(state.headerCalls).toBe(sseRequests.length);
    // Only failures the client retries by itself: the drop (and a 503 if it came back while the old hub closed).
    for (const error of state.errors) expect(error).toMatch(/^ERR_(NETWORK|HTTP_STATUS): /);

    // close() in the page ends the request: the server lets the subscription go.
    await page.evaluate(() => window.__clientTest?.client.close());
    await waitForConnections(0);
    expect(await page.evaluate(() => window.__clientTest?.client.status)).toBe('closed');

    console.info(
      `[client-browser] ${sseRequests.length} SSE requests; statuses ${state.statuses.join(' → ')}; retried errors: ${state.errors.join(' | ') || 'none'}`,
    );
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
