import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { EventManager, type EventManagerOptions } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import type { Principal } from '../../src/http/gate.js';
import {
  createClient,
  type ClientEvent,
  type ClientEventOf,
  type ClientOptions,
  type ClientStatus,
  type ResyncEvent,
  type SseClient,
  type SseClientError,
} from '../../src/client/index.js';
import { ADAPTERS, type NeutralOptions } from '../support/adapters.js';
import { cleanupAfterEach, sleep, startServer, waitUntil, type TestServer } from '../support/helpers.js';

/**
 * ssecast/client against real servers on 127.0.0.1: every adapter (on the
 * memory backend) for what a client depends on (events, resume, resync,
 * auth), and plain node servers for what ssecast itself never answers (204,
 * 404, 500, silence). Timing claims are in client-backoff.test.ts, on fake
 * timers; here a real clock only bounds how long to wait for an outcome.
 */

type Events = { tick: { n: number }; note: string };
/** What a plain server sends: unnamed events. */
type Plain = { message: unknown };

const cleanups = cleanupAfterEach();

/** Quick reconnects, so that tests do not wait out the defaults. */
const FAST = { initialMs: 10, maxMs: 40 };

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/**
 * Records the timers armed with `delayMs` (an unusual heartbeatTimeoutMs
 * makes them the client's watchdog) and which of them were cleared.
 */
function watchTimers(delayMs: number) {
  const armed = new Set<unknown>();
  const cleared = new Set<unknown>();
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const timer = realSet(callback, ms, ...args);
    if (ms === delayMs) armed.add(timer);
    return timer;
  }) as typeof setTimeout);
  vi.spyOn(globalThis, 'clearTimeout').mockImplementation((timer) => {
    cleared.add(timer);
    realClear(timer);
  });
  cleanups.push(() => vi.restoreAllMocks());
  return { armed, pending: () => [...armed].filter((timer) => !cleared.has(timer)).length };
}

/** Opens a client, closed after the test, with what it reports recorded. */
function open<M extends Record<string, unknown> = Events>(url: string, options: ClientOptions = {}) {
  const client: SseClient<M> = createClient<M>(url, { backoff: FAST, ...options });
  cleanups.push(() => client.close());
  const statuses: ClientStatus[] = [];
  const closedWith: (SseClientError | undefined)[] = [];
  const errors: SseClientError[] = [];
  client.onStatus((status, error) => {
    statuses.push(status);
    if (status === 'closed') closedWith.push(error);
  });
  client.onError((error) => errors.push(error));
  return { client, statuses, closedWith, errors };
}

/** Collects what the client's async iterator yields until it ends (or the error it rejects with). */
function iterate<M extends Record<string, unknown>>(client: SseClient<M>) {
  const events: ClientEventOf<M>[] = [];
  const done = (async () => {
    try {
      for await (const event of client) events.push(event);
      return undefined;
    } catch (error) {
      return error as SseClientError;
    }
  })();
  return { events, done };
}

async function plainServer(handler: http.RequestListener): Promise<TestServer> {
  const server = await startServer(handler);
  cleanups.push(() => server.close());
  return server;
}

function sseHead(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

describe.each(ADAPTERS.map((adapter) => ({ name: adapter.name, adapter })))('$name on memory', ({ adapter }) => {
  async function setup(handlerOptions: NeutralOptions = {}, hubOptions: EventManagerOptions = {}) {
    const hub = new EventManager<Events>(hubOptions);
    const server = await adapter.mount(hub, { retryMs: 10, ...handlerOptions });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    return { hub, server, url: (query: string) => `${server.url}/events?${query}` };
  }

  it('delivers typed events to on() and the iterator, in order, with ids; close() ends the iterator, the connection and every timer', async () => {
    const { hub, url } = await setup({ heartbeatMs: 0 });
    const timers = watchTimers(54_321);
    const { client, statuses } = open(url('stream=a'), { heartbeatTimeoutMs: 54_321 });
    expect(client.status).toBe('connecting');
    const ticks: ClientEvent<{ n: number }, 'tick'>[] = [];
    const notes: string[] = [];
    client.on('tick', (event) => ticks.push(event));
    const offNote = client.on('note', (event) => notes.push(event.data.toUpperCase()));
    const iterated = iterate(client);
    await waitUntil(() => client.status === 'open' && hub.stats().connections === 1, 5000, 'open');
    expect(statuses).toEqual(['open']);
    // The watchdog is armed while the stream is open.
    expect(timers.armed.size).toBe(1);
    expect(timers.pending()).toBe(1);

    const ids = [
      (await hub.publish('a', 'tick', { n: 0 })).id,
      (await hub.publish('a', 'note', 'hello')).id,
      (await hub.publish('a', 'tick', { n: 1 })).id,
    ];
    await waitUntil(() => iterated.events.length === 3, 5000, 'three events');
    expect(ticks).toEqual([
      { type: 'tick', data: { n: 0 }, id: ids[0] },
      { type: 'tick', data: { n: 1 }, id: ids[2] },
    ]);
    expect(notes).toEqual(['HELLO']);
    expect(iterated.events).toEqual([
      { type: 'tick', data: { n: 0 }, id: ids[0] },
      { type: 'note', data: 'hello', id: ids[1] },
      { type: 'tick', data: { n: 1 }, id: ids[2] },
    ]);
    expect(client.lastEventId).toBe(ids[2]);
    offNote();
    await hub.publish('a', 'note', 'unheard');
    await waitUntil(() => iterated.events.length === 4, 5000, 'the fourth event');
    expect(notes).toEqual(['HELLO']);

    client.close();
    expect(client.status).toBe('closed');
    expect(client.error).toBeUndefined();
    expect(await iterated.done).toBeUndefined();
    expect(statuses).toEqual(['open', 'closed']);
    await waitUntil(() => hub.stats().connections === 0, 5000, 'the server to see the connection go');
    expect(timers.pending()).toBe(0);
    // Closed is final: a new iterator ends at once, close() again is a no-op.
    const late = iterate(client);
    expect(await late.done).toBeUndefined();
    expect(late.events).toEqual([]);
    client.close();
    expect(statuses).toEqual(['open', 'closed']);
  });

  it('resumes after the server drops the stream while publishing goes on: every event once, in order, by Last-Event-ID', async () => {
    const requests: (string | undefined)[] = [];
    const { hub, server, url } = await setup(
      {
        streams: (req) => {
          requests.push(req.header('last-event-id'));
          return ['a', 'b'];
        },
      },
      { historySize: 2000 },
    );
    const { client, statuses, errors } = open(url('follow=a,b'));
    const received: number[] = [];
    const seenIds: string[] = [];
    const resyncs: ResyncEvent[] = [];
    client.on('tick', (event) => {
      received.push(event.data.n);
      seenIds.push(event.id as string);
    });
    client.on('resync', (event) => resyncs.push(event));
    let n = 0;
    const drops = 4;
    const publish = async (count: number, stream?: string) => {
      for (const stop = n + count; n < stop; n++) {
        await hub.publish(stream ?? (n % 2 ? 'a' : 'b'), 'tick', { n });
        if (n % 10 === 0) await sleep(1);
      }
    };
    for (let round = 0; round < drops; round++) {
      await waitUntil(() => client.status === 'open' && hub.stats().connections === 1, 5000, `connection ${round + 1}`);
      const had = received.length;
      await publish(60);
      // Drop once this connection has delivered something, so the client has an id to resume from.
      await waitUntil(() => received.length > had, 5000, `an event on connection ${round + 1}`);
      server.dropConnections();
      // Published while the client reconnects: the first of these can only come by resume.
      await publish(60);
      await waitUntil(() => hub.stats().connections === 0 || requests.length > round + 1, 5000, `the server to see drop ${round + 1}`);
    }
    await waitUntil(() => client.status === 'open' && hub.stats().connections === 1, 5000, 'the last connection');
    await publish(20, 'a');
    await waitUntil(() => received.length >= n, 10_000, `all ${n} events (got ${received.length})`);
    await sleep(50);
    expect(received).toEqual(range(0, n));
    expect(resyncs).toEqual([]);
    expect(requests.length).toBeGreaterThanOrEqual(drops + 1);
    expect(requests[0]).toBeUndefined();
    // Every reconnect carried an id this client had received.
    for (const lastEventId of requests.slice(1)) expect(seenIds).toContain(lastEventId);
    expect(statuses.filter((status) => status === 'reconnecting').length).toBeGreaterThanOrEqual(drops);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.every((error) => error.code === 'ERR_NETWORK' && error.willRetry)).toBe(true);
  });

  it('surfaces resync after a server restart (a new epoch), through on() and the iterator, then the new events', async () => {
    let hub = new EventManager<Events>();
    let server = await adapter.mount(hub, { retryMs: 10 });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    // The app keeps one URL; a custom fetch sends it to whichever server is up.
    const { client, statuses } = open('http://ssecast.test/events?stream=a', {
      fetch: (_input, init) => fetch(`${server.url}/events?stream=a`, init),
    });
    const resyncs: ResyncEvent[] = [];
    client.on('resync', (event) => resyncs.push(event));
    const iterated = iterate(client);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'connected');
    const before: string[] = [];
    for (let n = 0; n < 3; n++) before.push((await hub.publish('a', 'tick', { n })).id);
    await waitUntil(() => iterated.events.length === 3, 5000, 'the first events');

    // The restart: a new hub (new epoch) behind a new server; the old ones go.
    const oldHub = hub;
    const oldServer = server;
    hub = new EventManager<Events>();
    server = await adapter.mount(hub, { retryMs: 10 });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    await oldHub.close();
    await oldServer.close();
    await waitUntil(() => resyncs.length === 1 && hub.stats().connections === 1, 5000, 'the resync');
    const lastOld = before[2] as string;
    // The resync's id moves the client to the new hub's position, or (empty) forgets the old one.
    const resyncId = resyncs[0]?.id;
    expect(resyncs[0]).toEqual({ type: 'resync', data: { reason: 'foreign', lastEventId: lastOld }, id: resyncId });
    expect(client.lastEventId).toBe(resyncId);

    const after = [(await hub.publish('a', 'tick', { n: 100 })).id, (await hub.publish('a', 'tick', { n: 101 })).id];
    await waitUntil(() => iterated.events.length === 6, 5000, 'the new events');
    expect(after[0]?.split('.')[0]).not.toBe(lastOld.split('.')[0]);
    if (resyncId !== undefined) expect(resyncId.split('.')[0]).toBe(after[0]?.split('.')[0]);
    expect(iterated.events).toEqual([
      ...[0, 1, 2].map((n) => ({ type: 'tick', data: { n }, id: before[n] })),
      { type: 'resync', data: { reason: 'foreign', lastEventId: lastOld }, id: resyncId },
      { type: 'tick', data: { n: 100 }, id: after[0] },
      { type: 'tick', data: { n: 101 }, id: after[1] },
    ]);
    expect(client.lastEventId).toBe(after[1]);
    expect(statuses).toContain('reconnecting');
    expect(statuses.at(-1)).toBe('open');
  });

  it('sends the headers of a function called per attempt: a refreshed token reaches the server on reconnect', async () => {
    const valid = new Set(['t1']);
    const seen: (string | undefined)[] = [];
    const { hub, server, url } = await setup({
      authorize: (req) => {
        seen.push(req.header('authorization'));
        const token = req.header('authorization')?.replace(/^Bearer /, '') ?? '';
        return valid.has(token) ? { id: 'alice', streams: ['a'] } : null;
      },
    });
    let token = 't1';
    let calls = 0;
    const { client, errors } = open(url('stream=a'), {
      headers: async () => {
        calls++;
        return { authorization: `Bearer ${token}`, 'x-app': 'test' };
      },
    });
    const received: number[] = [];
    client.on('tick', (event) => received.push(event.data.n));
    await waitUntil(() => client.status === 'open' && hub.stats().connections === 1, 5000, 'open');
    await hub.publish('a', 'tick', { n: 1 });
    await waitUntil(() => received.length === 1, 5000, 'the first event');

    // The old token is revoked and a new one issued; the server drops the stream.
    valid.delete('t1');
    valid.add('t2');
    token = 't2';
    server.dropConnections();
    await waitUntil(() => seen.length === 2 && client.status === 'open' && hub.stats().connections === 1, 5000, 'the reconnect');
    await hub.publish('a', 'tick', { n: 2 });
    await waitUntil(() => received.length === 2, 5000, 'the second event');
    expect(received).toEqual([1, 2]);
    expect(seen).toEqual(['Bearer t1', 'Bearer t2']);
    expect(calls).toBe(2);
    expect(errors.every((error) => error.code === 'ERR_NETWORK')).toBe(true);
  });

  it.each<[number, string, Principal | null]>([
    [401, 'authentication required', null],
    [403, 'not allowed to read stream "a"', { id: 'bob', streams: ['b'] }],
  ])('stops for good on %i, with the server message, after one request', async (status, message, principal) => {
    let requests = 0;
    const { hub, url } = await setup({
      authorize: () => {
        requests++;
        return principal;
      },
    });
    const { client, statuses, closedWith, errors } = open(url('stream=a'));
    const iterated = iterate(client);
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150); // many backoff periods: a retry would have come
    expect(requests).toBe(1);
    const error = client.error;
    expect(error).toMatchObject({ name: 'SseClientError', code: 'ERR_HTTP_STATUS', status, serverMessage: message, willRetry: false });
    expect(statuses).toEqual(['closed']);
    expect(closedWith).toEqual([error]);
    expect(errors).toEqual([error]);
    expect(await iterated.done).toBe(error);
    expect(hub.stats().connections).toBe(0);
  });
});

describe('final answers from other servers', () => {
  it('stops on 404 with the text the server gave, after one request', async () => {
    let requests = 0;
    const server = await plainServer((_req, res) => {
      requests++;
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such stream\n');
    });
    const { client, closedWith } = open<Plain>(`${server.url}/events`);
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150);
    expect(requests).toBe(1);
    expect(client.error).toMatchObject({ code: 'ERR_HTTP_STATUS', status: 404, serverMessage: 'no such stream', willRetry: false });
    expect(closedWith).toEqual([client.error]);
  });

  it('stops on 204 without an error, after one request', async () => {
    let requests = 0;
    const server = await plainServer((_req, res) => {
      requests++;
      res.writeHead(204).end();
    });
    const { client, statuses, errors } = open<Plain>(`${server.url}/events`);
    const iterated = iterate(client);
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150);
    expect(requests).toBe(1);
    expect(client.error).toBeUndefined();
    expect(statuses).toEqual(['closed']);
    expect(errors).toEqual([]);
    expect(await iterated.done).toBeUndefined();
  });

  it('stops on a 200 that is not text/event-stream, after one request', async () => {
    let requests = 0;
    const server = await plainServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>login</h1>');
    });
    const { client } = open<Plain>(`${server.url}/events`);
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150);
    expect(requests).toBe(1);
    expect(client.error).toMatchObject({ code: 'ERR_CONTENT_TYPE', status: 200, willRetry: false });
    expect(client.error?.message).toContain('text/html');
  });
});

describe('retries', () => {
  it('retries a 503 from a hub that is shutting down, and opens on the hub that replaces it', async () => {
    const closing = new EventManager<Events>();
    await closing.close();
    const live = new EventManager<Events>();
    cleanups.push(() => live.close());
    let handler = createSseHandler(closing, { retryMs: 10 });
    let requests = 0;
    const server = await plainServer((req, res) => {
      requests++;
      // The swap: the third request reaches the new hub.
      if (requests === 3) handler = createSseHandler(live, { retryMs: 10 });
      handler(req, res);
    });
    const { client, statuses, errors } = open(`${server.url}/?stream=a`);
    const received: number[] = [];
    client.on('tick', (event) => received.push(event.data.n));
    await waitUntil(() => client.status === 'open' && live.stats().connections === 1, 5000, 'open on the new hub');
    await live.publish('a', 'tick', { n: 7 });
    await waitUntil(() => received.length === 1, 5000, 'the event');
    expect(requests).toBe(3);
    expect(errors).toHaveLength(2);
    for (const error of errors)
      expect(error).toMatchObject({
        code: 'ERR_HTTP_STATUS',
        status: 503,
        willRetry: true,
        serverMessage: 'the event hub is shutting down',
      });
    expect(statuses).toEqual(['reconnecting', 'open']);
    expect(client.error).toBeUndefined();
  });

  it('retries a 500 and opens on the 200 that follows', async () => {
    let requests = 0;
    const server = await plainServer((_req, res) => {
      if (++requests === 1)
        return res
          .writeHead(500, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: 'internal_error', message: 'database down' }));
      sseHead(res);
      res.write('retry: 10\n\nid: x1\nevent: tick\ndata: {"n":1}\n\n');
    });
    const { client, errors } = open<Events>(`${server.url}/events`);
    const iterated = iterate(client);
    await waitUntil(() => iterated.events.length === 1, 5000, 'the event');
    expect(iterated.events).toEqual([{ type: 'tick', data: { n: 1 }, id: 'x1' }]);
    expect(requests).toBe(2);
    expect(errors).toEqual([
      expect.objectContaining({ code: 'ERR_HTTP_STATUS', status: 500, serverMessage: 'database down', willRetry: true }),
    ]);
    expect(client.status).toBe('open');
  });

  it('retries while nothing listens on the port, and connects once a server does', async () => {
    const probe = await startServer(() => {});
    const port = probe.port;
    await probe.close();
    const { client, errors } = open<Plain>(`http://127.0.0.1:${port}/events`);
    await waitUntil(() => errors.length >= 2, 5000, 'two refused connections');
    expect(client.status).toBe('reconnecting');
    expect(errors.every((error) => error.code === 'ERR_NETWORK' && error.willRetry && error.cause !== undefined)).toBe(true);

    const server = http.createServer((_req, res) => {
      sseHead(res);
      res.write('data: up\n\n');
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    expect((server.address() as AddressInfo).port).toBe(port);
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => messages.length === 1, 5000, 'the first event');
    expect(messages).toEqual(['up']);
    expect(client.status).toBe('open');
  });

  it('retries a fetch that rejects, through a custom fetch', async () => {
    let failures = 0;
    const server = await plainServer((_req, res) => {
      sseHead(res);
      res.write('data: 1\n\n');
    });
    const { client, errors } = open<Plain>(`${server.url}/events`, {
      fetch: (input, init): Promise<Response> => (failures++ < 2 ? Promise.reject(new TypeError('fetch failed')) : fetch(input, init)),
    });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => messages.length === 1, 5000, 'the event');
    expect(messages).toEqual([1]);
    expect(errors.map((error) => [error.code, error.willRetry, (error.cause as Error).message])).toEqual([
      ['ERR_NETWORK', true, 'fetch failed'],
      ['ERR_NETWORK', true, 'fetch failed'],
    ]);
  });
});

describe('the heartbeat watchdog', () => {
  it('aborts a stream that goes silent and reconnects after its last id', async () => {
    const requests: (string | undefined)[] = [];
    const server = await plainServer((req, res) => {
      requests.push(req.headers['last-event-id'] as string | undefined);
      sseHead(res);
      // One event, then silence on an open socket.
      res.write(`retry: 10\n\nid: e${requests.length}\ndata: ${requests.length}\n\n`);
    });
    const { client, errors, statuses } = open<Plain>(`${server.url}/events`, { heartbeatTimeoutMs: 300 });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => requests.length >= 2 && messages.length >= 2, 5000, 'a reconnect');
    expect(requests.slice(0, 2)).toEqual([undefined, 'e1']);
    expect(messages.slice(0, 2)).toEqual([1, 2]);
    expect(errors[0]).toMatchObject({ code: 'ERR_STALE', willRetry: true });
    expect(errors.every((error) => error.code === 'ERR_STALE')).toBe(true);
    expect(statuses.slice(0, 3)).toEqual(['open', 'reconnecting', 'open']);
  });

  it('keeps a stream that sends heartbeat comments', async () => {
    let requests = 0;
    const server = await plainServer((_req, res) => {
      requests++;
      sseHead(res);
      res.write('retry: 10\n\nid: e1\ndata: 1\n\n');
      const beat = setInterval(() => res.write(':heartbeat\n\n'), 100);
      res.on('close', () => clearInterval(beat));
    });
    const { client, errors } = open<Plain>(`${server.url}/events`, { heartbeatTimeoutMs: 300 });
    await waitUntil(() => client.status === 'open', 5000, 'open');
    await sleep(1000);
    expect(requests).toBe(1);
    expect(errors).toEqual([]);
    expect(client.status).toBe('open');
  });
});

describe('options', () => {
  /** A server that records each request's headers and sends the SSE `text`, then keeps the stream open. */
  async function recording(text = 'retry: 10\n\n') {
    const requests: http.IncomingHttpHeaders[] = [];
    const server = await plainServer((req, res) => {
      requests.push(req.headers);
      sseHead(res);
      res.write(text);
    });
    return { server, requests };
  }

  it("asks fetch for credentials: 'include' with withCredentials, 'same-origin' without, and sends accept", async () => {
    const { server } = await recording();
    const inits: RequestInit[] = [];
    const capture: typeof fetch = (input, init) => {
      inits.push(init as RequestInit);
      return fetch(input, init);
    };
    const withCookies = open<Plain>(`${server.url}/events`, { fetch: capture, withCredentials: true }).client;
    const without = open<Plain>(`${server.url}/events`, { fetch: capture }).client;
    await waitUntil(() => withCookies.status === 'open' && without.status === 'open', 5000, 'both open');
    expect(inits.map((init) => init.credentials).sort()).toEqual(['include', 'same-origin']);
    for (const init of inits) {
      expect(init.method).toBe('GET');
      expect(new Headers(init.headers).get('accept')).toBe('text/event-stream');
      expect(init.signal).toBeInstanceOf(AbortSignal);
    }
  });

  it('calls fetch with globalThis as this, as a browser\'s fetch requires ("Illegal invocation" otherwise)', async () => {
    const { server, requests } = await recording();
    const receivers: unknown[] = [];
    // What Chromium's fetch does when called as a method of something else.
    const strict = function (this: unknown, input: RequestInfo | URL, init?: RequestInit) {
      receivers.push(this);
      if (this !== undefined && this !== globalThis) throw new TypeError("Failed to execute 'fetch' on 'Window': Illegal invocation");
      return fetch(input, init);
    } as typeof fetch;
    const client = open<Plain>(`${server.url}/events`, { fetch: strict }).client;
    await waitUntil(() => client.status === 'open', 5000, 'the client to open');
    expect(requests).toHaveLength(1);
    expect(receivers).toEqual([globalThis]);
  });

  it('closes when its signal aborts, and makes no request when the signal is already aborted', async () => {
    const { server, requests } = await recording();
    const controller = new AbortController();
    const { client, statuses } = open<Plain>(`${server.url}/events`, { signal: controller.signal });
    await waitUntil(() => client.status === 'open', 5000, 'open');
    controller.abort();
    expect(client.status).toBe('closed');
    expect(client.error).toBeUndefined();
    expect(statuses).toEqual(['open', 'closed']);

    let fetched = 0;
    const aborted = open<Plain>(`${server.url}/events`, {
      signal: AbortSignal.abort(),
      fetch: (input, init) => {
        fetched++;
        return fetch(input, init);
      },
    }).client;
    expect(aborted.status).toBe('closed');
    await sleep(100);
    expect(fetched).toBe(0);
    expect(requests).toHaveLength(1);
    expect(await iterate(aborted).done).toBeUndefined();
  });

  it('stays closed when close() comes while the request is in flight, even if fetch answers anyway', async () => {
    const { server } = await recording('retry: 10\n\ndata: 1\n\n');
    let calls = 0;
    let answer: (() => void) | undefined;
    const { client, statuses } = open<Plain>(`${server.url}/events`, {
      // A fetch that does not pass the signal on: it answers after close().
      fetch: async (input, init) => {
        calls++;
        await new Promise<void>((resolve) => (answer = resolve));
        return fetch(input, { headers: init?.headers });
      },
    });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => answer !== undefined, 5000, 'the request');
    client.close();
    answer?.();
    await sleep(200);
    expect(client.status).toBe('closed');
    expect(statuses).toEqual(['closed']);
    expect(calls).toBe(1);
    expect(messages).toEqual([]);
  });

  it('resumes after the lastEventId option on its first request', async () => {
    const { server, requests } = await recording();
    const { client } = open<Plain>(`${server.url}/events`, { lastEventId: 'abc.41' });
    await waitUntil(() => client.status === 'open', 5000, 'open');
    expect(requests[0]?.['last-event-id']).toBe('abc.41');
    expect(client.lastEventId).toBe('abc.41');
  });

  it("keeps '42' a string with parse: 'text', gives 42 with the default 'auto', and applies a parse function", async () => {
    const hub = new EventManager<{ note: string }>();
    const server = await startServer(createSseHandler(hub, { retryMs: 10 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const url = `${server.url}/?stream=a`;
    const text = open<{ note: string }>(url, { parse: 'text' }).client;
    const auto = open<{ note: string }>(url).client;
    const custom = open<{ note: string }>(url, { parse: (data, type) => `${type}:${data}` }).client;
    const got = { text: [] as unknown[], auto: [] as unknown[], custom: [] as unknown[] };
    text.on('note', (event) => got.text.push(event.data));
    auto.on('note', (event) => got.auto.push(event.data));
    custom.on('note', (event) => got.custom.push(event.data));
    await waitUntil(() => hub.stats().connections === 3, 5000, 'three connections');
    await hub.publish('a', 'note', '42');
    await hub.publish('a', 'note', 'not json');
    await waitUntil(() => got.text.length === 2 && got.auto.length === 2 && got.custom.length === 2, 5000, 'the notes');
    expect(got).toEqual({ text: ['42', 'not json'], auto: [42, 'not json'], custom: ['note:42', 'note:not json'] });
  });

  it("skips an event parse: 'json' cannot read, with ERR_PARSE, and goes on", async () => {
    const { server } = await recording('retry: 10\n\ndata: {broken\n\ndata: {"ok":true}\n\n');
    const { client, errors } = open<Plain>(`${server.url}/events`, { parse: 'json' });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => messages.length === 1, 5000, 'the good event');
    expect(messages).toEqual([{ ok: true }]);
    expect(errors.map((error) => error.code)).toEqual(['ERR_PARSE']);
    expect(client.status).toBe('open');
  });

  it('closes with ERR_EVENT_TOO_LARGE on an event over maxEventBytes, after one request', async () => {
    const big = 'x'.repeat(5000);
    let requests = 0;
    const server = await plainServer((_req, res) => {
      requests++;
      sseHead(res);
      res.write(`retry: 10\n\ndata: small\n\ndata: ${big}\n\ndata: after\n\n`);
    });
    const { client, closedWith } = open<Plain>(`${server.url}/events`, { maxEventBytes: 1000 });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150);
    expect(requests).toBe(1);
    expect(client.error).toMatchObject({ code: 'ERR_EVENT_TOO_LARGE', willRetry: false });
    expect(closedWith).toEqual([client.error]);
    expect(messages).toEqual(['small']);
  });

  it('closes with ERR_EVENT_TOO_LARGE when the oversized event comes in pieces', async () => {
    const server = await plainServer((_req, res) => {
      sseHead(res);
      res.write('retry: 10\n\ndata: ');
      let sent = 0;
      const piece = setInterval(() => {
        if (res.destroyed || sent++ > 20) return clearInterval(piece);
        res.write('y'.repeat(200));
      }, 5);
      res.on('close', () => clearInterval(piece));
    });
    const { client } = open<Plain>(`${server.url}/events`, { maxEventBytes: 1000 });
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    expect(client.error?.code).toBe('ERR_EVENT_TOO_LARGE');
  });

  it('fails an unread iterator with ERR_SLOW_CONSUMER past maxQueue, while on() listeners get every event', async () => {
    const hub = new EventManager<Events>();
    const server = await startServer(createSseHandler(hub, { retryMs: 10 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { client } = open(`${server.url}/?stream=a`, { maxQueue: 5 });
    const heard: number[] = [];
    client.on('tick', (event) => heard.push(event.data.n));
    const iterator = client[Symbol.asyncIterator]();
    await waitUntil(() => hub.stats().connections === 1, 5000, 'connected');
    for (let n = 0; n < 20; n++) await hub.publish('a', 'tick', { n });
    await waitUntil(() => heard.length === 20, 5000, 'twenty events');
    expect(heard).toEqual(range(0, 20));
    // It is judged after it had its turn: 100 ms without taking anything.
    await sleep(300);
    await expect(iterator.next()).rejects.toMatchObject({ code: 'ERR_SLOW_CONSUMER', lastEventId: undefined });
    expect(client.status).toBe('open');
  });

  it('lets an iterator that is awaiting take a burst larger than maxQueue that arrives in one chunk', async () => {
    const hub = new EventManager<Events>();
    const server = await startServer(createSseHandler(hub, { retryMs: 10 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { client } = open(`${server.url}/?stream=a`, { maxQueue: 100 });
    const got: number[] = [];
    const done = (async () => {
      for await (const event of client) {
        if (event.type === 'tick') got.push(event.data.n);
        if (got.length === 1500) break;
      }
    })();
    await waitUntil(() => hub.stats().connections === 1, 5000, 'connected');
    // 1,500 events in one tick: one write, read as a few chunks of hundreds of events each.
    await Promise.all(range(0, 1500).map((n) => hub.publish('a', 'tick', { n })));
    await done;
    expect(got).toEqual(range(0, 1500));
  });

  it('names the last event the iterator took in ERR_SLOW_CONSUMER: resuming from it skips nothing', async () => {
    const hub = new EventManager<Events>();
    const server = await startServer(createSseHandler(hub, { retryMs: 10 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const { client } = open(`${server.url}/?stream=a`, { maxQueue: 10 });
    const iterator = client[Symbol.asyncIterator]();
    await waitUntil(() => hub.stats().connections === 1, 5000, 'connected');
    for (let n = 0; n < 3; n++) await hub.publish('a', 'tick', { n });
    const taken: number[] = [];
    for (let i = 0; i < 3; i++) taken.push(((await iterator.next()).value as { data: { n: number } }).data.n);
    // Now it stops taking, and 17 more arrive.
    for (let n = 3; n < 20; n++) await hub.publish('a', 'tick', { n });
    await sleep(300);
    const error = await iterator.next().catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ERR_SLOW_CONSUMER' });
    const resumeFrom = (error as { lastEventId?: string }).lastEventId;
    expect((error as Error).message).toContain(JSON.stringify(resumeFrom));
    const again = open(`${server.url}/?stream=a`, { lastEventId: resumeFrom }).client;
    const rest: number[] = [];
    for await (const event of again) {
      if (event.type === 'tick') rest.push(event.data.n);
      if (rest.length === 17) break;
    }
    expect([...taken, ...rest]).toEqual(range(0, 20));
  });

  it('keeps the stream going when a listener throws, and reports ERR_LISTENER', async () => {
    const { server } = await recording('retry: 10\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n');
    const { client, errors } = open<Plain>(`${server.url}/events`);
    const heard: unknown[] = [];
    client.on('message', (event) => {
      if (event.data === 2) throw new Error('render failed');
    });
    client.on('message', (event) => heard.push(event.data));
    await waitUntil(() => heard.length === 3, 5000, 'three events');
    expect(heard).toEqual([1, 2, 3]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'ERR_LISTENER', willRetry: false });
    expect((errors[0]?.cause as Error | undefined)?.message).toBe('render failed');
    expect(client.status).toBe('open');
  });
});
