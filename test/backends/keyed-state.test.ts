/**
 * The keyed-event contract, checked on both backends through the Backend
 * interface the hub uses: random publishes (keyed and not, on two streams)
 * against a model that keeps every event, then reads as a fresh subscriber
 * and as a resume from every position.
 *
 *  - A fresh read is the last `recent` events of each stream plus the latest
 *    event of every key, in sequence order, once each.
 *  - A resume from A is exact (every later event) while the tail holds A.
 *  - When the tail was trimmed past A but every lost event was keyed and
 *    superseded, the resume is the tail after A plus the latest event of
 *    every key updated after A: no resync. An unkeyed loss means resync.
 *  - Nothing older than A, nothing twice, nothing out of order, every
 *    unkeyed event after A, and the latest value of every key touched after A.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../../src/backends/memory/index.js';
import type { Backend, BackendContext, StoredEvent } from '../../src/core/backend.js';
import { RedisBackend } from '../../src/backends/redis/index.js';
import { sleep } from '../support/helpers.js';
import { BACKENDS, redisBackend, sharedClient } from '../support/redis.js';

interface Published {
  seq: number;
  stream: string;
  key: string | undefined;
  n: number;
}

const context: BackendContext = {
  deliver: () => {},
  hasSubscribers: () => false,
  wants: () => false,
  subscribedStreams: () => [],
  interrupt: () => {},
};

const opened: Backend[] = [];
afterEach(async () => {
  for (const backend of opened.splice(0)) await backend.close();
});

type Bounds = { historySize: number; maxKeysPerStream: number; fanoutSize?: number };
type Factory = (bounds: Bounds) => Promise<Backend>;

const FACTORIES: { name: string; make: Factory; runs: number }[] = [
  {
    name: 'memory',
    runs: 300,
    make: async ({ historySize, maxKeysPerStream }) =>
      new MemoryBackend({ maxEventsPerStream: historySize, maxKeysPerStream, maxBytesPerStream: 16 * 1024 * 1024 }),
  },
  ...(BACKENDS.some((backend) => backend.name === 'redis')
    ? [
        {
          name: 'redis',
          runs: 100,
          make: (async ({ historySize, maxKeysPerStream, fanoutSize }) =>
            redisBackend({ historySize }, { maxKeysPerStream, ...(fanoutSize ? { fanoutSize } : {}) })) as Factory,
        },
      ]
    : []),
];

async function open(make: Factory, bounds: Bounds): Promise<Backend> {
  const backend = await make(bounds);
  await backend.open(context);
  opened.push(backend);
  return backend;
}

async function publish(backend: Backend, stream: string, n: number, key?: string): Promise<StoredEvent> {
  const body = `event: tick\ndata: ${JSON.stringify({ n })}\n`;
  return backend.append({ stream, type: 'tick', data: { n }, timestamp: new Date().toISOString(), body, key });
}

const ops = fc.array(
  fc.record({ stream: fc.constantFrom('a', 'b'), key: fc.option(fc.constantFrom('k1', 'k2', 'k3', 'k4'), { nil: undefined, freq: 2 }) }),
  { minLength: 1, maxLength: 30 },
);

describe.each(FACTORIES)('keyed state on $name', ({ make, runs }) => {
  it('fresh reads and resumes from every position keep the contract (property)', async () => {
    await fc.assert(
      fc.asyncProperty(ops, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 4 }), async (sequence, historySize, recent) => {
        const backend = await open(make, { historySize, maxKeysPerStream: 100 });
        const log: Published[] = [];
        for (const [n, op] of sequence.entries()) {
          const stored = await publish(backend, op.stream, n, op.key);
          expect(stored.event.key).toBe(op.key);
          log.push({ seq: stored.seq, stream: op.stream, key: op.key, n });
        }
        const streams = ['a', 'b'];
        const tailOf = (stream: string) => log.filter((e) => e.stream === stream).slice(-historySize);
        const latest = new Map<string, Published>();
        for (const e of log) if (e.key) latest.set(`${e.stream}\n${e.key}`, e);

        // Fresh: the last `recent` of each stream's tail, and every key's latest.
        const fresh = await backend.read({ streams, after: null, recent });
        const expected = new Set<Published>([...latest.values()]);
        if (recent > 0) for (const stream of streams) for (const e of tailOf(stream).slice(-recent)) expected.add(e);
        expect(fresh.resync).toBeUndefined();
        expect(fresh.events.map((e) => e.seq)).toEqual([...expected].map((e) => e.seq).sort((x, y) => x - y));

        const epoch = (fresh.position as { epoch: string }).epoch;
        for (const from of [0, ...log.map((e) => e.seq)]) {
          const result = await backend.read({ streams, after: { epoch, seq: from }, recent });
          const later = log.filter((e) => e.seq > from);
          const lost = later.filter((e) => !tailOf(e.stream).includes(e));
          // Lost keyed events are superseded by construction (the latest of a key is always kept: maxKeys is large).
          const mustResync = lost.some((e) => e.key === undefined);
          if (mustResync) {
            expect(result.resync, `resume from ${from}`).toBe('expired');
            continue;
          }
          expect(result.resync, `resume from ${from}`).toBeUndefined();
          const got = result.events.map((e) => e.seq);
          const want = later.filter((e) => tailOf(e.stream).includes(e) || latest.get(`${e.stream}\n${e.key}`) === e).map((e) => e.seq);
          expect(got, `resume from ${from}`).toEqual(want);
          if (lost.length === 0) expect(got).toEqual(later.map((e) => e.seq));
        }

        // Every stream ('*'): Redis may answer from its fan-out stream (everything later) or from the
        // streams' own histories (as above); either way the contract holds.
        for (const from of [0, ...log.map((e) => e.seq)]) {
          const result = await backend.read({ streams: '*', after: { epoch, seq: from }, recent });
          const later = log.filter((e) => e.seq > from);
          const lost = later.filter((e) => !tailOf(e.stream).includes(e));
          if (result.resync) {
            expect(
              lost.some((e) => e.key === undefined),
              `* resume from ${from}`,
            ).toBe(true);
            continue;
          }
          const got = result.events.map((e) => e.seq);
          expect(got).toEqual([...new Set(got)].sort((x, y) => x - y));
          const laterSeqs = new Set(later.map((e) => e.seq));
          expect(got.every((seq) => laterSeqs.has(seq))).toBe(true);
          for (const e of later) {
            if (tailOf(e.stream).includes(e) || latest.get(`${e.stream}\n${e.key}`) === e)
              expect(got, `* resume from ${from}`).toContain(e.seq);
          }
        }
      }),
      { numRuns: runs },
    );
  });

  it('drops the least recently updated key past maxKeysPerStream, and a resume across it resyncs', async () => {
    const backend = await open(make, { historySize: 2, maxKeysPerStream: 2 });
    const k1 = await publish(backend, 'a', 0, 'k1');
    const k2 = await publish(backend, 'a', 1, 'k2');
    await publish(backend, 'a', 2, 'k1'); // k1 is now the most recently updated
    const k3 = await publish(backend, 'a', 3, 'k3'); // k2 goes
    await publish(backend, 'a', 4);
    await publish(backend, 'a', 5);
    const fresh = await backend.read({ streams: ['a'], after: null, recent: 0 });
    expect(fresh.events.map((e) => [e.event.key, (e.event.data as { n: number }).n])).toEqual([
      ['k1', 2],
      ['k3', 3],
    ]);
    const epoch = k1.event.id.split('.')[0] as string;
    // A resume from before k2's event cannot get its latest value any more.
    expect((await backend.read({ streams: ['a'], after: { epoch, seq: k1.seq }, recent: 0 })).resync).toBe('expired');
    // From after it, every lost event is superseded: k3 comes from the state, 4 and 5 from the tail.
    const resumed = await backend.read({ streams: ['a'], after: { epoch, seq: k2.seq }, recent: 0 });
    expect(resumed.resync).toBeUndefined();
    expect(resumed.events.map((e) => (e.event.data as { n: number }).n)).toEqual([2, 3, 4, 5]);
    expect(resumed.events.map((e) => e.seq)).toContain(k3.seq);
    const stats = backend.stats();
    if ('evictedKeys' in stats) expect(stats).toMatchObject({ evictedKeys: 1, retainedKeys: 2 });
  });

  it("resumes every stream (*) past a trimmed fan-out from the streams' tails and keyed state", async () => {
    const backend = await open(make, { historySize: 3, maxKeysPerStream: 10, fanoutSize: 5 });
    const from = await publish(backend, 'a', -1);
    for (let n = 0; n < 600; n++) await publish(backend, n % 2 ? 'a' : 'b', n, `k${n % 4}`);
    const epoch = from.event.id.split('.')[0] as string;
    const resumed = await backend.read({ streams: '*', after: { epoch, seq: from.seq }, recent: 0 });
    expect(resumed.resync).toBeUndefined();
    // Each stream's tail (the last 3) holds the latest of its two keys.
    expect(resumed.events.map((e) => (e.event.data as { n: number }).n)).toEqual([594, 595, 596, 597, 598, 599]);
    // From before an unkeyed event that is gone from every history: resync.
    expect((await backend.read({ streams: '*', after: { epoch, seq: from.seq - 1 }, recent: 0 })).resync).toBe('expired');
  });

  // Review findings, each a test.
  it('drops a key whose latest event the tail still holds without resyncing a resume the tail covers', async () => {
    const backend = await open(make, { historySize: 100, maxKeysPerStream: 1 });
    const first = await publish(backend, 'a', 0);
    await publish(backend, 'a', 1, 'k1');
    await publish(backend, 'a', 2, 'k2'); // k1 goes; the tail still holds everything
    const epoch = first.event.id.split('.')[0] as string;
    const resumed = await backend.read({ streams: ['a'], after: { epoch, seq: first.seq }, recent: 10 });
    expect(resumed.resync).toBeUndefined();
    expect(resumed.events.map((e) => (e.event.data as { n: number }).n)).toEqual([1, 2]);
  });

  it("answers since on every stream ('*') past a trimmed fan-out from the streams' tails and state, without resync", async () => {
    const backend = await open(make, { historySize: 3, maxKeysPerStream: 10, fanoutSize: 5 });
    const since = new Date(Date.now() - 1000).toISOString();
    for (let n = 0; n < 600; n++) await publish(backend, n % 2 ? 'a' : 'b', n, `k${n % 4}`);
    const named = await backend.read({ streams: ['a', 'b'], after: null, recent: 0, since });
    const all = await backend.read({ streams: '*', after: null, recent: 0, since });
    expect(named.resync).toBeUndefined();
    expect(all.resync).toBeUndefined();
    expect(all.events.map((e) => e.seq)).toEqual(named.events.map((e) => e.seq));
    expect(all.events.map((e) => (e.event.data as { n: number }).n)).toEqual([594, 595, 596, 597, 598, 599]);
  });

  it('reads a stream with more keys than Lua can unpack at once (9,000)', { timeout: 60_000 }, async () => {
    const backend = await open(make, { historySize: 5, maxKeysPerStream: 9_000, fanoutSize: 5 });
    const first = await publish(backend, 'a', -1, 'first');
    for (let n = 0; n < 9_000; n += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, i) => publish(backend, 'a', n + i, `key-${n + i}`)));
    }
    const epoch = first.event.id.split('.')[0] as string;
    const fresh = await backend.read({ streams: ['a'], after: null, recent: 5 });
    expect(fresh.events).toHaveLength(9_000);
    const resumed = await backend.read({ streams: ['a'], after: { epoch, seq: first.seq }, recent: 5 });
    expect(resumed.resync).toBeUndefined();
    expect(resumed.events).toHaveLength(9_000);
    const all = await backend.read({ streams: '*', after: { epoch, seq: first.seq }, recent: 5 });
    expect(all.resync).toBeUndefined();
    expect(all.events).toHaveLength(9_000);
  });

  it('reads every stream (*) with the keyed state of each', async () => {
    const backend = await open(make, { historySize: 1, maxKeysPerStream: 10 });
    await publish(backend, 'a', 0, 'status');
    await publish(backend, 'b', 1, 'status');
    await publish(backend, 'a', 2);
    await publish(backend, 'b', 3);
    await publish(backend, 'a', 4);
    const fresh = await backend.read({ streams: '*', after: null, recent: 1 });
    expect(fresh.events.map((e) => (e.event.data as { n: number }).n)).toEqual([0, 1, 4]);
  });
});

describe.skipIf(!BACKENDS.some((backend) => backend.name === 'redis'))('keyed state on Redis: watermarks from older versions', () => {
  it('resyncs a resume across a dropped key whose only value was trimmed, whatever form the trim watermark has', async () => {
    for (const rewrite of [false, true]) {
      const backend = redisBackend({ historySize: 2 }, { maxKeysPerStream: 2 });
      await backend.open(context);
      opened.push(backend);
      const first = await publish(backend, 'a', 0);
      await publish(backend, 'a', 1, 'k1');
      await publish(backend, 'a', 2, 'k2');
      await publish(backend, 'a', 3, 'k2');
      const trimKey = `{${backend.prefix}}:trim`;
      const redis = sharedClient();
      // A two-field value ("<seq>|<at>"), as versions before keyed events wrote (review finding).
      if (rewrite) await redis.hset(trimKey, 'a', ((await redis.hget(trimKey, 'a')) as string).split('|').slice(0, 2).join('|'));
      await publish(backend, 'a', 4, 'k3'); // k1 goes; its only value (seq 2) was trimmed
      const epoch = first.event.id.split('.')[0] as string;
      const resumed = await backend.read({ streams: ['a'], after: { epoch, seq: first.seq }, recent: 0 });
      expect(resumed.resync, rewrite ? 'old form' : 'new form').toBe('expired');
    }
  });
});

describe.each(BACKENDS)('a stream with no history on $name', (backend) => {
  it("is charged only with its own drops, not with other streams' (review finding)", async () => {
    const hub = backend.hub<{ tick: { n: number } }>({ maxStreams: 2, replay: 0 });
    try {
      const ids: string[] = [];
      for (const [n, stream] of ['a', 'x', 'y', 'z'].entries()) ids.push((await hub.publish(stream, 'tick', { n })).id);
      await hub.backend.flush?.();
      // a and then x went past maxStreams: x held seq 2.
      const resumeTypes = async (streams: string[], lastEventId: string) => {
        const types: string[] = [];
        const subscription = hub.subscribe({ streams, lastEventId, onEvent: (delivery) => types.push(delivery.event.type) });
        await subscription.ready;
        subscription.close();
        return types;
      };
      expect(await resumeTypes(['never-published'], ids[0] as string)).toEqual([]);
      expect(await resumeTypes(['x'], ids[0] as string)).toEqual(['resync']);
      expect(await resumeTypes(['x'], ids[1] as string)).toEqual([]);
      // Published again, x remembers what it lost before.
      const again = await hub.publish('x', 'tick', { n: 9 });
      // On Redis the event reaches this instance's subscribers through the fan-out, after publish resolved:
      // let it pass first, so the next subscription does not get it live.
      await hub.backend.flush?.();
      expect(await resumeTypes(['x'], ids[0] as string)).toEqual(['resync']);
      expect(await resumeTypes(['x'], ids[1] as string)).toEqual(['tick']);
      expect(again.id).toBeDefined();
      // Past maxStreams remembered drops, the oldest fold into one watermark every unrecorded stream is charged with.
      for (let n = 0; n < 6; n++) await hub.publish(`s${n}`, 'tick', { n });
      expect(await resumeTypes(['never-published'], ids[0] as string)).toEqual(['resync']);
      if (hub.backend instanceof RedisBackend) {
        const redis = sharedClient();
        expect(await redis.zcard(`{${hub.backend.prefix}}:dropped`)).toBeLessThanOrEqual(2);
        expect(await redis.hlen(`{${hub.backend.prefix}}:trim`)).toBeLessThanOrEqual(4);
      }
    } finally {
      await hub.close();
    }
  });
});

describe.skipIf(!BACKENDS.some((backend) => backend.name === 'redis'))('Redis drop records at their edges (review findings)', () => {
  async function openRedis(options: { historySize: number; maxStreams: number }) {
    const backend = redisBackend({ historySize: options.historySize, maxStreams: options.maxStreams, streamIdleTtlMs: 1 });
    await backend.open(context);
    opened.push(backend);
    return { backend, redis: sharedClient(), tag: `{${backend.prefix}}` };
  }

  it('keeps the watermark of a stream that has a history again when its drop record is let go', async () => {
    const { backend, redis, tag } = await openRedis({ historySize: 100, maxStreams: 2 });
    const first = await publish(backend, 'x', 1);
    const second = await publish(backend, 'x', 2);
    await sleep(5);
    await backend.sweep(); // x dropped: its record says it lost seq 2
    // Another path (an older instance) gives x a history again without taking it off the drop list.
    await redis.xadd(
      `${tag}:s:x`,
      `${second.seq + 1}-0`,
      'ts',
      new Date().toISOString(),
      't',
      'tick',
      'k',
      'j',
      'd',
      '{"n":3}',
      'b',
      'event: tick\ndata: {"n":3}\n',
    );
    await redis.zadd(`${tag}:index`, Date.now() + 3_600_000, 'x');
    for (const stream of ['p', 'q']) {
      await publish(backend, stream, 0);
      await sleep(5);
      await backend.sweep(); // p, then q dropped: the drop list overflows and lets x's entry go
    }
    expect(await redis.hget(`${tag}:trim`, 'x')).toMatch(/^2\|/);
    const epoch = first.event.id.split('.')[0] as string;
    expect((await backend.read({ streams: ['x'], after: { epoch, seq: first.seq }, recent: 0 })).resync).toBe('expired');
  });

  it('never lowers what a stream had lost when it is dropped after its history key went some other way', async () => {
    const { backend, redis, tag } = await openRedis({ historySize: 2, maxStreams: 10 });
    const first = await publish(backend, 'x', 1);
    for (let n = 2; n <= 5; n++) await publish(backend, 'x', n);
    await redis.del(`${tag}:s:x`); // what an evicting maxmemory policy would do
    await sleep(5);
    await backend.sweep();
    const epoch = first.event.id.split('.')[0] as string;
    expect((await backend.read({ streams: ['x'], after: { epoch, seq: first.seq }, recent: 0 })).resync).toBe('expired');
  });

  it('charges an absent stream with every drop on a prefix written before drop records existed', async () => {
    const { backend, redis, tag } = await openRedis({ historySize: 100, maxStreams: 10 });
    const first = await publish(backend, 'x', 1);
    await publish(backend, 'x', 2);
    // As an older version left it: x dropped without a record, only the global watermark raised.
    await redis.del(`${tag}:s:x`);
    await redis.zrem(`${tag}:index`, 'x');
    await redis.hdel(`${tag}:trim`, 'x');
    await redis.hset(`${tag}:meta`, 'evictedThrough', 2);
    await redis.hdel(`${tag}:meta`, 'forgottenThrough', 'forgottenAt');
    const epoch = first.event.id.split('.')[0] as string;
    expect((await backend.read({ streams: ['x'], after: { epoch, seq: first.seq }, recent: 0 })).resync).toBe('expired');
  });
});
