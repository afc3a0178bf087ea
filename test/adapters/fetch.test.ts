import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { serve } from '@hono/node-server';
import { EventSource } from 'eventsource';
import { createParser } from 'eventsource-parser';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createFetchHandler } from '../../src/adapters/fetch.js';
import { cleanupAfterEach, sleep, waitUntil, type ParsedEvent } from '../support/helpers.js';

/**
 * The fetch adapter called as runtimes call it: directly with a `Request`,
 * reading the `Response` body with a reader (no HTTP server in between),
 * and inside a Hono app served by @hono/node-server to a real EventSource.
 */

type Events = { tick: { n: number }; note: string };

const cleanups = cleanupAfterEach();

function newHub(): EventManager<Events> {
  const hub = new EventManager<Events>();
  cleanups.push(() => hub.close());
  return hub;
}

interface BodyReader {
  events: ParsedEvent[];
  retries: number[];
  raw: string;
  done: boolean;
  error: unknown;
  /** Resolves when the body ends or errors. */
  finished: Promise<void>;
  cancel(): Promise<void>;
}

/** Reads a body as it arrives (gunzipping first if asked) and parses it as an EventSource would. */
function readBody(body: ReadableStream<Uint8Array>, { gunzip = false } = {}): BodyReader {
  const source = gunzip
    ? body.pipeThrough(new DecompressionStream('gzip') as unknown as ReadableWritablePair<Uint8Array, Uint8Array>)
    : body;
  const reader = source.getReader();
  const state: BodyReader = {
    events: [],
    retries: [],
    raw: '',
    done: false,
    error: undefined,
    finished: Promise.resolve(),
    cancel: () => reader.cancel(),
  };
  const parser = createParser({
    onEvent: (message) => state.events.push({ event: message.event, id: message.id, data: message.data }),
    onRetry: (retry) => state.retries.push(retry),
  });
  const decoder = new TextDecoder();
  state.finished = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        state.raw += text;
        parser.feed(text);
      }
      state.done = true;
    } catch (error) {
      state.error = error;
    }
  })();
  cleanups.push(() => void reader.cancel().catch(() => {}));
  return state;
}

function ns(events: ParsedEvent[]): number[] {
  return events.map((e) => Number(e.data.split(':')[0]));
}

function range(to: number): number[] {
  return Array.from({ length: to }, (_, n) => n);
}

describe('fetch adapter called directly', () => {
  it('answers a Request with an event-stream Response whose body carries retry, then each event', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub);
    const response = await handler(new Request('http://x/events?stream=a'));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(response.headers.get('x-accel-buffering')).toBe('no');
    expect(response.headers.get('content-encoding')).toBeNull();
    expect(response.headers.get('vary')).toBeNull();
    // Connection is the runtime's business, and forbidden in HTTP/2.
    expect(response.headers.get('connection')).toBeNull();

    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    cleanups.push(() => void reader.cancel().catch(() => {}));
    const decoder = new TextDecoder();
    const first = await reader.read();
    expect(decoder.decode(first.value)).toBe('retry: 3000\n\n');
    expect(hub.stats().connections).toBe(1);

    const event = await hub.publish('a', 'note', 'two\nlines');
    const second = await reader.read();
    expect(decoder.decode(second.value)).toBe(`id: ${event.id}\nevent: note\ndata: two\ndata: lines\n\n`);
  });

  it('cuts off a body nobody reads at maxUnsentBytes, while a body that is read gets every event in order', async () => {
    const hub = newHub();
    const maxUnsentBytes = 256 * 1024;
    const handler = createFetchHandler(hub, { maxUnsentBytes });
    const stalled = await handler(new Request('http://x/events?stream=a'));
    const stalledReader = (stalled.body as ReadableStream<Uint8Array>).getReader();
    cleanups.push(() => void stalledReader.cancel().catch(() => {}));
    const reading = readBody((await handler(new Request('http://x/events?stream=a'))).body as ReadableStream<Uint8Array>);
    expect(hub.stats().connections).toBe(2);

    const chunk = 'x'.repeat(4096);
    const total = 200;
    let frameBytes = 0;
    let cutAfter: number | undefined;
    for (let n = 0; n < total; n++) {
      const event = await hub.publish('a', 'note', `${n}:${chunk}`);
      frameBytes = `id: ${event.id}\nevent: note\ndata: ${n}:${chunk}\n\n`.length;
      if (cutAfter === undefined && hub.stats().dropped === 1) cutAfter = n + 1;
      // Let the reading body drain now and then; the stalled one never does.
      if (n % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(hub.stats()).toMatchObject({ dropped: 1, connections: 1 });
    // Bounded: what the stalled body held (its 64 KiB queue) plus what waited for room, never all 800 KB.
    expect(cutAfter).toBeDefined();
    expect((cutAfter as number) * frameBytes).toBeLessThanOrEqual(maxUnsentBytes + 64 * 1024 + 2 * frameBytes);
    // The stalled body is errored: its reader learns it was cut off rather than waiting forever.
    await expect(stalledReader.read()).rejects.toThrow(/slow consumer/);

    await waitUntil(() => reading.events.length === total, 5000, `all ${total} events on the read body`);
    expect(ns(reading.events)).toEqual(range(total));
    expect(reading.error).toBeUndefined();
  });

  it('holds events that wait for room and writes them, in order, when the reader pulls', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub, { maxUnsentBytes: 1024 * 1024 });
    const response = await handler(new Request('http://x/events?stream=a'));
    const chunk = 'x'.repeat(4096);
    const total = 150; // about 600 KB: far past the body's 64 KiB queue, within the 1 MiB bound
    for (let n = 0; n < total; n++) await hub.publish('a', 'note', `${n}:${chunk}`);
    await new Promise((resolve) => setImmediate(resolve));
    expect(hub.stats()).toMatchObject({ dropped: 0, connections: 1 });

    const body = readBody(response.body as ReadableStream<Uint8Array>);
    await waitUntil(() => body.events.length === total, 5000, `all ${total} events`);
    expect(ns(body.events)).toEqual(range(total));
    await hub.publish('a', 'note', `${total}:live`);
    await waitUntil(() => body.events.length === total + 1, 5000, 'a live event after the backlog');
    expect(body.events.at(-1)?.data).toBe(`${total}:live`);
  });

  it('unsubscribes when the request signal aborts', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub);
    const controller = new AbortController();
    const response = await handler(new Request('http://x/events?stream=a', { signal: controller.signal }));
    const body = readBody(response.body as ReadableStream<Uint8Array>);
    await waitUntil(() => body.retries.length === 1, 5000, 'retry');
    expect(hub.stats().connections).toBe(1);
    controller.abort();
    await waitUntil(() => hub.stats().connections === 0, 5000, 'the connection to close');
    await hub.publish('a', 'note', 'after abort');
    await sleep(20);
    expect(body.events).toEqual([]);
  });

  it.each([
    ['plain', {}, {}],
    ['gzip', { compress: true }, { 'accept-encoding': 'gzip' }],
  ])('ends the %s body when the request signal aborts, so its reader sees done', async (_label, options, headers) => {
    const hub = newHub();
    const handler = createFetchHandler(hub, options);
    const controller = new AbortController();
    const response = await handler(new Request('http://x/events?stream=a', { signal: controller.signal, headers }));
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    cleanups.push(() => void reader.cancel().catch(() => {}));
    let received = 0;
    let settled = false;
    void (async () => {
      try {
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += chunk.value.byteLength;
      } catch {
        // Errored counts as ended too.
      }
      settled = true;
    })();
    await waitUntil(() => received > 0, 5000, 'the first bytes');
    expect(hub.stats().connections).toBe(1);
    controller.abort();
    expect(hub.stats().connections).toBe(0);
    // Closing is synchronous in the abort handler; a second is plenty for the read to settle.
    await waitUntil(() => settled, 1000, 'the pending read to settle after abort');
  });

  it('unsubscribes when the body is cancelled, before or after reading', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub);
    const unread = await handler(new Request('http://x/events?stream=a'));
    const read = await handler(new Request('http://x/events?stream=b'));
    expect(hub.stats().connections).toBe(2);

    await (unread.body as ReadableStream<Uint8Array>).cancel();
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the unread body to unsubscribe');

    const reader = (read.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await reader.cancel();
    expect(await reader.read()).toEqual({ done: true, value: undefined });
    await waitUntil(() => hub.stats().connections === 0, 5000, 'the read body to unsubscribe');
    // Nothing is written into a cancelled body.
    await hub.publish('b', 'note', 'nobody listens');
    expect(hub.stats().delivered).toBe(0);
  });

  it('answers rejections with JSON Responses: 400 for since=yesterday and for an empty types, 405 for POST', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub);

    const since = await handler(new Request('http://x/events?stream=a&since=yesterday'));
    expect(since.status).toBe(400);
    expect(since.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await since.json()).toMatchObject({ error: 'bad_request', message: expect.stringContaining('since must be an ISO 8601 time') });

    const types = await handler(new Request('http://x/events?stream=a&types='));
    expect(types.status).toBe(400);
    expect(await types.json()).toMatchObject({ error: 'bad_request', message: expect.stringContaining('types') });

    const post = await handler(new Request('http://x/events?stream=a', { method: 'POST', body: 'x' }));
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
    expect(await post.json()).toMatchObject({ error: 'method_not_allowed' });

    expect(hub.stats().connections).toBe(0);
  });

  it('gzips with compress: true for a client that accepts gzip, and each event decodes before the next is published', async () => {
    const hub = newHub();
    const handler = createFetchHandler(hub, { compress: true });

    const plain = await handler(new Request('http://x/events?stream=a'));
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(plain.headers.get('vary')).toBe('accept-encoding');
    await (plain.body as ReadableStream<Uint8Array>).cancel();

    const response = await handler(new Request('http://x/events?stream=a', { headers: { 'accept-encoding': 'gzip, deflate, br' } }));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-encoding')).toBe('gzip');
    expect(response.headers.get('vary')).toBe('accept-encoding');
    const body = readBody(response.body as ReadableStream<Uint8Array>, { gunzip: true });
    await waitUntil(() => body.retries.length === 1, 5000, 'retry');
    expect(body.raw).toBe('retry: 3000\n\n');
    for (let n = 0; n < 5; n++) {
      const event = await hub.publish('a', 'tick', { n });
      await waitUntil(() => body.events.length === n + 1, 5000, `event ${n} before event ${n + 1} is published`);
      expect(body.events[n]).toEqual({ event: 'tick', id: event.id, data: `{"n":${n}}` });
    }
    expect(body.error).toBeUndefined();
  });
});

describe('fetch adapter in a Hono app behind @hono/node-server', () => {
  async function serveHono(options: Parameters<typeof createFetchHandler>[1] = {}): Promise<{ hub: EventManager<Events>; url: string }> {
    const hub = newHub();
    const handler = createFetchHandler(hub, options);
    const app = new Hono();
    app.get('/api/v1/sse', (c) => handler(c.req.raw));
    app.get('/health', (c) => c.json({ ok: true }));
    const server = await new Promise<http.Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as http.Server)) as http.Server;
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    return { hub, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  it('delivers typed events to a real EventSource, and closing it unsubscribes', async () => {
    const { hub, url } = await serveHono();
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ ok: true });

    const source = new EventSource(`${url}/api/v1/sse?stream=a&stream=b`);
    cleanups.push(() => source.close());
    const got: string[] = [];
    source.addEventListener('tick', (message) => got.push(`tick ${message.data} ${message.lastEventId}`));
    source.addEventListener('note', (message) => got.push(`note ${message.data} ${message.lastEventId}`));
    await new Promise((resolve, reject) => {
      source.addEventListener('open', resolve);
      source.addEventListener('error', reject);
    });
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the EventSource to subscribe');
    const first = await hub.publish('a', 'tick', { n: 1 });
    const second = await hub.publish('b', 'note', 'hello');
    await hub.publish('c', 'note', 'not followed');
    await waitUntil(() => got.length === 2, 5000, 'two typed events');
    expect(got).toEqual([`tick {"n":1} ${first.id}`, `note hello ${second.id}`]);

    source.close();
    await waitUntil(() => hub.stats().connections === 0, 5000, 'the client abort to reach the handler');
  });

  it('sends compress: true over the wire as gzip that decodes event by event', async () => {
    const { hub, url } = await serveHono({ compress: true });
    const decoded = { text: '' };
    const gunzip = zlib.createGunzip();
    gunzip.on('data', (chunk: Buffer) => (decoded.text += chunk.toString('utf8')));
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get(`${url}/api/v1/sse?stream=a`, { headers: { 'accept-encoding': 'gzip' }, agent: false }, resolve);
      req.on('error', reject);
      cleanups.push(() => void req.destroy());
    });
    response.on('data', (chunk: Buffer) => gunzip.write(chunk));
    cleanups.push(() => void gunzip.destroy());
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-encoding']).toBe('gzip');
    await waitUntil(() => decoded.text === 'retry: 3000\n\n', 5000, 'retry');
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the stream to subscribe');
    let expected = decoded.text;
    for (let n = 0; n < 5; n++) {
      const event = await hub.publish('a', 'tick', { n });
      expected += `id: ${event.id}\nevent: tick\ndata: {"n":${n}}\n\n`;
      await waitUntil(() => decoded.text === expected, 5000, `event ${n} before event ${n + 1} is published`);
    }
  });
});
