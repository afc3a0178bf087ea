import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { EventManager, SsecastError, type Subscription } from '../../src/index.js';
import { RedisBackend } from '../../src/backends/redis/index.js';
import { ISO_TIME } from '../../src/backends/redis/lua.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, openStream, sleep, startServer, waitUntil, type TestServer } from '../support/helpers.js';
import { hasRedisServerBinary, REDIS_URL, redisBackend, sharedClient, startOwnedRedis, uniquePrefix } from '../support/redis.js';

/**
 * What only a shared backend has to get right: several instances, one
 * order; a client moving between instances; Redis going away and coming
 * back (with its data, or without); and the bounds kept in Redis.
 */

type Events = { tick: { n: number } };

const cleanups = cleanupAfterEach();

function seq(id: string): number {
  return Number(id.split('.')[1]);
}

function hubOn(backend: RedisBackend, options: ConstructorParameters<typeof EventManager>[0] = {}): EventManager<Events> {
  const hub = new EventManager<Events>({ ...options, backend });
  cleanups.push(() => hub.close());
  return hub;
}

/** Collects an iterating subscription's events (and how it ended) in the background. */
function collect(subscription: Subscription<Events>) {
  const out = {
    events: [] as { id: string | null; type: string; data: unknown; timestamp: string }[],
    error: undefined as unknown,
    done: false,
  };
  void (async () => {
    try {
      for await (const event of subscription)
        out.events.push({ id: event.id, type: event.type, data: event.data, timestamp: event.timestamp });
    } catch (error) {
      out.error = error;
    }
    out.done = true;
  })();
  return out;
}

/** What a subscription replays from history: everything it yields until it is live, and a moment more. */
async function history(hub: EventManager<Events>, options: Parameters<EventManager<Events>['subscribe']>[0]) {
  const subscription = hub.subscribe(options);
  const out = collect(subscription);
  await subscription.ready;
  await sleep(50);
  subscription.close();
  return out.events;
}

/** Runs `publish` with this process's clock set `offsetMs` off (Date only: timers and Redis keep real time). */
async function skewed<T>(offsetMs: number, publish: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + offsetMs);
  try {
    return await publish();
  } finally {
    vi.useRealTimers();
  }
}

const HOUR = 3_600_000;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

async function serve(hub: EventManager<Events>, heartbeatMs = 30_000): Promise<TestServer> {
  const sse = createSseHandler(hub, {
    retryMs: 20,
    heartbeatMs,
    streams: (req) => new URL(req.url ?? '/', 'http://x').searchParams.getAll('stream'),
  });
  const server = await startServer((req, res) => sse(req, res));
  cleanups.push(() => server.close());
  return server;
}

if (!REDIS_URL) {
  describe('RedisBackend', () => {
    it.skip('needs a Redis server (see the warning above)', () => {});
  });
}

describe.skipIf(!REDIS_URL)('RedisBackend', () => {
  describe('bad options', () => {
    it('throws a TypeError naming what is wrong, before touching Redis', () => {
      expect(() => new RedisBackend(undefined as never)).toThrow(/needs \{ redis \}/);
      expect(() => new RedisBackend({ redis: 'redis://x' as never })).toThrow(/ioredis client/);
      expect(() => new RedisBackend({ redis: sharedClient(), prefix: 'a{b}' })).toThrow(/prefix must be 1 to 64 characters without braces/);
      expect(() => new RedisBackend({ redis: sharedClient(), prefix: '' })).toThrow(/prefix/);
      expect(() => new RedisBackend({ redis: sharedClient(), historySize: 0 })).toThrow(/historySize/);
      expect(() => new RedisBackend({ redis: sharedClient(), fanoutSize: -1 })).toThrow(/fanoutSize/);
      expect(() => new RedisBackend({ redis: sharedClient(), maxStreams: 1.5 })).toThrow(/maxStreams/);
    });
  });

  describe('several instances', () => {
    it('gives every instance the same global order of what all of them publish', async () => {
      const prefix = uniquePrefix();
      const a = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const b = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const subA = a.subscribe({ streams: ['x', 'y'], replay: 0 });
      const subB = b.subscribe({ streams: ['x', 'y'], replay: 0 });
      const onA = collect(subA);
      const onB = collect(subB);
      // A subscription made while its hub still opens counts from the open (docs/api.md): one
      // hub may be open and publishing while the other's fan-out does not yet know where it starts.
      await Promise.all([subA.ready, subB.ready]);
      const published: string[] = [];
      await Promise.all(
        Array.from({ length: 200 }, (_, n) =>
          (n % 2 ? a : b).publish(n % 3 ? 'x' : 'y', 'tick', { n }).then((event) => published.push(event.id)),
        ),
      );
      await waitUntil(() => onA.events.length === 200 && onB.events.length === 200, 5000, 'both instances to deliver 200 events');
      const expected = [...published].sort((p, q) => seq(p) - seq(q));
      expect(expected.map(seq)).toEqual(Array.from({ length: 200 }, (_, i) => seq(expected[0] as string) + i));
      expect(onA.events.map((e) => e.id)).toEqual(expected);
      expect(onB.events.map((e) => e.id)).toEqual(expected);
    });

    it('two hub processes: a client that moves from one to the other with Last-Event-ID gets an exact continuation', async () => {
      const prefix = uniquePrefix();
      const fixture = fileURLToPath(new URL('../fixtures/redis-hub.mjs', import.meta.url));
      const ports: number[] = [];
      for (let i = 0; i < 2; i++) {
        const child: ChildProcess = spawn(process.execPath, [fixture, REDIS_URL as string, prefix], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        cleanups.push(async () => {
          child.kill('SIGTERM');
          if (child.exitCode === null) await once(child, 'exit');
        });
        const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
        ports.push(JSON.parse(line.toString()).port);
      }
      const [portA, portB] = ports as [number, number];
      const accepted: string[] = [];
      let publishing = true;
      const publisher = (async () => {
        // Both instances publish, to followed streams and to one nobody follows.
        for (let n = 0; publishing || n < 300; n++) {
          const port = n % 2 ? portA : portB;
          const stream = ['a', 'b', 'other'][n % 3] as string;
          const response = await fetch(`http://127.0.0.1:${port}/publish?stream=${stream}&n=${n}`, { method: 'POST' });
          expect(response.status).toBe(200);
          const { id } = (await response.json()) as { id: string };
          if (stream !== 'other') accepted.push(id);
          if (n % 10 === 0) await sleep(1);
        }
      })();
      const first = await openStream(`http://127.0.0.1:${portA}/events?stream=a&stream=b`);
      cleanups.push(() => first.close());
      await first.waitFor((c) => c.events.length >= 40, 10_000, 'forty events on the first instance');
      first.close();
      await first.ended;
      const lastId = first.events.at(-1)?.id as string;
      const second = await openStream(`http://127.0.0.1:${portB}/events?stream=a&stream=b`, { 'last-event-id': lastId });
      cleanups.push(() => second.close());
      await second.waitFor((c) => c.events.length >= 40, 10_000, 'forty events on the second instance');
      publishing = false;
      await publisher;
      const last = accepted.reduce((max, id) => (seq(id) > seq(max) ? id : max));
      await second.waitFor((c) => c.events.some((e) => e.id === last), 10_000, 'the last event on the second instance');
      const received = [...first.events, ...second.events];
      expect(received.some((e) => e.event === 'resync')).toBe(false);
      // Exactly the followed streams' events, each once, in the one global order.
      const expected = [...accepted].sort((p, q) => seq(p) - seq(q));
      const firstSeq = seq(first.events[0]?.id as string);
      expect(received.map((e) => e.id)).toEqual(expected.filter((id) => seq(id) >= firstSeq));
    }, 30_000);

    it.each(['99999999999999', '100000000000000', '9007199254740991'])(
      'answers a resume from seq %s (past what was issued) with resync unknown, not a failed read',
      async (big) => {
        const hub = hubOn(redisBackend());
        const first = await hub.publish('x', 'tick', { n: 1 });
        const epoch = first.id.split('.')[0] as string;
        const subscription = hub.subscribe({ streams: ['x'], lastEventId: `${epoch}.${big}` });
        const out = collect(subscription);
        await subscription.ready;
        await sleep(20);
        subscription.close();
        expect(out.error).toBeUndefined();
        expect(out.events.map((e) => e.type)).toEqual(['resync', 'tick']);
        expect((out.events[0]?.data as { reason: string } | undefined)?.reason).toBe('unknown');
      },
    );
  });

  describe('bounds', () => {
    it('trims each stream to historySize; a resume from before the trim gets resync expired, then the replay', async () => {
      const hub = hubOn(redisBackend({ historySize: 5 }), { replay: 2 });
      const ids: string[] = [];
      for (let n = 0; n < 12; n++) ids.push((await hub.publish('a', 'tick', { n })).id);
      const client = sharedClient();
      const backend = hub.backend as RedisBackend;
      expect(await client.xlen(`{${backend.prefix}}:s:a`)).toBe(5);
      const resumed = collect(hub.subscribe({ streams: ['a'], lastEventId: ids[3] }));
      await waitUntil(() => resumed.events.length === 3);
      expect(resumed.events[0]).toMatchObject({ type: 'resync', data: { reason: 'expired', lastEventId: ids[3] } });
      expect(resumed.events.slice(1).map((e) => e.id)).toEqual(ids.slice(-2));
      const exact = collect(hub.subscribe({ streams: ['a'], lastEventId: ids[7] }));
      await waitUntil(() => exact.events.length === 4);
      expect(exact.events.map((e) => e.id)).toEqual(ids.slice(8));
    });

    it('keeps at most maxStreams histories; an evicted stream resumes with resync, not a silent gap', async () => {
      const hub = hubOn(redisBackend({ maxStreams: 3 }));
      const backend = hub.backend as RedisBackend;
      const first = await hub.publish('s0', 'tick', { n: 0 });
      await hub.publish('s0', 'tick', { n: 1 });
      for (let i = 1; i <= 3; i++) await hub.publish(`s${i}`, 'tick', { n: i });
      const client = sharedClient();
      expect(await client.exists(`{${backend.prefix}}:s:s0`)).toBe(0);
      expect(await client.zcard(`{${backend.prefix}}:index`)).toBe(3);
      // s0 comes back: its new history must not pass for a continuation of the old one.
      await hub.publish('s0', 'tick', { n: 9 });
      const resumed = collect(hub.subscribe({ streams: ['s0'], lastEventId: first.id }));
      await waitUntil(() => resumed.events.length >= 1);
      expect(resumed.events[0]).toMatchObject({ type: 'resync', data: { reason: 'expired' } });
    });

    it('drops idle streams in a sweep, keeps followed ones, and bounds the fan-out stream', async () => {
      const hub = hubOn(redisBackend({ streamIdleTtlMs: 100 }, { fanoutSize: 100 }));
      const backend = hub.backend as RedisBackend;
      const followed = collect(hub.subscribe({ streams: ['kept'] }));
      for (let n = 0; n < 1000; n++) await hub.publish(n % 2 ? 'kept' : 'idle', 'tick', { n });
      await waitUntil(() => followed.events.length === 500, 5000, 'the follower to get 500 events');
      const client = sharedClient();
      const fanout = await client.xlen(`{${backend.prefix}}:fanout`);
      // Trimmed with ~, so whole macro nodes go: a little over the size, never the 1000 written.
      expect(fanout).toBeGreaterThanOrEqual(100);
      expect(fanout).toBeLessThan(300);
      // The backend's own timer sweeps (every half TTL); sweep() runs the same script on demand.
      await expect.poll(() => client.exists(`{${backend.prefix}}:s:idle`), { timeout: 5000 }).toBe(0);
      expect(await backend.sweep()).toBe(0);
      expect(await client.exists(`{${backend.prefix}}:s:kept`)).toBe(1);
      expect(await client.zrange(`{${backend.prefix}}:index`, '0', '-1')).toEqual(['kept']);
      // At least the one: on a loaded machine a pause of more than the 100 ms TTL between two publishes lets a sweep
      // drop 'idle' mid-run too (it comes back with the next publish), so it may count twice.
      expect(hub.stats().redisSweptStreams).toBeGreaterThanOrEqual(1);
      expect(hub.stats().redisConnected).toBe(1);
    });

    it('closes its own connections on hub.close() and leaves the client it was given alone', async () => {
      const client = new Redis(REDIS_URL as string);
      cleanups.push(() => client.disconnect());
      const clientId = (await client.client('ID')) as number;
      const prefix = uniquePrefix();
      // Its connections are named after the prefix, so other tests' hubs on this Redis do not count.
      const ours = async () =>
        ((await client.client('LIST')) as string)
          .split('\n')
          .filter((line) => line.includes(`:${prefix} `))
          .map((line) => /name=(\S+)/.exec(line)?.[1]);
      const hub = new EventManager<Events>({ backend: new RedisBackend({ redis: client, prefix }) });
      await hub.publish('a', 'tick', { n: 1 });
      expect((await ours()).sort()).toEqual([`ssecast-fanout:${prefix}`, `ssecast:${prefix}`]);
      await hub.close();
      await expect.poll(ours).toEqual([]);
      expect(await client.client('ID')).toBe(clientId);
      await expect(hub.publish('a', 'tick', { n: 2 })).rejects.toMatchObject({ code: 'ERR_HUB_CLOSED' });
    });
  });

  describe("one clock: Redis time, whatever the instances' clocks say", () => {
    it('since (named streams and *) gets every event published after that time and none from before, in order, with instances hours apart', async () => {
      const prefix = uniquePrefix();
      const a = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const behind = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const ahead = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const following = a.subscribe({ streams: '*', replay: 0 });
      const live = collect(following);
      await following.ready;
      // Published before the time asked for, one of them by a clock running hours ahead.
      await a.publish('x', 'tick', { n: -3 });
      await behind.publish('y', 'tick', { n: -2 });
      await skewed(3 * HOUR, () => ahead.publish('x', 'tick', { n: -1 }));
      await sleep(5);
      const since = new Date().toISOString();
      const published: { id: string; timestamp: string }[] = [];
      for (let n = 0; n < 12; n++) {
        const stream = n % 2 ? 'x' : 'y';
        const event =
          n % 3 === 1
            ? await skewed(-3 * HOUR, () => behind.publish(stream, 'tick', { n }))
            : await (n % 3 ? ahead : a).publish(stream, 'tick', { n });
        published.push({ id: event.id, timestamp: event.timestamp });
      }
      const until = new Date().toISOString();
      for (const hub of [a, behind, ahead]) {
        for (const streams of ['*', ['x', 'y']] as const) {
          const replayed = await history(hub, { streams, since });
          expect(replayed.map((e) => e.id)).toEqual(published.map((e) => e.id));
          expect(replayed.map((e) => e.timestamp)).toEqual(published.map((e) => e.timestamp));
        }
        const onlyX = await history(hub, { streams: ['x'], since });
        expect(onlyX.map((e) => e.id)).toEqual(published.filter((_, n) => n % 2).map((e) => e.id));
      }
      // What publish returns is Redis's time, never the publisher's, in sequence order.
      for (const { timestamp } of published) {
        expect(timestamp).toMatch(ISO_MS);
        expect(timestamp >= since && timestamp <= until).toBe(true);
      }
      expect(published.map((e) => e.timestamp)).toEqual(published.map((e) => e.timestamp).sort());
      // The other instances deliver the same timestamps.
      await waitUntil(() => live.events.length === 15, 5000, 'fifteen live events');
      expect(live.events.slice(3).map((e) => ({ id: e.id, timestamp: e.timestamp }))).toEqual(published);
    });

    it("writes Redis's time as toISOString() does, across leap days, centuries and years to 9999", async () => {
      const edges = [
        '1970-01-01T00:00:00.000Z',
        '2000-02-29T23:59:59.999Z',
        '2100-02-28T12:00:00.001Z',
        '2100-03-01T00:00:00.000Z',
        '2400-02-29T00:00:00.000Z',
        '9999-12-31T23:59:59.999Z',
      ];
      // And 2000 more spread over the whole range (golden-ratio steps: every run tries the same ones).
      const last = Date.parse('9999-12-31T23:59:59.999Z');
      const times = [...edges.map(Date.parse), ...Array.from({ length: 2000 }, (_, i) => Math.floor(((i * 0.6180339887) % 1) * last))];
      const script = `${ISO_TIME}\nlocal out = {}\nfor i, ms in ipairs(ARGV) do out[i] = isoTime(tonumber(ms)) end\nreturn out`;
      const written = (await sharedClient().eval(script, 0, ...times.map(String))) as string[];
      expect(written).toEqual(times.map((ms) => new Date(ms).toISOString()));
    });

    it("timestamps never go back in sequence order, even when Redis's clock does", async () => {
      const hub = hubOn(redisBackend());
      const backend = hub.backend as RedisBackend;
      const first = await hub.publish('a', 'tick', { n: 0 });
      const meta = `{${backend.prefix}}:meta`;
      expect(await sharedClient().hget(meta, 'lastAt')).toBe(first.timestamp);
      // As if Redis's clock had been an hour ahead for the last event and was set right since.
      const later = new Date(Date.now() + HOUR).toISOString();
      await sharedClient().hset(meta, 'lastAt', later);
      const second = await hub.publish('a', 'tick', { n: 1 });
      const third = await hub.publish('b', 'tick', { n: 2 });
      expect([second.timestamp, third.timestamp]).toEqual([later, later]);
      const replayed = await history(hub, { streams: '*', since: later });
      expect(replayed.map((e) => e.id)).toEqual([second.id, third.id]);
    });

    it('a trimmed event from a clock running ahead does not make later since reads report lost events', async () => {
      const prefix = uniquePrefix();
      const a = hubOn(new RedisBackend({ redis: sharedClient(), prefix, historySize: 2 }));
      const ahead = hubOn(new RedisBackend({ redis: sharedClient(), prefix, historySize: 2 }));
      await skewed(3 * HOUR, () => ahead.publish('a', 'tick', { n: 0 }));
      for (let n = 1; n <= 2; n++) await a.publish('a', 'tick', { n });
      await sleep(5);
      const since = new Date().toISOString();
      const after = await a.publish('a', 'tick', { n: 3 });
      const replayed = await history(a, { streams: ['a'], since });
      expect(replayed.map((e) => e.type)).toEqual(['tick']);
      expect(replayed[0]?.id).toBe(after.id);
    });
  });

  describe('continuity', () => {
    it('an instance that missed part of the fan-out ends its streams, and they resume exactly from history', async () => {
      const hub = hubOn(redisBackend());
      const backend = hub.backend as RedisBackend;
      const server = await serve(hub);
      const source = new EventSource(`${server.url}/?stream=a`);
      cleanups.push(() => source.close());
      const got: { id: string; n: number }[] = [];
      source.addEventListener('tick', (m) => got.push({ id: m.lastEventId, n: JSON.parse(m.data).n }));
      let opens = 0;
      source.addEventListener('open', () => opens++);
      await waitUntil(() => opens === 1 && hub.stats().connections === 1);
      for (let n = 0; n < 3; n++) await hub.publish('a', 'tick', { n });
      await waitUntil(() => got.length === 3);
      // Numbers handed out that this instance never sees: as if the fan-out had been trimmed past it.
      await sharedClient().hincrby(`{${backend.prefix}}:meta`, 'seq', 3);
      await hub.publish('a', 'tick', { n: 3 });
      await waitUntil(() => opens === 2, 5000, 'the EventSource to reconnect');
      await hub.publish('a', 'tick', { n: 4 });
      await waitUntil(() => got.length === 5, 5000, 'five events');
      expect(got.map((e) => e.n)).toEqual([0, 1, 2, 3, 4]);
      expect(hub.stats().redisInterruptions).toBe(1);
    });

    it('numbers handed out again (Redis back on an older snapshot) start a new epoch; old ids resync', async () => {
      const prefix = uniquePrefix();
      const hub = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const live = collect(hub.subscribe({ streams: ['a'], replay: 0 }));
      await sleep(20);
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) ids.push((await hub.publish('a', 'tick', { n })).id);
      await waitUntil(() => live.events.length === 5);
      // The snapshot: Redis forgets the last three events.
      const client = sharedClient();
      await client.hset(`{${prefix}}:meta`, 'seq', 2);
      await client.xdel(`{${prefix}}:s:a`, '3-0', '4-0', '5-0');
      await client.xsetid(`{${prefix}}:s:a`, '2-0');
      // An instance that knows nothing of them publishes: its numbers are ones already seen.
      const fresh = hubOn(new RedisBackend({ redis: sharedClient(), prefix }));
      const reused = await fresh.publish('a', 'tick', { n: 99 });
      expect(seq(reused.id)).toBe(3);
      await waitUntil(() => live.done, 5000, 'the live subscriber to be ended');
      expect(live.error).toBeInstanceOf(SsecastError);
      expect((live.error as Error).message).toMatch(/lost continuity.*lastEventId/);
      const epoch = (id: string) => id.split('.')[0];
      await expect.poll(() => client.hget(`{${prefix}}:meta`, 'epoch')).not.toBe(epoch(ids[0] as string));
      const resumed = collect(hub.subscribe({ streams: ['a'], lastEventId: ids[4] }));
      await waitUntil(() => resumed.events.length >= 1);
      expect(resumed.events[0]).toMatchObject({ type: 'resync', data: { reason: 'foreign', lastEventId: ids[4] } });
      const next = await hub.publish('a', 'tick', { n: 100 });
      expect(epoch(next.id)).not.toBe(epoch(ids[0] as string));
    });
  });
});

describe.skipIf(!hasRedisServerBinary)('RedisBackend when Redis goes away', () => {
  it('publish rejects with a clear error, open streams keep their heartbeats, and every accepted event arrives in order after Redis returns', async () => {
    const redis = await startOwnedRedis({ persistent: true });
    const source = new Redis(redis.url, { lazyConnect: true, retryStrategy: () => 50 });
    cleanups.push(() => source.disconnect());
    const prefix = uniquePrefix();
    const publisher = hubOn(new RedisBackend({ redis: source, prefix, commandTimeoutMs: 500 }));
    const serving = hubOn(new RedisBackend({ redis: source, prefix, commandTimeoutMs: 500 }), { heartbeatMs: 100 });
    const server = await serve(serving, 100);
    const client = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => client.close());
    await waitUntil(() => serving.stats().connections === 1);
    await sleep(50);
    const accepted: string[] = [];
    const errors: unknown[] = [];
    let n = 0;
    const publishSome = async (count: number) => {
      for (let i = 0; i < count; i++) {
        try {
          accepted.push((await publisher.publish('a', 'tick', { n: n++ })).id);
        } catch (error) {
          errors.push(error);
        }
        await sleep(2);
      }
    };
    await publishSome(50);
    expect(errors).toEqual([]);
    await redis.kill();
    const heartbeatsBefore = client.comments.length;
    const rejectedAt = Date.now();
    await publishSome(20);
    // Every publish while Redis is away fails fast, with a reason, not a hang.
    expect(Date.now() - rejectedAt).toBeLessThan(5000);
    expect(errors.length).toBeGreaterThanOrEqual(19);
    for (const error of errors) {
      expect(error).toBeInstanceOf(SsecastError);
      expect(error).toMatchObject({ code: 'ERR_BACKEND' });
      expect((error as Error).message).toMatch(/Redis (is unreachable|command failed)/);
    }
    await sleep(300);
    expect(client.comments.length).toBeGreaterThan(heartbeatsBefore);
    expect(serving.stats().connections).toBe(1);
    await redis.start();
    await waitUntil(
      () => serving.stats().redisConnected === 1 && publisher.stats().redisConnected === 1,
      10_000,
      'both instances to reconnect',
    );
    const rejectedBefore = errors.length;
    await publishSome(50);
    expect(errors.length).toBe(rejectedBefore);
    const last = accepted.at(-1) as string;
    await client.waitFor((c) => c.events.some((e) => e.id === last), 10_000, 'the last accepted event');
    const received = client.events.map((e) => e.id as string);
    // Every accepted event, once, in order; the epoch survived (Redis kept its data).
    expect(new Set(received).size).toBe(received.length);
    expect(received.map(seq)).toEqual([...received.map(seq)].sort((p, q) => p - q));
    for (const id of accepted) expect(received).toContain(id);
    // Only a publish cut off mid-flight ("may or may not have been stored") can add an event.
    expect(received.length - accepted.length).toBeLessThanOrEqual(errors.filter((e) => /may or may not/.test((e as Error).message)).length);
    expect(client.events.some((e) => e.event === 'resync')).toBe(false);
    expect(serving.stats().redisInterruptions).toBe(0);
  }, 40_000);

  it('a Redis that comes back empty starts a new epoch: streams end, and the old ids get resync, never a wrong replay', async () => {
    const redis = await startOwnedRedis({ persistent: false });
    const source = new Redis(redis.url, { lazyConnect: true, retryStrategy: () => 50 });
    cleanups.push(() => source.disconnect());
    const prefix = uniquePrefix();
    const hub = hubOn(new RedisBackend({ redis: source, prefix, commandTimeoutMs: 500 }), { replay: 5 });
    const server = await serve(hub);
    const es = new EventSource(`${server.url}/?stream=a`);
    cleanups.push(() => es.close());
    const got: { type: string; id: string; data: string }[] = [];
    es.addEventListener('tick', (m) => got.push({ type: 'tick', id: m.lastEventId, data: m.data }));
    es.addEventListener('resync', (m) => got.push({ type: 'resync', id: m.lastEventId, data: m.data }));
    await new Promise((resolve) => es.addEventListener('open', resolve));
    await waitUntil(() => hub.stats().connections === 1);
    const before: string[] = [];
    for (let n = 0; n < 5; n++) before.push((await hub.publish('a', 'tick', { n })).id);
    await waitUntil(() => got.length === 5);
    await redis.kill();
    await redis.start();
    await waitUntil(() => hub.stats().redisConnected === 1, 10_000, 'the hub to reconnect');
    // The first publish after the loss starts a new epoch (retried while the hub reconnects).
    let after: string | undefined;
    const deadline = Date.now() + 10_000;
    while (!after) {
      try {
        after = (await hub.publish('a', 'tick', { n: 100 })).id;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
    const epoch = (id: string) => id.split('.')[0];
    expect(epoch(after)).not.toBe(epoch(before[0] as string));
    await waitUntil(() => got.some((e) => e.id === after), 10_000, 'the new epoch event');
    // The open stream ended; the EventSource came back with its old id and was told so.
    expect(got.slice(0, 5).map((e) => e.id)).toEqual(before);
    expect(got.slice(5).map((e) => e.type)).toEqual(['resync', 'tick']);
    expect(JSON.parse((got[5] as { data: string }).data)).toEqual({ reason: 'foreign', lastEventId: before[4] });
    expect((got[6] as { id: string }).id).toBe(after);
    expect(hub.stats().redisInterruptions).toBe(1);
  }, 30_000);
});
