import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import { EventManager } from '../../src/index.js';
import { createClient } from '../../src/client/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import type { ConnectionCloseReason } from '../../src/http/connection.js';
import { isGone, SseGate } from '../../src/http/gate.js';
import { answer, nodeRequestView, openNodeStream } from '../../src/http/node-stream.js';
import { ADAPTERS } from '../support/adapters.js';
import { cleanupAfterEach, listen, openStream, sleep, waitUntil } from '../support/helpers.js';
import { BACKENDS } from '../support/redis.js';
import { watchTimers } from '../support/timers.js';
import { FASTIFY, FETCH, H2, HTTPS, NODE, openSse, type SseClient, type TransportAdapter } from '../support/transports.js';

/**
 * maxConnectionAgeMs: a connection that reaches its age ends the way a clean
 * end does (what was accepted is sent, then the response ends), and every
 * kind of client comes back with its Last-Event-ID and misses nothing.
 * Asserted on real sockets for every adapter, with the browser-compatible
 * `eventsource` package and with ssecast/client; over HTTP/2 and HTTPS with
 * gzip; plus the defaults, the bad values, the history hand-over and the
 * timers.
 */

type Events = { tick: { n: number }; rare: { n: number }; noise: { i: number } };

const cleanups = cleanupAfterEach();

/** What the server saw of one client: a request per connection, with the Last-Event-ID it carried. */
interface Requests {
  lastEventIds: (string | undefined)[];
}

/** Publishes `total` ticks on stream `a`, one every `everyMs`, and resolves with their ids. */
async function publishSteadily(hub: EventManager<Events>, total: number, everyMs: number): Promise<string[]> {
  const ids: string[] = [];
  const start = Date.now();
  for (let n = 0; n < total; n++) {
    ids.push((await hub.publish('a', 'tick', { n })).id);
    // Paced against the clock, so that a slow tick does not stretch the whole run.
    const due = start + (n + 1) * everyMs;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }
  return ids;
}

function range(total: number): number[] {
  return Array.from({ length: total }, (_, n) => n);
}

describe.each(ADAPTERS)('rotation on $name', (adapter) => {
  it('hands eventsource and ssecast/client every event exactly once, in order, over several connections each', async () => {
    const hub = new EventManager<Events>();
    const seen: Record<string, Requests> = { eventsource: { lastEventIds: [] }, client: { lastEventIds: [] } };
    const server = await adapter.mount(hub, {
      maxConnectionAgeMs: { min: 150, max: 300 },
      retryMs: 10,
      // One request per connection reaches the streams hook: it counts them per client.
      streams: (req) => {
        seen[req.url.searchParams.get('who') as string]?.lastEventIds.push(req.header('last-event-id') || undefined);
        return ['a'];
      },
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );

    const viaEventSource: { n: number; id: string }[] = [];
    const source = new EventSource(`${server.url}/events?who=eventsource`);
    cleanups.push(() => source.close());
    source.addEventListener('tick', (message) => viaEventSource.push({ n: JSON.parse(message.data).n, id: message.lastEventId }));

    const viaClient: { n: number; id: string | undefined }[] = [];
    const client = createClient<Events>(`${server.url}/events?who=client`, { backoff: { initialMs: 20, maxMs: 100 } });
    cleanups.push(() => client.close());
    client.on('tick', (event) => viaClient.push({ n: event.data.n, id: event.id }));

    await waitUntil(() => hub.stats().connections === 2, 5000, 'both clients to connect');
    const total = 300;
    const ids = await publishSteadily(hub, total, 7);
    await waitUntil(
      () => viaEventSource.length >= total && viaClient.length >= total,
      10_000,
      `every event (eventsource ${viaEventSource.length}, ssecast/client ${viaClient.length} of ${total})`,
    );
    await sleep(50);

    expect(viaEventSource.map((e) => e.n)).toEqual(range(total));
    expect(viaEventSource.map((e) => e.id)).toEqual(ids);
    expect(viaClient.map((e) => e.n)).toEqual(range(total));
    expect(client.lastEventId).toBe(ids.at(-1));
    for (const who of ['eventsource', 'client']) {
      const { lastEventIds } = seen[who] as Requests;
      // About 2 s at 150-300 ms a connection: several connections, each after the first resuming.
      expect(lastEventIds.length, who).toBeGreaterThanOrEqual(4);
      expect(lastEventIds[0], who).toBeUndefined();
      for (const id of lastEventIds.slice(1)) expect(ids.includes(id as string), `${who} resumed from ${id}`).toBe(true);
    }
    expect(hub.stats().resyncs).toBe(0);
    expect(hub.stats().dropped).toBe(0);
  });

  it('rotates nothing by default: a connection outlives what a tiny age would allow', async () => {
    const hub = new EventManager<Events>();
    let requests = 0;
    const server = await adapter.mount(hub, {
      retryMs: 10,
      streams: () => {
        requests++;
        return ['a'];
      },
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const stream = await openStream(`${server.url}/events`);
    cleanups.push(() => stream.close());
    let ended = false;
    void stream.ended.then(() => (ended = true));
    await waitUntil(() => hub.stats().connections === 1);
    await sleep(400);
    const event = await hub.publish('a', 'tick', { n: 1 });
    await stream.waitFor((c) => c.events.length === 1);
    expect(stream.events[0]?.id).toBe(event.id);
    expect(ended).toBe(false);
    expect(requests).toBe(1);
    expect(hub.stats().connections).toBe(1);
  });
});

/** Follows a stream over a transport by hand, as EventSource does: each clean end is followed by a resume. */
async function follow(
  served: Awaited<ReturnType<TransportAdapter['mount']>>,
  total: number,
  gzip: boolean,
): Promise<{ connections: SseClient[]; received: number[] }> {
  const connections: SseClient[] = [];
  const received: number[] = [];
  let last: string | undefined;
  while (received.length < total) {
    const headers: Record<string, string> = gzip ? { 'accept-encoding': 'gzip' } : {};
    if (last) headers['last-event-id'] = last;
    const client = await openSse(served, '/events?stream=a', { headers });
    cleanups.push(() => client.close());
    connections.push(client);
    if (connections.length > 100) throw new Error('more than 100 connections for the run');
    expect(client.status).toBe(200);
    await client.ended;
    for (const event of client.events) {
      received.push((JSON.parse(event.data) as { n: number }).n);
      last = event.id;
    }
  }
  return { connections, received };
}

describe.each([
  { adapter: NODE, transport: H2 },
  { adapter: FASTIFY, transport: H2 },
  { adapter: FETCH, transport: H2 },
  { adapter: NODE, transport: HTTPS },
])('rotation on $adapter.name over $transport.name with gzip', ({ adapter, transport }) => {
  it('ends each stream cleanly (a complete gzip member, no reset) and resumes without a gap', async () => {
    const hub = new EventManager<Events>();
    const served = await adapter.mount(transport, hub, { maxConnectionAgeMs: { min: 100, max: 200 }, retryMs: 10, compress: true });
    cleanups.push(
      () => served.close(),
      () => hub.close(),
    );
    const total = 120;
    const following = follow(served, total, true);
    await sleep(50);
    await publishSteadily(hub, total, 8);
    const { connections, received } = await following;
    expect(received).toEqual(range(total));
    expect(connections.length).toBeGreaterThanOrEqual(3);
    for (const client of connections) {
      expect(client.gzipped).toBe(true);
      expect(client.endedCleanly(), client.describeEnd()).toBe(true);
    }
  });
});

describe('maxConnectionAgeMs', () => {
  it('rejects what is not a positive integer of milliseconds or an ordered { min, max } of them', () => {
    const hub = new EventManager<Events>();
    cleanups.push(() => hub.close());
    const bad: [unknown, string][] = [
      [0, 'maxConnectionAgeMs must be a positive integer, got 0'],
      [-1, 'maxConnectionAgeMs must be a positive integer, got -1'],
      [1.5, 'maxConnectionAgeMs must be a positive integer, got 1.5'],
      [Number.NaN, 'maxConnectionAgeMs must be a positive integer, got NaN'],
      [Infinity, 'maxConnectionAgeMs must be a positive integer, got Infinity'],
      ['60000', 'maxConnectionAgeMs must be a number of milliseconds or { min, max }, got 60000'],
      [null, 'maxConnectionAgeMs must be a number of milliseconds or { min, max }, got null'],
      [true, 'maxConnectionAgeMs must be a number of milliseconds or { min, max }, got true'],
      [{ min: 0, max: 100 }, 'maxConnectionAgeMs.min must be a positive integer, got 0'],
      [{ min: 100 }, 'maxConnectionAgeMs.max must be a positive integer, got undefined'],
      [{ min: 10, max: 2.5 }, 'maxConnectionAgeMs.max must be a positive integer, got 2.5'],
      [{ min: 300, max: 150 }, 'maxConnectionAgeMs.min (300) must not exceed maxConnectionAgeMs.max (150)'],
    ];
    for (const [value, message] of bad) {
      const options = { maxConnectionAgeMs: value as number };
      expect(() => createSseHandler(hub, options), String(value)).toThrow(TypeError);
      expect(() => createSseHandler(hub, options), String(value)).toThrow(message);
    }
    expect(() => createSseHandler(hub, { maxConnectionAgeMs: 1 })).not.toThrow();
    expect(() => createSseHandler(hub, { maxConnectionAgeMs: { min: 5000, max: 5000 } })).not.toThrow();
    expect(() => createSseHandler(hub, { maxConnectionAgeMs: undefined })).not.toThrow();
  });

  it('ends a connection still sending its history once that history is written, not in the middle of it', async () => {
    const hub = new EventManager<Events>({ historySize: 3000, historyBytes: 8 * 1024 * 1024 });
    const served = await NODE.mount(H2, hub, { maxConnectionAgeMs: 50, retryMs: 10 });
    cleanups.push(
      () => served.close(),
      () => hub.close(),
    );
    const pad = 'x'.repeat(1000);
    const first = await hub.publish('a', 'tick', { n: 0 });
    for (let n = 1; n < 2500; n++) await hub.publish('a', 'tick', { n, pad } as unknown as { n: number });
    // About 2.5 MB to resume, past maxUnsentBytes (1 MiB): a clean end in the middle would drop the rest.
    const client = await openSse(served, '/events?stream=a', { headers: { 'last-event-id': first.id }, paused: true });
    cleanups.push(() => client.close());
    await sleep(300);
    expect(client.events.length).toBe(0);
    client.resume();
    await client.ended;
    expect(client.endedCleanly(), client.describeEnd()).toBe(true);
    expect(client.events.map((e) => (JSON.parse(e.data) as { n: number }).n)).toEqual(range(2500).slice(1));
  });

  it('reports the end as rotated to the connection’s onClose, distinct from a clean close', async () => {
    const hub = new EventManager<Events>();
    const gate = new SseGate<http.IncomingMessage, Events>(hub, { maxConnectionAgeMs: 40 });
    const reasons: ConnectionCloseReason[] = [];
    const server = http.createServer((req, res) => {
      const view = nodeRequestView(req, res, req.url);
      void gate.admit(req, view).then((outcome) => {
        if (isGone(outcome)) return;
        if (!outcome.ok) return answer(res, outcome);
        openNodeStream(hub, req, res, outcome, null, (reason) => reasons.push(reason));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () => new Promise((resolve) => server.close(resolve)),
      () => server.closeAllConnections(),
      () => hub.close(),
    );
    const stream = await openStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/events?stream=a`);
    cleanups.push(() => stream.close());
    await stream.ended;
    expect(reasons).toEqual(['rotated']);
    // The hub counts it as a clean close: nothing dropped.
    expect(hub.stats().dropped).toBe(0);
  });
});

describe('rotation timers', () => {
  it('creates one per connection, clears it on every close path, and none remain once clients and server are gone', async () => {
    const timers = watchTimers('connection.ts');
    cleanups.push(() => timers.stop());
    const before = process.getActiveResourcesInfo().filter((type) => type !== 'Timeout').length;
    const hub = new EventManager<Events>();
    const server = await ADAPTERS[0]?.mount(hub, { maxConnectionAgeMs: 60_000, retryMs: 10 });
    if (!server) throw new Error('no adapter');
    // Three ways out: the client leaves, the hub closes, and the age passes (a second server, 30 ms).
    const leaving = await openStream(`${server.url}/events?stream=a`);
    const staying = await openStream(`${server.url}/events?stream=a`);
    await waitUntil(() => hub.stats().connections === 2);
    expect(timers.created('armDeadline')).toBe(2);
    expect(timers.live).toBe(2);
    leaving.close();
    await waitUntil(() => hub.stats().connections === 1);
    await waitUntil(() => timers.live === 1, 2000, 'the leaving client’s timer to be cleared');

    const rotating = new EventManager<Events>();
    const quick = await ADAPTERS[0]?.mount(rotating, { maxConnectionAgeMs: 30, retryMs: 10 });
    if (!quick) throw new Error('no adapter');
    const rotated = await openStream(`${quick.url}/events?stream=a`);
    await rotated.ended;
    // At least its own; one more when it fired before Date.now() reached the deadline (libuv arms a
    // timer from the loop's cached time, which can trail the clock), so it armed again for the rest.
    expect(timers.created('armDeadline')).toBeGreaterThanOrEqual(3);
    expect(timers.created('armDeadline')).toBeLessThanOrEqual(5);

    await hub.close();
    await staying.ended;
    await waitUntil(() => timers.live === 0, 2000, 'every connection timer to be fired or cleared');
    staying.close();
    rotated.close();
    await server.close();
    await quick.close();
    await rotating.close();
    // No socket, server or other handle left behind by the streams either.
    await waitUntil(
      () => process.getActiveResourcesInfo().filter((type) => type !== 'Timeout').length <= before,
      2000,
      `handles back to ${before} (now ${process.getActiveResourcesInfo().join(', ')})`,
    );
  });

  it('creates none when the option is off', async () => {
    const timers = watchTimers('connection.ts');
    cleanups.push(() => timers.stop());
    for (const adapter of ADAPTERS) {
      const hub = new EventManager<Events>();
      const server = await adapter.mount(hub, {});
      const stream = await openStream(`${server.url}/events?stream=a`);
      await waitUntil(() => hub.stats().connections === 1);
      await hub.publish('a', 'tick', { n: 1 });
      await stream.waitFor((c) => c.events.length === 1);
      stream.close();
      await server.close();
      await hub.close();
    }
    expect(timers.created('armDeadline')).toBe(0);
  });
});

// Adversarial review findings: a rotated client resumed as a fresh one (it had no id yet) and missed
// what was published while it reconnected; a types filter left its id behind a trimmed history, so
// every rotation resynced and repeated keyed events. The clean end now sends a position marker.
describe.each(ADAPTERS)('rotation sends where the subscription got to, on $name', (adapter) => {
  async function mountCounting(hubOptions: ConstructorParameters<typeof EventManager>[0], handler: Record<string, unknown>) {
    const hub = new EventManager<Events>(hubOptions);
    const lastEventIds: (string | undefined)[] = [];
    const server = await adapter.mount(hub, {
      ...handler,
      streams: (req) => {
        lastEventIds.push(req.header('last-event-id') || undefined);
        return ['a'];
      },
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    return { hub, server, lastEventIds };
  }

  it('gives a client that had no id yet what was published while it reconnected', async () => {
    const { hub, server, lastEventIds } = await mountCounting({ replay: 0 }, { maxConnectionAgeMs: 100, retryMs: 300 });
    const got: number[] = [];
    const source = new EventSource(`${server.url}/events`);
    cleanups.push(() => source.close());
    source.addEventListener('tick', (message) => got.push((JSON.parse(message.data) as { n: number }).n));
    await waitUntil(() => hub.stats().connections === 1);
    await waitUntil(() => hub.stats().connections === 0, 3000, 'the rotation');
    // In the reconnect gap (retry 300 ms).
    for (let n = 0; n < 15; n++) await hub.publish('a', 'tick', { n });
    await waitUntil(() => got.length === 15, 5000, 'the events of the gap');
    expect(got).toEqual(range(15));
    expect(lastEventIds[1]).toMatch(/\.0$/);
    expect(hub.stats().resyncs).toBe(0);
  });

  it('keeps a types filter on a busy stream in step: no resync and nothing twice across rotations', async () => {
    const { hub, server, lastEventIds } = await mountCounting({ historySize: 20 }, { maxConnectionAgeMs: 150, retryMs: 10 });
    const rare: number[] = [];
    const source = new EventSource(`${server.url}/events?types=rare`);
    cleanups.push(() => source.close());
    source.addEventListener('rare', (message) => rare.push((JSON.parse(message.data) as { n: number }).n));
    await waitUntil(() => hub.stats().connections === 1);
    for (let round = 0; round < 4; round++) {
      await hub.publish('a', 'rare', { n: round }, { key: 'status' });
      for (let i = 0; i < 40; i++) {
        await hub.publish('a', 'noise', { i });
        await sleep(5);
      }
    }
    await waitUntil(() => rare.length >= 4, 5000, 'every rare event');
    await sleep(200);
    expect(lastEventIds.length).toBeGreaterThan(2);
    expect(rare).toEqual([0, 1, 2, 3]);
    expect(hub.stats().resyncs).toBe(0);
  });
});

describe('the end grace timer on a fetch body', () => {
  it('is not kept for a closed body, which nothing can tear down later (review finding: 5 s per rotated connection)', async () => {
    const adapter = ADAPTERS.find((candidate) => candidate.name.startsWith('fetch')) as (typeof ADAPTERS)[number];
    const timers = watchTimers('src/http/connection.ts');
    cleanups.push(() => timers.stop());
    const hub = new EventManager<Events>();
    const server = await adapter.mount(hub, { maxConnectionAgeMs: { min: 5, max: 20 }, retryMs: 0 });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = createClient(`${server.url}/events?stream=a`, { backoff: { initialMs: 1, maxMs: 3 } });
    cleanups.push(() => client.close());
    for (let n = 0; n < 30; n++) {
      await hub.publish('a', 'tick', { n });
      await sleep(10);
    }
    client.close();
    await waitUntil(() => hub.stats().connections === 0);
    expect(timers.created('armDeadline')).toBeGreaterThan(3);
    expect(timers.created('finish')).toBe(0);
    await waitUntil(() => timers.live === 0, 2000, 'no timer left');
  });
});

describe.each(BACKENDS)('a rotation before the first publish, on $name', (backend) => {
  it('gives the client a position, so what is published while it reconnects reaches it (review finding: none on an empty Redis prefix)', async () => {
    const hub = backend.hub<Events & { other: { n: number } }>({ replay: 0 });
    const server = await listen(http.createServer(createSseHandler(hub, { maxConnectionAgeMs: 300, retryMs: 10, streams: () => ['a'] })));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const first = await openStream(`${server.url}/events`);
    cleanups.push(() => first.close());
    await sleep(50);
    await hub.publish('b', 'other', { n: 1 }); // the prefix's first event, on a stream this client does not follow
    await first.ended;
    const last = first.events.filter((event) => event.id).at(-1)?.id;
    expect(last).toBeDefined();
    await hub.publish('a', 'tick', { n: 1 }); // between the clean end and the reconnect
    const second = await openStream(`${server.url}/events`, { 'last-event-id': last as string });
    cleanups.push(() => second.close());
    await second.waitFor((c) => c.events.some((event) => event.event === 'tick'), 5000, 'the tick of the gap');
    expect(hub.stats().resyncs).toBe(0);
  });
});
