import http from 'node:http';
import zlib from 'node:zlib';
import compression from 'compression';
import express5, { type ErrorRequestHandler } from 'express';
import express4 from 'express4';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { sse } from '../../src/adapters/express.js';
import { cleanupAfterEach, listen, openStream, payloads, waitUntil, type TestServer } from '../support/helpers.js';

/**
 * The Express adapter as Express users mount it: behind app-wide
 * `compression()`, with its own `compress`, on a Router under a prefix, and
 * next to an error-handling middleware. Responses are read with node:http,
 * which never decompresses, so what the client gets is what went on the wire.
 */

type Events = { tick: { n: number }; note: string };

const cleanups = cleanupAfterEach();

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every body chunk, as received (not decompressed). */
  chunks: Buffer[];
  bytes(): Buffer;
  /** The response itself, for listeners of chunks still to come. */
  message: http.IncomingMessage;
  close(): void;
}

/** A GET over node:http: no transparent decompression hides what the server sent. */
function rawGet(url: string, headers: Record<string, string>): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', () => {});
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        chunks,
        bytes: () => Buffer.concat(chunks),
        message: res,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

/** Feeds received bytes through a streaming gunzip; `text` is everything decoded so far. */
function gunzipInto(response: RawResponse): { text(): string; errors: unknown[] } {
  const gunzip = zlib.createGunzip();
  let text = '';
  const errors: unknown[] = [];
  gunzip.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  gunzip.on('error', (error) => errors.push(error));
  // What arrived so far, then each chunk as it lands.
  for (const chunk of response.chunks) gunzip.write(chunk);
  response.message.on('data', (chunk: Buffer) => gunzip.write(chunk));
  cleanups.push(() => void gunzip.destroy());
  return { text: () => text, errors };
}

const EXPRESS = [
  { name: 'Express 5', express: express5 },
  { name: 'Express 4', express: express4 as unknown as typeof express5 },
];

describe.each(EXPRESS)('$name', ({ express }) => {
  async function serve(app: ReturnType<typeof express5>): Promise<TestServer> {
    const server = await listen(http.createServer(app));
    cleanups.push(() => server.close());
    return server;
  }

  function newHub(): EventManager<Events> {
    const hub = new EventManager<Events>();
    cleanups.push(() => hub.close());
    return hub;
  }

  /** A JSON body well over compression's 1 KiB threshold. */
  const bigJson = { items: Array.from({ length: 200 }, (_, n) => ({ n, label: `item number ${n}` })) };

  describe.each([
    { label: 'compression()', middleware: () => compression() },
    { label: 'compression({ threshold: 0 })', middleware: () => compression({ threshold: 0 }) },
  ])('under app-wide $label', ({ middleware }) => {
    it('passes the stream through uncompressed and delivers each event before the next is published', async () => {
      const hub = newHub();
      const app = express();
      app.use(middleware());
      app.get('/json', (_req, res) => {
        res.json(bigJson);
      });
      // The classic mistake, for contrast: an event stream without no-transform.
      app.get('/naive-stream', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('retry: 1000\n\n');
      });
      app.get('/events', sse(hub));
      const server = await serve(app);

      // Sanity: this app does compress what it may compress, for a client that asks for gzip.
      const json = await rawGet(`${server.url}/json`, { 'accept-encoding': 'gzip' });
      cleanups.push(() => json.close());
      expect(json.headers['content-encoding']).toBe('gzip');
      const naive = await rawGet(`${server.url}/naive-stream`, { 'accept-encoding': 'gzip' });
      cleanups.push(() => naive.close());
      expect(naive.headers['content-encoding']).toBe('gzip');

      const stream = await rawGet(`${server.url}/events?stream=a`, { 'accept-encoding': 'gzip', accept: 'text/event-stream' });
      cleanups.push(() => stream.close());
      expect(stream.status).toBe(200);
      expect(stream.headers['content-encoding']).toBeUndefined();
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers['cache-control']).toBe('no-cache, no-transform');
      await waitUntil(() => hub.stats().connections === 1, 5000, 'the stream to subscribe');

      for (let n = 0; n < 5; n++) {
        const event = await hub.publish('a', 'tick', { n });
        await waitUntil(
          () => stream.bytes().toString('utf8').includes(`id: ${event.id}\nevent: tick\ndata: {"n":${n}}\n\n`),
          5000,
          `event ${n} to arrive before event ${n + 1} is published`,
        );
      }
      expect(stream.bytes().toString('utf8').startsWith('retry: 3000\n\n')).toBe(true);
    });

    it('with compress: true gzips the stream exactly once and each event decodes as soon as it arrives', async () => {
      const hub = newHub();
      const app = express();
      app.use(middleware());
      app.get('/events', sse(hub, { compress: true }));
      const server = await serve(app);

      const stream = await rawGet(`${server.url}/events?stream=a`, { 'accept-encoding': 'gzip' });
      cleanups.push(() => stream.close());
      expect(stream.status).toBe(200);
      expect(stream.headers['content-encoding']).toBe('gzip');
      expect(stream.headers.vary).toMatch(/accept-encoding/i);
      const decoded = gunzipInto(stream);
      await waitUntil(() => decoded.text().length > 0, 5000, 'the retry line');
      // Decompressed once, the bytes are the plain event stream: not gzip inside gzip.
      expect(decoded.text()).toBe('retry: 3000\n\n');
      await waitUntil(() => hub.stats().connections === 1, 5000, 'the stream to subscribe');

      let expected = 'retry: 3000\n\n';
      for (let n = 0; n < 5; n++) {
        const event = await hub.publish('a', 'note', `message ${n} `.repeat(20));
        expected += `id: ${event.id}\nevent: note\ndata: ${`message ${n} `.repeat(20)}\n\n`;
        await waitUntil(() => decoded.text() === expected, 5000, `event ${n} to decode before event ${n + 1} is published`);
      }
      expect(decoded.errors).toEqual([]);
      // The repeated payloads did compress.
      expect(stream.bytes().length).toBeLessThan(expected.length);
    });
  });

  it('reads stream and types from the query when mounted on a Router under a prefix', async () => {
    const hub = newHub();
    const app = express();
    const router = express.Router();
    router.get('/sse', sse(hub));
    app.use('/api', router);
    const server = await serve(app);

    const client = await openStream(`${server.url}/api/sse?stream=a&stream=b&types=tick`);
    cleanups.push(() => client.close());
    expect(client.status).toBe(200);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the stream to subscribe');
    expect(hub.stats().streams).toBe(2);
    await hub.publish('a', 'note', 'filtered out by types');
    await hub.publish('a', 'tick', { n: 1 });
    await hub.publish('c', 'tick', { n: 2 });
    await hub.publish('b', 'tick', { n: 3 });
    await client.waitFor((c) => c.events.length === 2, 5000, 'the ticks of a and b');
    await hub.publish('a', 'tick', { n: 4 });
    await client.waitFor((c) => c.events.length === 3, 5000, 'a last tick');
    expect(client.events.every((e) => e.event === 'tick')).toBe(true);
    expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual([1, 3, 4]);

    // The same query is validated there too.
    const empty = await openStream(`${server.url}/api/sse?stream=a&types=`);
    expect(empty.status).toBe(400);
    expect(JSON.parse(empty.body)).toMatchObject({ error: 'bad_request', message: expect.stringContaining('types') });
  });

  it('answers a 401 itself, with the JSON body, and never calls the error-handling middleware', async () => {
    const hub = newHub();
    const app = express();
    const handled: unknown[] = [];
    app.get('/events', sse(hub, { authorize: () => null }));
    app.get(
      '/boom',
      sse(hub, {
        authorize: () => {
          throw new Error('secret detail');
        },
        onError: () => {},
      }),
    );
    const errorHandler: ErrorRequestHandler = (error, _req, res, _next) => {
      handled.push(error);
      res.status(599).json({ handledBy: 'express' });
    };
    app.use(errorHandler);
    const server = await serve(app);

    const response = await fetch(`${server.url}/events?stream=a`, { headers: { accept: 'text/event-stream' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.json()).toEqual({ error: 'unauthorized', message: 'authentication required' });

    const failing = await fetch(`${server.url}/boom?stream=a`);
    expect(failing.status).toBe(500);
    expect(await failing.json()).toEqual({ error: 'internal_error', message: 'the stream could not be opened' });

    expect(handled).toEqual([]);
    expect(hub.stats().connections).toBe(0);
  });
});
