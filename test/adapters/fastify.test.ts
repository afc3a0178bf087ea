import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import ssecastFastify, { type SsecastFastifyOptions } from '../../src/adapters/fastify.js';
import { cleanupAfterEach, openStream, payloads, stalledClient, waitUntil } from '../support/helpers.js';

/**
 * The Fastify plugin as Fastify users run it: `app.listen`, `app.close`,
 * the instance's logger, its hooks, and more than one registration.
 */

type Events = { tick: { n: number }; note: string };

const cleanups = cleanupAfterEach();

function newHub(): EventManager<Events> {
  const hub = new EventManager<Events>({ maxEventBytes: 40 * 1024 });
  cleanups.push(() => hub.close());
  return hub;
}

interface LogLine {
  level: number;
  msg: string;
  err?: { message: string; type: string };
  [key: string]: unknown;
}

/** A pino destination that keeps every line the instance logs. */
function logCollector(): { stream: Writable; lines: LogLine[] } {
  const lines: LogLine[] = [];
  let partial = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      partial += chunk.toString('utf8');
      let newline: number;
      while ((newline = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, newline);
        partial = partial.slice(newline + 1);
        if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      }
      callback();
    },
  });
  return { stream, lines };
}

const ERROR = 50;
const WARN = 40;

/** A Fastify instance on 127.0.0.1, port 0, closed after the test (if the test has not closed it). */
async function start(
  register: (app: FastifyInstance) => PromiseLike<unknown> | void,
  options: FastifyServerOptions = {},
): Promise<{ app: FastifyInstance; url: string; port: number }> {
  const app = Fastify(options);
  await register(app);
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => app.close());
  return { app, url: address, port: Number(new URL(address).port) };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('Fastify 5 plugin', () => {
  it('serves events at its path on an app started with app.listen', async () => {
    const hub = newHub();
    const { url } = await start((app) => app.register(ssecastFastify, { hub, path: '/events' }));
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const client = await openStream(`${url}/events?stream=a`);
    cleanups.push(() => client.close());
    expect(client.status).toBe(200);
    expect(client.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(client.headers.get('cache-control')).toBe('no-cache, no-transform');
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the stream to subscribe');
    const first = await hub.publish('a', 'tick', { n: 1 });
    await hub.publish('b', 'tick', { n: 2 });
    await hub.publish('a', 'note', 'hello');
    await client.waitFor((c) => c.events.length === 2, 5000, 'two events');
    expect(client.events[0]).toEqual({ event: 'tick', id: first.id, data: '{"n":1}' });
    expect(client.events[1]).toMatchObject({ event: 'note', data: 'hello' });
    expect(client.raw.startsWith('retry: 3000\n\n')).toBe(true);
  });

  it('ends open streams when app.close() is called, so that close finishes', async () => {
    const hub = newHub();
    const { app, url } = await start((app) => app.register(ssecastFastify, { hub, path: '/events' }));
    const first = await openStream(`${url}/events?stream=a`);
    const second = await openStream(`${url}/events?stream=b`);
    cleanups.push(
      () => first.close(),
      () => second.close(),
    );
    await waitUntil(() => hub.stats().connections === 2, 5000, 'both streams to subscribe');
    await hub.publish('a', 'note', 'before close');
    await first.waitFor((c) => c.events.length === 1, 5000, 'the event before close');

    await withTimeout(app.close(), 8000, 'app.close() with two streams open');
    await withTimeout(Promise.all([first.ended, second.ended]), 5000, 'both responses to end');
    expect(hub.stats().connections).toBe(0);
    expect(first.events.map((e) => e.data)).toEqual(['before close']);
    // The hub is not the plugin's: it stays open for other servers.
    expect(hub.closed).toBe(false);
  });

  it('logs a hook failure at error level through the instance logger and answers a generic 500', async () => {
    const hub = newHub();
    const log = logCollector();
    const { url } = await start(
      (app) =>
        app.register(ssecastFastify, {
          hub,
          path: '/events',
          authorize: () => {
            throw new Error('token store unreachable: secret detail');
          },
        }),
      { logger: { level: 'info', stream: log.stream } },
    );

    const response = await fetch(`${url}/events?stream=a`, { headers: { accept: 'text/event-stream' } });
    expect(response.status).toBe(500);
    const body = await response.text();
    expect(body).not.toContain('secret detail');
    expect(JSON.parse(body)).toEqual({ error: 'internal_error', message: 'the stream could not be opened' });

    await waitUntil(() => log.lines.some((line) => line.level === ERROR), 5000, 'an error line in the log');
    const errors = log.lines.filter((line) => line.level === ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.msg).toMatch(/stream hook failed/);
    expect(errors[0]?.err?.message).toContain('token store unreachable');
    // Logged through the request's child logger: it carries Fastify's request id.
    expect(errors[0]?.reqId).toEqual(expect.any(String));
    expect(hub.stats().connections).toBe(0);
  });

  it('logs a warning when it cuts off a client that stopped reading', async () => {
    const hub = newHub();
    const log = logCollector();
    const { port } = await start((app) => app.register(ssecastFastify, { hub, path: '/events', maxUnsentBytes: 64 * 1024 }), {
      logger: { level: 'info', stream: log.stream },
    });

    const reader = await openStream(`http://127.0.0.1:${port}/events?stream=a`);
    cleanups.push(() => reader.close());
    const stalled = stalledClient(port, '/events?stream=a');
    cleanups.push(() => void stalled.socket.destroy());
    await waitUntil(() => hub.stats().connections === 2, 5000, 'both clients to subscribe');

    // Fill the socket buffers until the stalled client is past its bound (give up, and fail, after 64 MB).
    // A macrotask after each event lets Node uncork and send, so only the stalled client falls behind.
    const chunk = 'x'.repeat(32 * 1024);
    let published = 0;
    while (hub.stats().dropped === 0 && published < 2048) {
      await hub.publish('a', 'note', `${published++}:${chunk}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(hub.stats()).toMatchObject({ dropped: 1, connections: 1 });
    await reader.waitFor((c) => c.events.length === published, 10_000, 'the reading client to get every event');
    expect(reader.events.map((e) => Number(e.data.split(':')[0]))).toEqual(Array.from({ length: published }, (_, n) => n));

    await waitUntil(() => log.lines.some((line) => line.level === WARN), 5000, 'a warn line in the log');
    const warnings = log.lines.filter((line) => line.level === WARN);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/cut off/);
    expect(warnings[0]?.reqId).toEqual(expect.any(String));
    expect(log.lines.filter((line) => line.level >= ERROR)).toEqual([]);
    // The server tore the response down: a client that reads now finds the end.
    stalled.socket.resume();
    await waitUntil(() => stalled.closed, 5000, 'the stalled socket to close');
  });

  it('serves two registrations at different paths in one app', async () => {
    const hubA = newHub();
    const hubB = newHub();
    const { app, url } = await start(async (app) => {
      await app.register(ssecastFastify, { hub: hubA, path: '/a/events' });
      await app.register(ssecastFastify, { hub: hubB, path: '/b/events', retryMs: 500 });
    });
    const a = await openStream(`${url}/a/events?stream=s`);
    const b = await openStream(`${url}/b/events?stream=s`);
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    expect([a.status, b.status]).toEqual([200, 200]);
    await waitUntil(() => hubA.stats().connections === 1 && hubB.stats().connections === 1, 5000, 'one stream per hub');
    await hubA.publish('s', 'tick', { n: 1 });
    await hubB.publish('s', 'tick', { n: 2 });
    await a.waitFor((c) => c.events.length === 1, 5000, 'the event of hub A');
    await b.waitFor((c) => c.events.length === 1, 5000, 'the event of hub B');
    expect(payloads(a.events)).toEqual([{ n: 1 }]);
    expect(payloads(b.events)).toEqual([{ n: 2 }]);
    expect(a.retries).toEqual([3000]);
    expect(b.retries).toEqual([500]);

    // Each registration's preClose ends its own streams.
    await withTimeout(app.close(), 8000, 'app.close() with streams open on both paths');
    await withTimeout(Promise.all([a.ended, b.ended]), 5000, 'both responses to end');
    expect(hubA.stats().connections + hubB.stats().connections).toBe(0);
  });

  it('answers POST to the path with 405 and Allow: GET', async () => {
    const hub = newHub();
    const { url } = await start((app) => app.register(ssecastFastify, { hub, path: '/events' }));
    const response = await fetch(`${url}/events?stream=a`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET');
    expect(await response.json()).toMatchObject({ error: 'method_not_allowed', message: expect.stringContaining('POST') });
    const del = await fetch(`${url}/events?stream=a`, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET');
    expect(hub.stats().connections).toBe(0);
  });

  it.each([
    ['before', ['hook', 'plugin']],
    ['after', ['plugin', 'hook']],
  ])('runs an onRequest hook added %s the plugin before the stream opens, and a rejecting hook keeps it shut', async (_when, order) => {
    const hub = newHub();
    let hookRuns = 0;
    const { url } = await start(async (app) => {
      for (const step of order) {
        if (step === 'hook') {
          app.addHook('onRequest', async (request, reply) => {
            hookRuns++;
            if (request.headers['x-api-key'] !== 'let-me-in') return reply.code(401).send({ error: 'missing api key' });
          });
        } else await app.register(ssecastFastify, { hub, path: '/events' } satisfies SsecastFastifyOptions<Events>);
      }
    });

    const refused = await openStream(`${url}/events?stream=a`);
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body)).toEqual({ error: 'missing api key' });
    expect(hookRuns).toBe(1);
    expect(hub.stats().connections).toBe(0);

    const allowed = await openStream(`${url}/events?stream=a`, { 'x-api-key': 'let-me-in' });
    cleanups.push(() => allowed.close());
    expect(allowed.status).toBe(200);
    expect(hookRuns).toBe(2);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the allowed stream to subscribe');
    await hub.publish('a', 'note', 'through the hook');
    await allowed.waitFor((c) => c.events.length === 1, 5000, 'the event');
    expect(allowed.events[0]?.data).toBe('through the hook');
  });
});
