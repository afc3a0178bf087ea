/**
 * Keyed state across two instances sharing one Redis: events published on A
 * reach a late joiner and a resuming client on B with the same contract as
 * on one instance, over real sockets, with an EventSource reconnecting
 * between the instances while A publishes.
 */
import { EventSource } from 'eventsource';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { RedisBackend } from '../../src/backends/redis/index.js';
import { ADAPTERS } from '../support/adapters.js';
import { cleanupAfterEach, openStream, sleep, waitUntil } from '../support/helpers.js';
import { REDIS_URL, sharedClient, uniquePrefix } from '../support/redis.js';

type Events = { tick: { n: number }; status: { v: number; key?: string } };

const cleanups = cleanupAfterEach();
const node = ADAPTERS.find((adapter) => adapter.name.startsWith('node')) as (typeof ADAPTERS)[number];

if (!REDIS_URL) console.warn('\n!!! keyed-instances: no Redis server and no redis-server binary; these tests SKIP\n');

describe.skipIf(!REDIS_URL)('keyed events across two Redis instances', () => {
  async function instances(historySize: number, handler: { retryMs?: number } = {}) {
    const prefix = uniquePrefix();
    const make = () => new EventManager<Events>({ replay: 3, backend: new RedisBackend({ redis: sharedClient(), prefix, historySize }) });
    const a = make();
    const b = make();
    const serverA = await node.mount(a, handler);
    const serverB = await node.mount(b, handler);
    cleanups.push(
      () => serverA.close(),
      () => serverB.close(),
      () => a.close(),
      () => b.close(),
    );
    const drop = () => {
      serverA.dropConnections();
      serverB.dropConnections();
    };
    return { a, b, drop, urlA: `${serverA.url}/events?stream=job`, urlB: `${serverB.url}/events?stream=job` };
  }

  it('gives a late joiner on B the state A published, and resumes on B from an id A gave', async () => {
    const { a, urlA, urlB } = await instances(4);
    await a.publish('job', 'status', { v: 1 }, { key: 'status' });
    const onA = await openStream(urlA);
    cleanups.push(() => onA.close());
    await onA.waitFor((c) => c.events.length === 1);
    const lastOnA = onA.events[0]?.id as string;
    onA.close();
    for (let n = 0; n < 10; n++) await a.publish('job', 'status', { v: n + 2 }, { key: n % 2 ? 'status' : 'progress' });
    await a.publish('job', 'tick', { n: 99 });

    const late = await openStream(urlB);
    cleanups.push(() => late.close());
    await late.waitFor((c) => c.events.length >= 3);
    await sleep(50);
    // The last 3 events, which hold both keys' latest values: nothing older is added.
    expect(late.events.map((e) => e.data)).toEqual(['{"v":10}', '{"v":11}', '{"n":99}']);

    const resumed = await openStream(urlB, { 'last-event-id': lastOnA });
    cleanups.push(() => resumed.close());
    await resumed.waitFor((c) => c.events.length >= 4);
    await sleep(50);
    // Everything A published after the id and trimmed since was keyed and superseded: no resync, the tail.
    expect(resumed.events.map((e) => e.event)).not.toContain('resync');
    expect(resumed.events.map((e) => e.data)).toEqual(['{"v":9}', '{"v":10}', '{"v":11}', '{"n":99}']);
  });

  it('never shows an older value of a key after a newer one, and never resyncs, while an EventSource hops between instances', async () => {
    const { a, drop, urlA, urlB } = await instances(3, { retryMs: 20 });
    const urls = [urlA, urlB];
    let connections = 0;
    const seen: { key: string; v: number; id: string }[] = [];
    const resyncs: string[] = [];
    // Each connection goes to the other instance; EventSource reconnects with its Last-Event-ID when it is dropped.
    const source = new EventSource(urlA, { fetch: (_input, init) => fetch(urls[connections++ % 2] as string, init) });
    cleanups.push(() => source.close());
    source.addEventListener('status', (message) =>
      seen.push({ ...(JSON.parse(message.data) as { key: string; v: number }), id: message.lastEventId }),
    );
    source.addEventListener('resync', (message) => resyncs.push(message.data));
    const keys = ['x', 'y', 'z'];
    const total = 240;
    for (let v = 0; v < total; v++) {
      const key = keys[v % 3] as string;
      await a.publish('job', 'status', { key, v }, { key });
      await sleep(4);
      if (v % 20 === 19) drop();
    }
    // Every key's final value arrives.
    await waitUntil(() => keys.every((key, i) => seen.some((e) => e.key === key && e.v === total - 3 + i)), 10_000, 'final values').catch(
      (error) => {
        throw new Error(
          `${error.message}: ${connections} connections, ${seen.length} events, last ${JSON.stringify(seen.slice(-3))}, resyncs ${resyncs}`,
        );
      },
    );
    expect(connections).toBeGreaterThan(3);
    expect(resyncs).toEqual([]);
    const latest = new Map<string, number>();
    let lastSeq = 0;
    for (const event of seen) {
      expect(event.v, `key ${event.key}`).toBeGreaterThan(latest.get(event.key) ?? -1);
      latest.set(event.key, event.v);
      const seq = Number(event.id.split('.')[1]);
      expect(seq).toBeGreaterThan(lastSeq);
      lastSeq = seq;
    }
  });
});
