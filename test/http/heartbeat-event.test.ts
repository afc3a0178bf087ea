import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventManager, type EventManagerOptions } from '../../src/index.js';
import { createClient, type SseClientError } from '../../src/client/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { ADAPTERS, type NeutralOptions } from '../support/adapters.js';
import { hasChromium, servePage, useChromium, warnIfNoChromium } from '../support/chromium.js';
import { cleanupAfterEach, openStream, sleep, waitUntil } from '../support/helpers.js';

/**
 * heartbeatEvent: heartbeats a page can see. Set (on the hub, or on the
 * adapter, which wins), a heartbeat is `event: <name>\ndata:\n\n`: an event
 * EventSource dispatches with data "", with no `id:`, so the browser's
 * lastEventId stays on the last real event. Unset, it is the `:heartbeat`
 * comment. Asserted on the bytes every adapter writes, in Chromium's own
 * EventSource, and in ssecast/client.
 */

type Events = { tick: { n: number } };

const cleanups = cleanupAfterEach();
const PING = 'event: ping\ndata:\n\n';

warnIfNoChromium('the EventSource named-heartbeat test');

/** The body is `retry:` followed by `frame` once or more, and nothing else. */
function onlyAfterRetry(raw: string, frame: string): boolean {
  const rest = raw.replace(/^retry: 3000\n\n/, '');
  return rest !== raw && rest.length > 0 && rest.split(frame).every((part) => part === '');
}

describe.each(ADAPTERS)('heartbeats on $name', (adapter) => {
  async function setup(options: NeutralOptions, hubOptions: EventManagerOptions = {}) {
    const hub = new EventManager<Events>(hubOptions);
    const server = await adapter.mount(hub, { heartbeatMs: 40, ...options });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const stream = await openStream(`${server.url}/events?stream=a`);
    cleanups.push(() => stream.close());
    return { hub, stream };
  }

  it('writes event: <name> with an empty data line and no id, and no comment, when heartbeatEvent is set', async () => {
    const { hub, stream } = await setup({ heartbeatEvent: 'ping' });
    await stream.waitFor((c) => c.raw.includes(PING), 5000, 'a named heartbeat');
    expect(onlyAfterRetry(stream.raw, PING)).toBe(true);
    // After a real event, still no id: the client's Last-Event-ID stays on the event.
    const event = await hub.publish('a', 'tick', { n: 1 });
    const frame = `id: ${event.id}\nevent: tick\ndata: {"n":1}\n\n`;
    await stream.waitFor((c) => c.raw.includes(`${frame}${PING}`), 5000, 'a named heartbeat after the event');
    expect(stream.raw.startsWith(`retry: 3000\n\n${PING}`)).toBe(true);
    expect(stream.raw).not.toContain(':heartbeat');
    expect(stream.raw.split('\n\n').filter((frame) => frame.includes('id:'))).toEqual([frame.slice(0, -2)]);
    expect(stream.comments).toEqual([]);
    expect(stream.events.find((e) => e.event === 'ping')).toEqual({ event: 'ping', id: undefined, data: '' });
  });

  it('writes the :heartbeat comment when neither the adapter nor the hub names an event', async () => {
    const { stream } = await setup({});
    await stream.waitFor((c) => c.raw.includes(':heartbeat\n\n'), 5000, 'a heartbeat comment');
    expect(onlyAfterRetry(stream.raw, ':heartbeat\n\n')).toBe(true);
    expect(stream.events).toEqual([]);
  });

  it('takes the hub’s heartbeatEvent by default', async () => {
    const { stream } = await setup({}, { heartbeatEvent: 'hub-beat' });
    await stream.waitFor((c) => c.raw.includes('event: hub-beat\ndata:\n\n'), 5000, 'the hub’s named heartbeat');
    expect(stream.raw).not.toContain(':heartbeat');
  });

  it('lets the adapter’s heartbeatEvent override the hub’s', async () => {
    const { stream } = await setup({ heartbeatEvent: 'ping' }, { heartbeatEvent: 'hub-beat' });
    await stream.waitFor((c) => c.raw.includes(PING), 5000, 'the adapter’s named heartbeat');
    expect(stream.raw).not.toContain('hub-beat');
    expect(stream.raw).not.toContain(':heartbeat');
  });

  it('goes back to the comment with heartbeatEvent: false, whatever the hub names', async () => {
    const { stream } = await setup({ heartbeatEvent: false }, { heartbeatEvent: 'hub-beat' });
    await stream.waitFor((c) => c.raw.includes(':heartbeat\n\n'), 5000, 'a heartbeat comment');
    expect(stream.raw).not.toContain('hub-beat');
  });
});

describe('heartbeatEvent validation', () => {
  it('refuses, at construction, a name that is empty, message, error, open, resync, ssecast-position, over 256 characters, or has CR, LF or NUL', () => {
    const hub = new EventManager<Events>();
    cleanups.push(() => hub.close());
    const message =
      'heartbeatEvent must be an event type of 1 to 256 characters without CR, LF or NUL, other than "message", "error", "open", "resync", "ssecast-position"';
    // error and open would fire a page's onerror and onopen on every heartbeat (a review finding).
    for (const bad of [
      '',
      'message',
      'error',
      'open',
      'resync',
      'ssecast-position',
      'a\nb',
      'a\rb',
      'a\0b',
      'x'.repeat(257),
      42,
      true,
      null,
    ]) {
      expect(() => createSseHandler(hub, { heartbeatEvent: bad as string }), JSON.stringify(bad)).toThrow(TypeError);
      expect(() => createSseHandler(hub, { heartbeatEvent: bad as string }), JSON.stringify(bad)).toThrow(message);
    }
    for (const good of ['ping', 'heartbeat', 'x'.repeat(256), false, undefined] as const) {
      expect(() => createSseHandler(hub, { heartbeatEvent: good }), String(good)).not.toThrow();
    }
  });

  it('checks the client’s heartbeatEvent too', () => {
    for (const bad of ['', 'message', 'error', 'open', 'resync', 'ssecast-position', 'a\nb', 42]) {
      expect(() => createClient('http://127.0.0.1:9/', { heartbeatEvent: bad as string }), String(bad)).toThrow(TypeError);
    }
  });
});

describe('ssecast/client and named heartbeats', () => {
  async function serve(handlerOptions: Parameters<typeof createSseHandler>[1]) {
    const hub = new EventManager<Events>();
    let requests = 0;
    const sse = createSseHandler(hub, { heartbeatMs: 30, ...handlerOptions });
    const server = http.createServer((req, res) => {
      requests++;
      sse(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () => new Promise((resolve) => server.close(resolve)),
      () => server.closeAllConnections(),
      () => hub.close(),
    );
    return { hub, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events?stream=a`, requests: () => requests };
  }

  it('with heartbeatEvent, takes them as liveness only: no listener or iterator sees them, lastEventId stays, the watchdog is fed', async () => {
    const { hub, url, requests } = await serve({ heartbeatEvent: 'ping' });
    const errors: SseClientError[] = [];
    const client = createClient<Events & { ping: string }>(url, { heartbeatEvent: 'ping', heartbeatTimeoutMs: 1000, parse: 'json' });
    cleanups.push(() => client.close());
    client.onError((error) => errors.push(error));
    const pings: unknown[] = [];
    client.on('ping', (event) => pings.push(event));
    const iterated: string[] = [];
    void (async () => {
      for await (const event of client) iterated.push(event.type);
    })();
    await waitUntil(() => hub.stats().connections === 1);
    const event = await hub.publish('a', 'tick', { n: 1 });
    await waitUntil(() => iterated.length === 1);
    // Many heartbeat intervals, and twice the watchdog's 1,000 ms: only the named heartbeats come. (The
    // watchdog has room: a busy machine stalling this process for 200 ms once fired a 200 ms one in CI.)
    await sleep(2200);
    expect(client.lastEventId).toBe(event.id);
    expect(pings).toEqual([]);
    expect(iterated).toEqual(['tick']);
    expect(errors).toEqual([]);
    expect(requests()).toBe(1);
    expect(client.status).toBe('open');
  });

  it('without it, hands them to listeners of that type with data "" and no id, and lastEventId stays', async () => {
    const { hub, url } = await serve({ heartbeatEvent: 'ping' });
    const client = createClient<Events & { ping: string }>(url);
    cleanups.push(() => client.close());
    const pings: unknown[] = [];
    client.on('ping', (event) => pings.push(event));
    await waitUntil(() => hub.stats().connections === 1);
    const event = await hub.publish('a', 'tick', { n: 1 });
    const before = pings.length;
    await waitUntil(() => pings.length >= before + 2, 5000, 'two heartbeats after the event');
    expect(pings[0]).toEqual({ type: 'ping', data: '', id: undefined });
    expect(client.lastEventId).toBe(event.id);
  });

  it('is kept alive by the comment as before', async () => {
    const { hub, url, requests } = await serve({});
    const errors: SseClientError[] = [];
    const client = createClient<Events>(url, { heartbeatTimeoutMs: 200 });
    cleanups.push(() => client.close());
    client.onError((error) => errors.push(error));
    await waitUntil(() => hub.stats().connections === 1);
    await sleep(600);
    expect(errors).toEqual([]);
    expect(requests()).toBe(1);
  });
});

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>heartbeats</title></head><body>
<script>
  window.__got = [];
  const source = new EventSource('/events?stream=a');
  for (const type of ['tick', 'ping']) source.addEventListener(type, (e) => window.__got.push({ type, lastEventId: e.lastEventId, data: e.data }));
</script>
</body></html>`;

describe.skipIf(!hasChromium)('named heartbeats in Chromium’s EventSource', () => {
  const { browser, cleanups: browserCleanups } = useChromium();

  it('dispatches them with data "", leaves lastEventId on the last real event, and resumes from that event', async () => {
    const hub = new EventManager<Events>();
    // The age ends the stream cleanly after some heartbeats: the browser reconnects by itself.
    const sse = createSseHandler(hub, { heartbeatMs: 50, heartbeatEvent: 'ping', retryMs: 50, maxConnectionAgeMs: 700 });
    const site = await servePage(PAGE, () => sse);
    const { lastEventIds } = site;
    browserCleanups.push(async () => {
      await site.close();
      await hub.close();
    });
    const page = await (await browser().newContext()).newPage();
    await page.goto(site.url);
    type Got = { type: string; lastEventId: string; data: string };
    const got = () => page.evaluate(() => (window as unknown as { __got: Got[] }).__got);

    await waitUntil(() => hub.stats().connections === 1, 10_000, 'the page to connect');
    const tick = await hub.publish('a', 'tick', { n: 1 });
    await page.waitForFunction(
      () => {
        const events = (window as unknown as { __got: Got[] }).__got;
        const at = events.findIndex((e) => e.type === 'tick');
        return at >= 0 && events.slice(at + 1).filter((e) => e.type === 'ping').length >= 3;
      },
      undefined,
      { timeout: 10_000 },
    );
    const events = await got();
    const at = events.findIndex((e) => e.type === 'tick');
    expect(events[at]).toEqual({ type: 'tick', lastEventId: tick.id, data: '{"n":1}' });
    for (const ping of events.slice(0, at)) expect(ping).toEqual({ type: 'ping', lastEventId: '', data: '' });
    for (const ping of events.slice(at + 1)) expect(ping).toEqual({ type: 'ping', lastEventId: tick.id, data: '' });

    // The stream reaches its age and ends; the browser comes back with the tick's id, not a heartbeat's.
    await waitUntil(() => lastEventIds.length >= 2, 10_000, 'the browser to reconnect');
    expect(lastEventIds.slice(0, 2)).toEqual([undefined, tick.id]);
    const next = await hub.publish('a', 'tick', { n: 2 });
    await page.waitForFunction(
      () => (window as unknown as { __got: Got[] }).__got.filter((e) => e.type === 'tick').length === 2,
      undefined,
      {
        timeout: 10_000,
      },
    );
    expect((await got()).filter((e) => e.type === 'tick').map((e) => e.lastEventId)).toEqual([tick.id, next.id]);
  });
});
