import { describe, expect, it } from 'vitest';
import { EventManager, MemoryBackend, type ReadQuery, type ReadResult } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, openStream, startServer, waitUntil } from '../support/helpers.js';

/**
 * The writer shares one encoded chunk among the connections that were queued
 * the same frames in a tick, and copies when a connection's frames differ.
 * Whatever the mix of streams and filters, each client must get exactly its
 * own events, in order: checked here on the wire.
 */

type Events = { tick: { n: number }; note: { n: number } };

const cleanups = cleanupAfterEach();

async function setup() {
  const hub = new EventManager<Events>({ replay: 0, historySize: 5000 });
  const server = await startServer(createSseHandler(hub));
  cleanups.push(
    () => server.close(),
    () => hub.close(),
  );
  return { hub, url: (query: string) => `${server.url}/?${query}` };
}

describe('fan-out of one tick to connections with different frames', () => {
  it('gives every client exactly its events when streams and type filters interleave within a tick', async () => {
    const { hub, url } = await setup();
    const queries = [
      'stream=a',
      'stream=a',
      'stream=a&types=tick',
      'stream=a&stream=b',
      'stream=b',
      'stream=a&types=note',
      'stream=a',
      'stream=b&stream=a&types=tick',
    ];
    const clients = [];
    for (const query of queries) {
      const client = await openStream(url(query));
      cleanups.push(() => client.close());
      clients.push(client);
    }
    await waitUntil(() => hub.stats().connections === queries.length);
    const published: { stream: string; type: string; n: number }[] = [];
    // Three ticks of interleaved publishes, each tick published without yielding.
    let n = 0;
    for (let tick = 0; tick < 3; tick++) {
      for (let i = 0; i < 40; i++, n++) {
        const stream = i % 3 === 2 ? 'b' : 'a';
        const type = i % 4 === 1 ? 'note' : 'tick';
        published.push({ stream, type, n });
        await hub.publish(stream, type, { n });
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const expected = queries.map((query) => {
      const params = new URLSearchParams(query);
      const streams = params.getAll('stream');
      const types = params.get('types');
      return published.filter((e) => streams.includes(e.stream) && (!types || e.type === types)).map((e) => `${e.type}:${e.n}`);
    });
    for (const [i, client] of clients.entries()) {
      await client.waitFor((c) => c.events.length >= (expected[i] as string[]).length, 5000, `client ${queries[i]}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const [i, client] of clients.entries()) {
      expect(
        client.events.map((e) => `${e.event}:${JSON.parse(e.data).n}`),
        queries[i],
      ).toEqual(expected[i]);
    }
  });

  it('keeps each client exact across eager flushes (over 64 KiB in one tick) and a client that joins mid-tick', async () => {
    const { hub, url } = await setup();
    const first = await openStream(url('stream=a'));
    const second = await openStream(url('stream=a&types=tick'));
    cleanups.push(
      () => first.close(),
      () => second.close(),
    );
    await waitUntil(() => hub.stats().connections === 2);
    const pad = 'x'.repeat(1000);
    // About 200 KiB in one tick: several eager flushes per connection.
    for (let n = 0; n < 200; n++) await hub.publish('a', n % 5 === 0 ? 'note' : 'tick', { n, pad } as never);
    await first.waitFor((c) => c.events.length === 200, 5000, 'all 200 events');
    await second.waitFor((c) => c.events.length === 160, 5000, 'the 160 ticks');
    expect(first.events.map((e) => JSON.parse(e.data).n)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(second.events.map((e) => JSON.parse(e.data).n)).toEqual(Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 5 !== 0));
  });
});

describe('live events that arrive while history loads', () => {
  // A history read that takes a while, as a Redis round trip does under load.
  class SlowReadBackend extends MemoryBackend {
    override async read(query: ReadQuery): Promise<ReadResult> {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return super.read(query);
    }
  }

  it('holds a burst of more than maxQueue events for an HTTP client, bounded by its unsent bytes, and delivers them in order', async () => {
    const hub = new EventManager<Events>({ backend: new SlowReadBackend({ maxEventsPerStream: 5000 }), replay: 0, maxQueue: 1000 });
    const server = await startServer(createSseHandler(hub));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => hub.stats().connections === 1);
    // 1,500 events (about 90 KB) while the history read is still out: over maxQueue, far under maxUnsentBytes.
    for (let n = 0; n < 1500; n++) await hub.publish('a', 'tick', { n });
    await client.waitFor((c) => c.events.length === 1500, 5000, 'all 1,500 events');
    expect(client.events.map((e) => JSON.parse(e.data).n)).toEqual(Array.from({ length: 1500 }, (_, i) => i));
    expect(hub.stats()).toMatchObject({ dropped: 0, connections: 1 });
  });

  it('still cuts off an HTTP client whose held events pass its unsent-bytes bound, and an iterator past maxQueue', async () => {
    const hub = new EventManager<Events>({
      backend: new SlowReadBackend({ maxEventsPerStream: 5000 }),
      replay: 0,
      maxQueue: 1000,
      maxEventBytes: 16 * 1024,
    });
    const server = await startServer(createSseHandler(hub, { maxUnsentBytes: 32 * 1024 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    const iterating = hub.subscribe({ streams: ['a'] });
    await waitUntil(() => hub.stats().connections === 2);
    for (let n = 0; n < 1500; n++) await hub.publish('a', 'tick', { n });
    await waitUntil(() => hub.stats().dropped === 2, 5000, 'both subscribers to be cut off');
    await client.ended;
    expect(client.events.length).toBe(0);
    await expect(iterating[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'ERR_SLOW_CONSUMER' });
  });
});
