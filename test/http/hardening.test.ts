/**
 * One test (or a few) per defect class of the hardening review, each on the
 * public surface: real sockets for the adapters, the hub's own API for the
 * core. Every one of them failed on the code before the fix.
 */
import type http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventManager, MemoryBackend, SsecastError, type Backend } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { createFetchHandler } from '../../src/adapters/fetch.js';
import { cleanupAfterEach, openStream, sleep, stalledClient, startServer, waitUntil } from '../support/helpers.js';

type Events = { tick: { n: number }; note: string };
const cleanups = cleanupAfterEach();

/** Sends raw bytes on a fresh socket and resolves with everything the server sent before it closed or went quiet. */
async function rawRequest(port: number, bytes: string, quietMs = 300): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());
  let answer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => {});
  socket.write(bytes);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await Promise.race([closed, sleep(quietMs)]);
  return answer;
}

describe('1. a request target that does not parse', () => {
  it.each(['http://[/', 'http://[::1', 'http://a:b:c/'])('answers GET %s with 400 JSON and keeps serving', async (target) => {
    const hub = new EventManager<Events>();
    const errors: unknown[] = [];
    const server = await startServer(createSseHandler(hub, { onError: (error) => errors.push(error) }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const answer = await rawRequest(server.port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({
      error: 'bad_request',
      message: expect.stringContaining('could not be parsed'),
    });
    expect(errors).toEqual([]);
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    expect(client.status).toBe(200);
  });
});

describe('4. user callbacks are isolated', () => {
  it('a throwing onEvent ends only its subscriber: publish resolves, later subscribers get the event, onError hears of it', async () => {
    const reported: { error: unknown; source: string }[] = [];
    const hub = new EventManager<Events>({ onError: (error, { source }) => reported.push({ error, source }) });
    cleanups.push(() => hub.close());
    const before: unknown[] = [];
    const after: unknown[] = [];
    const first = hub.subscribe({ streams: ['a'], onEvent: (d) => before.push(d.event.data) });
    const bad = hub.subscribe({
      streams: ['a'],
      onEvent: () => {
        throw new Error('subscriber bug');
      },
    });
    const last = hub.subscribe({ streams: ['a'], onEvent: (d) => after.push(d.event.data) });
    await Promise.all([first.ready, bad.ready, last.ready]);
    const published = await hub.publish('a', 'tick', { n: 1 });
    expect(published.id).toMatch(/\.1$/);
    expect(before).toEqual([{ n: 1 }]);
    expect(after).toEqual([{ n: 1 }]);
    expect(bad.isClosed).toBe(true);
    expect(await bad.closed).toBe('error');
    expect(reported).toEqual([{ error: expect.objectContaining({ message: 'subscriber bug' }), source: 'onEvent' }]);
    expect(hub.stats()).toMatchObject({ hookErrors: 1, published: 1, connections: 2 });
    await hub.publish('a', 'tick', { n: 2 });
    expect(after).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it('a throwing onClose does not stop hub.close(): every other subscription ends and the backend is closed', async () => {
    let backendClosed = false;
    const memory = new MemoryBackend();
    const backend: Backend = {
      open: (context) => memory.open(context),
      append: (draft) => memory.append(draft),
      read: (query) => memory.read(query),
      stats: () => memory.stats(),
      close: async () => {
        backendClosed = true;
        await memory.close();
      },
    };
    const reported: string[] = [];
    const hub = new EventManager<Events>({ backend, onError: (_error, { source }) => reported.push(source) });
    const closedWith: string[] = [];
    hub.subscribe({ streams: ['a'], onEvent: () => {}, onClose: (reason) => closedWith.push(`a:${reason}`) });
    hub.subscribe({
      streams: ['b'],
      onEvent: () => {},
      onClose: () => {
        throw new Error('onClose bug');
      },
    });
    hub.subscribe({ streams: ['c'], onEvent: () => {}, onClose: (reason) => closedWith.push(`c:${reason}`) });
    await hub.close();
    expect(closedWith).toEqual(['a:hub_closed', 'c:hub_closed']);
    expect(hub.stats()).toMatchObject({ connections: 0, hookErrors: 1 });
    expect(reported).toEqual(['onClose']);
    expect(backendClosed).toBe(true);
  });

  it('a transport that throws on write ends its own connection and not the others; publish still resolves', async () => {
    const hub = new EventManager<Events>();
    const errors: unknown[] = [];
    const handler = createSseHandler(hub, { onError: (error) => errors.push(error) });
    let broken: http.ServerResponse | undefined;
    const server = await startServer((req, res) => {
      if (req.url?.includes('broken')) {
        broken = res;
        // A response whose writes throw after the stream opened: what a torn-down TLS socket does.
        const write = res.write.bind(res);
        let writes = 0;
        res.write = ((chunk: unknown, ...rest: unknown[]) => {
          if (++writes > 1) throw new Error('write after teardown');
          return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
        }) as typeof res.write;
      }
      handler(req, res);
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const good = await openStream(`${server.url}/?stream=a`);
    const bad = await openStream(`${server.url}/?stream=a&broken`);
    cleanups.push(
      () => good.close(),
      () => bad.close(),
    );
    await waitUntil(() => hub.stats().connections === 2 && broken !== undefined);
    for (let n = 0; n < 5; n++) await hub.publish('a', 'tick', { n });
    await good.waitFor((c) => c.events.length === 5);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the broken connection to end');
    expect(errors).toEqual([expect.objectContaining({ message: 'write after teardown' })]);
    await hub.publish('a', 'tick', { n: 5 });
    await good.waitFor((c) => c.events.length === 6);
  });
});

describe('5. the iterator cursor is what the consumer received', () => {
  it('after ERR_SLOW_CONSUMER, resuming from the id the error names misses nothing', async () => {
    const hub = new EventManager<Events>({ maxQueue: 5 });
    cleanups.push(() => hub.close());
    const subscription = hub.subscribe({ streams: ['a'] });
    await subscription.ready;
    for (let n = 0; n < 10; n++) await hub.publish('a', 'tick', { n });
    const got: number[] = [];
    let error: unknown;
    try {
      for await (const event of subscription) got.push((event.data as { n: number }).n);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SsecastError);
    expect((error as SsecastError).code).toBe('ERR_SLOW_CONSUMER');
    const named = /lastEventId "([^"]+)"/.exec((error as Error).message)?.[1];
    expect(named).toBe(subscription.lastEventId);
    const resumed = hub.subscribe({ streams: ['a'], lastEventId: named });
    const rest: number[] = [];
    await resumed.ready;
    resumed.close();
    for await (const event of resumed) rest.push((event.data as { n: number }).n);
    expect([...got, ...rest]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('after an early break, lastEventId is the last event the loop saw', async () => {
    const hub = new EventManager<Events>();
    cleanups.push(() => hub.close());
    const subscription = hub.subscribe({ streams: ['a'] });
    await subscription.ready;
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push((await hub.publish('a', 'tick', { n })).id);
    for await (const event of subscription) {
      if ((event.data as { n: number }).n === 1) break;
    }
    expect(subscription.lastEventId).toBe(ids[1]);
  });
});

describe('6. a resync moves the client cursor', () => {
  it('a resync frame carries an id; the reconnect that sends it resumes without a second resync', async () => {
    const hub = new EventManager<Events>();
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const first = await openStream(`${server.url}/?stream=quiet`, { 'last-event-id': 'oldepoch.42' });
    cleanups.push(() => first.close());
    await first.waitFor((c) => c.events.length === 1);
    const [resync] = first.events;
    expect(resync).toMatchObject({ event: 'resync', id: expect.stringMatching(/^[0-9a-z]+\.0$/) });
    first.close();
    const again = await openStream(`${server.url}/?stream=quiet`, { 'last-event-id': resync?.id as string });
    cleanups.push(() => again.close());
    await waitUntil(() => hub.stats().connections === 1);
    const live = await hub.publish('quiet', 'tick', { n: 1 });
    await again.waitFor((c) => c.events.length === 1);
    expect(again.events).toEqual([{ event: 'tick', id: live.id, data: '{"n":1}' }]);
    expect(hub.stats().resyncs).toBe(1);
  });
});

describe('7. oversize events', () => {
  it('publish rejects an event over maxEventBytes; nothing is stored or sent, and the next event flows', async () => {
    const hub = new EventManager<Events>({ maxEventBytes: 1024 });
    const server = await startServer(createSseHandler(hub, { maxUnsentBytes: 4096 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    await expect(hub.publish('a', 'note', 'x'.repeat(2000))).rejects.toMatchObject({
      code: 'ERR_EVENT_TOO_LARGE',
      message: expect.stringContaining('over maxEventBytes (1024)'),
    });
    expect(hub.stats()).toMatchObject({ published: 0, retainedEvents: 0 });
    const ok = await hub.publish('a', 'note', 'small');
    await client.waitFor((c) => c.events.length === 1);
    expect(client.events).toEqual([{ event: 'note', id: ok.id, data: 'small' }]);
    // A later connection replays history without being cut off.
    const later = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => later.close());
    await later.waitFor((c) => c.events.length === 1);
    expect(hub.stats().dropped).toBe(0);
  });

  it('refuses inconsistent limits at construction', () => {
    expect(() => new EventManager({ maxEventBytes: 1024 * 1024, historyBytes: 256 * 1024 })).toThrow(
      /maxEventBytes \(1048576\) must not exceed historyBytes/,
    );
    expect(() => new EventManager({ maxEventBytes: 0 })).toThrow(/maxEventBytes must be a positive integer/);
    const hub = new EventManager({ maxEventBytes: 64 * 1024 });
    cleanups.push(() => hub.close());
    expect(() => createSseHandler(hub, { maxUnsentBytes: 32 * 1024 })).toThrow(/maxUnsentBytes \(32768\) must hold one event/);
    expect(() => createSseHandler(hub, { maxTotalUnsentBytes: 0 })).toThrow(/maxTotalUnsentBytes must be a positive integer/);
    expect(() => createSseHandler(hub, { maxConnections: 0 })).toThrow(/maxConnections must be a positive integer/);
  });

  it('replays a history larger than maxUnsentBytes to a new connection instead of cutting it off', async () => {
    const hub = new EventManager<Events>({ maxEventBytes: 8 * 1024, replay: 50 });
    const server = await startServer(createSseHandler(hub, { maxUnsentBytes: 16 * 1024 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const streams = ['a', 'b', 'c', 'd'];
    for (const stream of streams) for (let n = 0; n < 10; n++) await hub.publish(stream, 'note', `${n}:${'y'.repeat(7000)}`);
    const client = await openStream(`${server.url}/?${streams.map((s) => `stream=${s}`).join('&')}`);
    cleanups.push(() => client.close());
    await client.waitFor((c) => c.events.length === 40, 5000, 'the whole 280 KB history');
    expect(hub.stats().dropped).toBe(0);
  });
});

describe('8. admission budget', () => {
  it('answers 503 with Retry-After past maxConnections, and takes a connection again once one closes', async () => {
    const hub = new EventManager<Events>();
    const server = await startServer(createSseHandler(hub, { maxConnections: 2 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const a = await openStream(`${server.url}/?stream=a`);
    const b = await openStream(`${server.url}/?stream=a`);
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const refused = await openStream(`${server.url}/?stream=a`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('10');
    expect(JSON.parse(refused.body)).toEqual({ error: 'unavailable', message: expect.stringContaining('too many open streams') });
    a.close();
    await waitUntil(() => hub.stats().connections === 1);
    const c = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => c.close());
    expect(c.status).toBe(200);
  });

  it('limits anonymous connections per client address (429), and per clientKey when given', async () => {
    const hub = new EventManager<Events>();
    const byAddress = await startServer(createSseHandler(hub, { maxConnectionsPerClient: 2 }));
    const byKey = await startServer(
      createSseHandler(hub, {
        maxConnectionsPerClient: 1,
        clientKey: (req) => (req.headers['x-client'] as string | undefined) ?? 'unknown',
      }),
    );
    cleanups.push(
      () => byAddress.close(),
      () => byKey.close(),
      () => hub.close(),
    );
    const open = [await openStream(`${byAddress.url}/?stream=a`), await openStream(`${byAddress.url}/?stream=a`)];
    for (const client of open) cleanups.push(() => client.close());
    const third = await openStream(`${byAddress.url}/?stream=a`);
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body).message).toContain('at most 2 open streams per client');

    const alice = await openStream(`${byKey.url}/?stream=a`, { 'x-client': 'alice' });
    const bob = await openStream(`${byKey.url}/?stream=a`, { 'x-client': 'bob' });
    cleanups.push(
      () => alice.close(),
      () => bob.close(),
    );
    expect([alice.status, bob.status]).toEqual([200, 200]);
    expect((await openStream(`${byKey.url}/?stream=a`, { 'x-client': 'alice' })).status).toBe(429);
    alice.close();
    await waitUntil(() => hub.stats().connections === 3);
    const again = await openStream(`${byKey.url}/?stream=a`, { 'x-client': 'alice' });
    cleanups.push(() => again.close());
    expect(again.status).toBe(200);
  });

  it('cuts off connections that are behind once the handler total passes maxTotalUnsentBytes, each far under its own bound', async () => {
    const hub = new EventManager<Events>({ maxEventBytes: 40 * 1024 });
    const server = await startServer(
      createSseHandler(hub, { maxUnsentBytes: 8 * 1024 * 1024, maxTotalUnsentBytes: 2 * 1024 * 1024, maxConnectionsPerClient: 10 }),
    );
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const reader = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => reader.close());
    const stalled = [0, 1, 2, 3].map(() => stalledClient(server.port, '/?stream=a'));
    cleanups.push(() => stalled.forEach((s) => s.socket.destroy()));
    await waitUntil(() => hub.stats().connections === 5);
    let published = 0;
    let atFirstDrop = 0;
    // One stalled client alone is cut off only past 8 MiB unsent (256 events of 32 KiB, plus what the
    // kernel buffers); four of them pass the 2 MiB total long before.
    while (hub.stats().dropped < 4 && published < 600) {
      await hub.publish('a', 'note', `${published++}:${'z'.repeat(32 * 1024)}`);
      if (atFirstDrop === 0 && hub.stats().dropped > 0) atFirstDrop = published;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(atFirstDrop).toBeGreaterThan(0);
    expect(atFirstDrop).toBeLessThan(256);
    await reader.waitFor((c) => c.events.length === published, 10_000, 'the reading client to get every event');
    // A paused socket never reads the reset; reading drains what was sent, then sees it.
    for (const s of stalled) s.socket.resume();
    await waitUntil(() => stalled.filter((s) => s.closed).length === hub.stats().dropped, 5000, 'the cut-off sockets to close');
  });
});

describe('3. a client that leaves during an async authorize leaves nothing behind', () => {
  it.each(['node', 'fetch'] as const)('%s adapter over HTTP/1.1', async (kind) => {
    const hub = new EventManager<Events>();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let asked = 0;
    const authorize = async () => {
      asked++;
      if (asked === 1) await gate;
      return { id: 'p', streams: '*' as const };
    };
    const server =
      kind === 'node'
        ? await startServer(createSseHandler(hub, { authorize, maxConnectionsPerPrincipal: 1 }))
        : await (async () => {
            const { createAdaptorServer } = await import('@hono/node-server');
            const { listen } = await import('../support/helpers.js');
            return listen(
              createAdaptorServer({ fetch: createFetchHandler(hub, { authorize, maxConnectionsPerPrincipal: 1 }) }) as http.Server,
            );
          })();
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /events?stream=a HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(() => asked === 1);
    socket.destroy();
    await sleep(50);
    release();
    await sleep(100);
    expect(hub.stats().connections).toBe(0);
    const next = await openStream(`${server.url}/events?stream=a`);
    cleanups.push(() => next.close());
    expect(next.status).toBe(200);
  });
});

describe('review findings', () => {
  it('paces a large history to clients that do not read, instead of buffering every replay whole, and idle clients on quiet streams lock nobody out', async () => {
    const streams = Array.from({ length: 50 }, (_, i) => `s${i}`);
    const hub = new EventManager<Events>({ historyBytes: 1024 * 1024, historyTotalBytes: 128 * 1024 * 1024, replay: 10 });
    const server = await startServer(createSseHandler(hub, { maxTotalUnsentBytes: 8 * 1024 * 1024, maxStreamsPerConnection: 50 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const payload = 'h'.repeat(50 * 1024);
    for (const stream of streams) for (let n = 0; n < 10; n++) await hub.publish(stream, 'note', `${n}:${payload}`);
    const rssBefore = process.memoryUsage().rss;
    const path = `/?${streams.map((s) => `stream=${s}`).join('&')}`;
    // Each replay is 25 MB, and none of these clients reads: before, each was buffered whole in the
    // process (200 MB for eight). Now what the socket does not take waits as references to the
    // history's frames, and it does not count against the 8 MiB total: it is not held for them.
    const stalled = Array.from({ length: 8 }, () => stalledClient(server.port, path));
    cleanups.push(() => stalled.forEach((s) => s.socket.destroy()));
    await waitUntil(() => hub.stats().connections === 8, 5000, 'eight stalled connections');
    await sleep(100);
    const grown = (process.memoryUsage().rss - rssBefore) / (1024 * 1024);
    expect(grown).toBeLessThan(100);
    // Nobody else is locked out by them.
    const other = await openStream(`${server.url}/?stream=other`);
    cleanups.push(() => other.close());
    expect(other.status).toBe(200);
    other.close();

    // Once they are gone, a client that reads gets its whole history, paced, then live events.
    for (const s of stalled) s.socket.destroy();
    await waitUntil(() => hub.stats().connections === 0);
    const reader = await openStream(`${server.url}${path}`);
    cleanups.push(() => reader.close());
    expect(reader.status).toBe(200);
    await reader.waitFor((c) => c.events.length === 500, 10_000, 'the 25 MB history');
    const live = await hub.publish('s0', 'note', 'live');
    await reader.waitFor((c) => c.events.length === 501);
    expect(reader.events.at(-1)).toEqual({ event: 'note', id: live.id, data: 'live' });
  });

  it('ends a connection cleanly in the middle of its history without copying the rest into the socket; the client resumes from its last event', async () => {
    const hub = new EventManager<Events>({ historyBytes: 16 * 1024 * 1024, historyTotalBytes: 32 * 1024 * 1024, replay: 200 });
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    // 12 MB of history: more than loopback's socket buffers take from a client that does not read.
    for (let n = 0; n < 200; n++) await hub.publish('a', 'note', `${n}:${'r'.repeat(60_000)}`);
    const stalled = stalledClient(server.port, '/?stream=a');
    cleanups.push(() => stalled.socket.destroy());
    await waitUntil(() => hub.stats().connections === 1);
    await sleep(50);
    const heapBefore = process.memoryUsage().heapUsed;
    await hub.close();
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(512 * 1024);
    // What it got ends on a whole event, and the response ended: it resumes from there.
    let text = '';
    stalled.socket.setEncoding('latin1');
    stalled.socket.on('data', (chunk: string) => (text += chunk));
    stalled.socket.resume();
    await waitUntil(() => text.endsWith('0\r\n\r\n'), 5000, 'the end of the response');
    const ids = [...text.matchAll(/id: (\S+)\n/g)].length;
    expect(ids).toBeGreaterThan(0);
    expect(ids).toBeLessThan(200);
  });

  it('stops calling onEvent once the subscriber closes itself in the middle of its history', async () => {
    const hub = new EventManager<Events>({ onError: () => {} });
    cleanups.push(() => hub.close());
    for (let n = 0; n < 5; n++) await hub.publish('a', 'tick', { n });
    const calls: unknown[] = [];
    const subscription = hub.subscribe({
      streams: ['a'],
      onEvent: (delivery) => {
        calls.push(delivery.event.data);
        subscription.close();
      },
    });
    await subscription.ready;
    expect(calls).toEqual([{ n: 0 }]);
    const throwing = hub.subscribe({
      streams: ['a'],
      onEvent: () => {
        throw new Error('bad subscriber');
      },
    });
    await throwing.ready;
    expect(hub.stats().hookErrors).toBe(1);
  });

  it.each([
    ['streams as one string', { id: 'u', streams: 'agent-1' }],
    ['an id that is not a string', { id: { user: 1 }, streams: '*' }],
    ['an empty id', { id: '', streams: '*' }],
    ['streams with a non-string', { id: 'u', streams: ['a', 7] }],
  ])('answers a principal with %s with 500 and reports it', async (_what, principal) => {
    const hub = new EventManager<Events>();
    const errors: unknown[] = [];
    const server = await startServer(
      createSseHandler(hub, { authorize: () => principal as never, onError: (error) => errors.push(error) }),
    );
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=agent-1`);
    expect(client.status).toBe(500);
    expect(errors).toEqual([expect.any(TypeError)]);
    expect(hub.stats().connections).toBe(0);
  });
});
