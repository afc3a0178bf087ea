import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  EventManager,
  MemoryBackend,
  SseFormatError,
  SsecastError,
  type Backend,
  type PublishedEvent,
  type SubscriptionEvent,
} from '../../src/index.js';

type Events = {
  sandbox_status: { sandbox_id: string; status: 'creating' | 'running' | 'stopped' | 'error' };
  command_output: { output: string; stream: 'stdout' | 'stderr' };
};

const hubs: EventManager<any>[] = [];
afterEach(async () => {
  while (hubs.length) await hubs.pop()?.close();
});

function hub(options: ConstructorParameters<typeof EventManager>[0] = {}): EventManager<Events> {
  const created = new EventManager<Events>(options);
  hubs.push(created);
  return created;
}

/** Takes `count` events from a subscription, failing after a timeout. */
async function take<T>(iterable: AsyncIterable<T>, count: number, timeoutMs = 2000): Promise<T[]> {
  const out: T[] = [];
  const iterator = iterable[Symbol.asyncIterator]();
  const deadline = setTimeout(() => void iterator.return?.(), timeoutMs);
  try {
    while (out.length < count) {
      const next = await iterator.next();
      if (next.done) break;
      out.push(next.value);
    }
  } finally {
    clearTimeout(deadline);
  }
  return out;
}

describe('EventManager', () => {
  it('type-checks publish against the event map', async () => {
    const h = hub();
    const event = await h.publish('agent-1', 'sandbox_status', { sandbox_id: 's1', status: 'running' });
    expectTypeOf(event).toEqualTypeOf<PublishedEvent<Events['sandbox_status'], 'sandbox_status'>>();
    // @ts-expect-error a payload of the wrong shape does not compile
    await h.publish('agent-1', 'sandbox_status', { output: 'x', stream: 'stdout' }).catch(() => {});
    expect(event).toMatchObject({ stream: 'agent-1', type: 'sandbox_status', data: { sandbox_id: 's1', status: 'running' } });
    expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
  });

  it('assigns one strictly increasing sequence across every stream', async () => {
    const h = hub();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await h.publish(`s${i % 7}`, 'command_output', { output: `${i}`, stream: 'stdout' })).id);
    const seqs = ids.map((id) => Number(id.split('.')[1]));
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(new Set(ids.map((id) => id.split('.')[0])).size).toBe(1);
  });

  it('gives a subscriber of several streams, and of *, one globally ordered sequence', async () => {
    const h = hub({ replay: 0 });
    const two = h.subscribe({ streams: ['a', 'b'] });
    const all = h.subscribe({ streams: '*' });
    await Promise.all([two.ready, all.ready]);
    for (let i = 0; i < 30; i++) await h.publish(['a', 'b', 'c'][i % 3] as string, 'command_output', { output: `${i}`, stream: 'stdout' });
    const fromTwo = await take(two, 20);
    const fromAll = await take(all, 30);
    expect(fromTwo.map((e) => (e.data as { output: string }).output)).toEqual(
      Array.from({ length: 30 }, (_, i) => i)
        .filter((i) => i % 3 !== 2)
        .map(String),
    );
    expect(fromAll.map((e) => (e.data as { output: string }).output)).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
  });

  it('fans an event out only to the subscribers of its stream', async () => {
    const h = hub({ replay: 0 });
    const others = Array.from({ length: 2000 }, (_, i) => h.subscribe({ streams: [`other-${i}`], onEvent: () => {} }));
    const target: unknown[] = [];
    h.subscribe({ streams: ['target'], onEvent: (d) => target.push(d.event) });
    await Promise.all(others.map((s) => s.ready));
    const before = h.stats().delivered;
    await h.publish('target', 'command_output', { output: 'x', stream: 'stdout' });
    expect(h.stats().delivered - before).toBe(1);
    expect(target).toHaveLength(1);
    expect(h.stats()).toMatchObject({ connections: 2001, streams: 2001 });
  });

  it('hands every subscriber the same encoded frame', async () => {
    const h = hub({ replay: 0 });
    const frames: string[] = [];
    for (let i = 0; i < 3; i++) h.subscribe({ streams: ['a'], onEvent: (d) => frames.push(d.frame) });
    await new Promise((resolve) => setTimeout(resolve, 10));
    const event = await h.publish('a', 'command_output', { output: 'hi', stream: 'stderr' });
    expect(frames).toEqual(Array(3).fill(`id: ${event.id}\nevent: command_output\ndata: {"output":"hi","stream":"stderr"}\n\n`));
    expect(frames[0]).toBe(frames[1]); // same string, encoded once
  });

  it('filters by type', async () => {
    const h = hub({ replay: 0 });
    const sub = h.subscribe({ streams: ['a'], types: ['sandbox_status'] });
    await sub.ready;
    await h.publish('a', 'command_output', { output: 'skip', stream: 'stdout' });
    await h.publish('a', 'sandbox_status', { sandbox_id: 's', status: 'stopped' });
    const [event] = await take(sub, 1);
    expect(event?.type).toBe('sandbox_status');
  });

  it('resumes exactly while events are being published concurrently', async () => {
    const h = hub({ historySize: 10_000 });
    const ids: string[] = [];
    let publishing = true;
    const publisher = (async () => {
      for (let n = 0; publishing && n < 1_000_000; n++) {
        ids.push((await h.publish('a', 'command_output', { output: String(n), stream: 'stdout' })).id);
        if (n % 25 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    // Subscribe many times at arbitrary points of the race, each resuming from some id.
    const checks: Promise<void>[] = [];
    for (let round = 0; round < 20; round++) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      const from = ids.length - 1 - (round % 5);
      if (from < 0) continue;
      const fromN = from;
      const sub = h.subscribe({ streams: ['a'], lastEventId: ids[fromN], maxQueue: 100_000 });
      checks.push(
        (async () => {
          const got = await take(sub, 200);
          const outputs = got.map((e) => Number((e.data as { output: string }).output));
          expect(got[0]?.type).not.toBe('resync');
          expect(outputs).toEqual(Array.from({ length: outputs.length }, (_, i) => fromN + 1 + i));
          expect(outputs.length).toBe(200);
          sub.close();
        })(),
      );
    }
    await Promise.all(checks);
    publishing = false;
    await publisher;
  });

  it('ends an iterating subscriber that falls too far behind with ERR_SLOW_CONSUMER', async () => {
    const h = hub({ replay: 0 });
    const sub = h.subscribe({ streams: ['a'], maxQueue: 5 });
    await sub.ready;
    for (let i = 0; i < 10; i++) await h.publish('a', 'command_output', { output: String(i), stream: 'stdout' });
    const iterator = sub[Symbol.asyncIterator]();
    const seen: SubscriptionEvent<Events>[] = [];
    let error: unknown;
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        seen.push(next.value);
      }
    } catch (caught) {
      error = caught;
    }
    expect(seen).toHaveLength(5);
    expect(error).toBeInstanceOf(SsecastError);
    expect(error).toMatchObject({ code: 'ERR_SLOW_CONSUMER' });
    expect(h.stats()).toMatchObject({ dropped: 1, connections: 0 });
  });

  it('rejects bad input to publish with a clear error and stores nothing', async () => {
    const h = hub();
    const p = (stream: unknown, type: unknown, data: unknown) => h.publish(stream as string, type as 'command_output', data as never);
    await expect(p('', 'command_output', {})).rejects.toThrow(TypeError);
    await expect(p('x'.repeat(257), 'command_output', {})).rejects.toThrow(/at most 256/);
    await expect(p(42, 'command_output', {})).rejects.toThrow(/stream must be/);
    await expect(p('a', 'bad\ntype', {})).rejects.toBeInstanceOf(SseFormatError);
    await expect(p('a', 'resync', {})).rejects.toThrow(/reserved/);
    await expect(p('a', '', {})).rejects.toThrow(/empty/);
    await expect(p('a', 'command_output', undefined)).rejects.toMatchObject({ code: 'ERR_SSE_DATA_UNSERIALIZABLE' });
    await expect(p('a', 'command_output', () => 1)).rejects.toMatchObject({ code: 'ERR_SSE_DATA_UNSERIALIZABLE' });
    expect(h.stats()).toMatchObject({ published: 0, retainedEvents: 0 });
  });

  it('rejects bad subscribe options with a TypeError', () => {
    const h = hub();
    expect(() => h.subscribe({ streams: [] })).toThrow(TypeError);
    expect(() => h.subscribe({ streams: [''] })).toThrow(TypeError);
    expect(() => h.subscribe({ streams: ['a'], replay: -1 })).toThrow(/replay/);
    expect(() => h.subscribe({ streams: ['a'], since: 'last tuesday' })).toThrow(/since must be an ISO 8601 time/);
    expect(() => h.subscribe({ streams: ['a'], since: Number.NaN })).toThrow(/since is not a valid time/);
    expect(() => h.subscribe({ streams: ['a'], since: new Date('nope') })).toThrow(TypeError);
    expect(() => new EventManager({ heartbeatMs: 1.5 })).toThrow(/heartbeatMs/);
    expect(h.stats().connections).toBe(0);
  });

  it('replays everything since a time, given as a Date, epoch ms or ISO string, across several streams', async () => {
    const h = hub();
    await h.publish('a', 'command_output', { output: 'old', stream: 'stdout' });
    await new Promise((resolve) => setTimeout(resolve, 15));
    const cut = Date.now();
    const fresh: string[] = [];
    for (let i = 0; i < 15; i++)
      fresh.push((await h.publish(i % 2 ? 'a' : 'b', 'command_output', { output: `new ${i}`, stream: 'stdout' })).id);
    for (const since of [new Date(cut), cut, new Date(cut).toISOString()]) {
      const got = await take(h.subscribe({ streams: ['a', 'b'], since }), 15);
      expect(got.map((e) => e.id)).toEqual(fresh);
    }
    // A time in the future replays nothing; the subscriber is live.
    const future = h.subscribe({ streams: ['a'], since: Date.now() + 60_000 });
    await future.ready;
    const live = await h.publish('a', 'command_output', { output: 'live', stream: 'stdout' });
    expect((await take(future, 1))[0]?.id).toBe(live.id);
  });

  it('prefers lastEventId over since, and says expired when history from that time was trimmed', async () => {
    const h = hub({ historySize: 3 });
    const since = Date.now() - 1000;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await h.publish('a', 'command_output', { output: String(i), stream: 'stdout' })).id);
    const resumed = await take(h.subscribe({ streams: ['a'], since, lastEventId: ids[4] }), 1);
    expect(resumed.map((e) => e.id)).toEqual([ids[5]]);
    const trimmed = await take(h.subscribe({ streams: ['a'], since }), 4);
    expect(trimmed[0]).toMatchObject({ type: 'resync', data: { reason: 'expired', since: new Date(since).toISOString() } });
    expect(trimmed.slice(1).map((e) => e.id)).toEqual(ids.slice(3));
    expect(h.stats().resyncs).toBe(1);
  });

  it('throws at construction for bad history bounds, not at first use', () => {
    expect(() => new EventManager({ historySize: -1 })).toThrow(/maxEventsPerStream/);
    expect(() => new EventManager({ maxStreams: 0 })).toThrow(/maxStreams/);
    expect(() => new MemoryBackend({ epoch: 'Not.Valid' })).toThrow(/epoch/);
  });

  it('rejects publish with ERR_BACKEND when the backend fails, and delivers nothing', async () => {
    const failing: Backend = {
      open: async () => {},
      append: async () => {
        throw new Error('connection refused');
      },
      read: async () => ({ events: [] }),
      stats: () => ({}),
      close: async () => {},
    };
    const h = new EventManager<Events>({ backend: failing });
    hubs.push(h);
    const seen: unknown[] = [];
    h.subscribe({ streams: ['a'], onEvent: (d) => seen.push(d) });
    const error = await h.publish('a', 'command_output', { output: 'x', stream: 'stdout' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SsecastError);
    expect(error).toMatchObject({ code: 'ERR_BACKEND', message: expect.stringContaining('connection refused') });
    expect(seen).toEqual([]);
    expect(h.stats().published).toBe(0);
  });

  it('ends iterators, refuses new work and stops timers on close', async () => {
    const h = hub();
    const sub = h.subscribe({ streams: ['a'] });
    const scheduler = h.heartbeatScheduler(20);
    scheduler.add({ lastWriteAt: 0, heartbeat: () => {} });
    const pending = sub[Symbol.asyncIterator]().next();
    await h.close();
    await expect(pending).resolves.toEqual({ value: undefined, done: true });
    await expect(sub.closed).resolves.toBe('hub_closed');
    expect(scheduler.running).toBe(false);
    await expect(h.publish('a', 'command_output', { output: '', stream: 'stdout' })).rejects.toMatchObject({ code: 'ERR_HUB_CLOSED' });
    expect(() => h.subscribe({ streams: ['a'] })).toThrow(SsecastError);
  });

  it('returns the same close() to every caller: a second one waits for the first to finish', async () => {
    let backendClosed = false;
    class SlowToClose extends MemoryBackend {
      override async close() {
        await new Promise((resolve) => setTimeout(resolve, 100));
        backendClosed = true;
      }
    }
    const h = new EventManager({ backend: new SlowToClose() });
    const first = h.close();
    expect(h.closed).toBe(true);
    const second = h.close();
    expect(second).toBe(first);
    await second;
    expect(backendClosed).toBe(true);
  });
});

describe('keyed events and named heartbeats: bad input', () => {
  it.each([
    ['an empty key', '', /key must be a non-empty string of at most 256 characters, got 0 characters/],
    ['a key of 257 characters', 'k'.repeat(257), /got 257 characters/],
    ['a number', 7, /got number/],
    ['a key with a lone surrogate', 'x\uD800', /lone surrogate/],
    ['a key with a lone low surrogate', '\uDC00x', /lone surrogate/],
  ])('rejects %s with a TypeError and stores nothing', async (_name, key, message) => {
    const h = hub();
    await expect(h.publish('a', 'command_output', { output: 'x', stream: 'stdout' }, { key: key as string })).rejects.toThrow(message);
    expect(h.stats()).toMatchObject({ published: 0, retainedEvents: 0, retainedKeys: 0 });
  });

  it('takes a key with a surrogate pair (an emoji)', async () => {
    const h = hub();
    await expect(h.publish('a', 'command_output', { output: 'x', stream: 'stdout' }, { key: 'task-\u{1F600}' })).resolves.toMatchObject({
      key: 'task-\u{1F600}',
    });
  });

  it('keeps the key on the published event and on what a subscriber gets, and counts the keys', async () => {
    const h = hub({ historySize: 1 });
    const event = await h.publish('a', 'sandbox_status', { sandbox_id: 's', status: 'running' }, { key: 'sandbox' });
    expect(event.key).toBe('sandbox');
    await h.publish('a', 'command_output', { output: 'x', stream: 'stdout' });
    const [state, tail] = await take(h.subscribe({ streams: ['a'], replay: 1 }), 2);
    expect(state).toMatchObject({ type: 'sandbox_status', key: 'sandbox' });
    expect(tail).not.toHaveProperty('key');
    expect(h.stats()).toMatchObject({ retainedKeys: 1, retainedEvents: 2 });
  });

  it.each([
    ['', /heartbeatEvent must be an event type/],
    ['message', /other than "message", "error", "open", "resync", "ssecast-position"/],
    ['resync', /other than "message", "error"/],
    ['error', /other than "message", "error"/],
    ['open', /other than "message", "error"/],
    ['beat\n', /without CR, LF or NUL/],
    [42, /heartbeatEvent must be an event type/],
  ])('refuses heartbeatEvent %j at construction', (heartbeatEvent, message) => {
    expect(() => new EventManager({ heartbeatEvent: heartbeatEvent as string })).toThrow(message);
  });

  it('rejects a maxKeysPerStream that is not a positive integer', () => {
    expect(() => new EventManager({ maxKeysPerStream: 0 })).toThrow(/maxKeysPerStream/);
  });
});

describe('the position marker after a replay that ends on old state', () => {
  it('moves an iterator subscription lastEventId without yielding anything, so a resume from it does not resync', async () => {
    const h = hub({ historySize: 3, replay: 0 });
    await h.publish('a', 'sandbox_status', { sandbox_id: 's', status: 'running' }, { key: 'sandbox' });
    let last = '';
    for (let i = 0; i < 10; i++) last = (await h.publish('a', 'command_output', { output: `${i}`, stream: 'stdout' })).id;
    const subscription = h.subscribe({ streams: ['a'] });
    const [state] = await take(subscription, 1);
    expect(state).toMatchObject({ type: 'sandbox_status' });
    await subscription.ready;
    expect(subscription.lastEventId).toBe(last);
    subscription.close();
    const resumed = h.subscribe({ streams: ['a'], lastEventId: last });
    await resumed.ready;
    resumed.close();
    expect(h.stats().resyncs).toBe(0);
  });

  it('refuses ssecast-position as an event type', async () => {
    await expect(hub().publish('a', 'ssecast-position' as 'command_output', { output: '', stream: 'stdout' })).rejects.toThrow(/reserved/);
  });
});

describe('the position marker and maxQueue', () => {
  it('does not count against maxQueue: a replay that exactly fills the queue is not cut off by the marker', async () => {
    const h = hub({ historySize: 2, replay: 0 });
    for (let i = 0; i < 5; i++) await h.publish('a', 'sandbox_status', { sandbox_id: `s${i}`, status: 'running' }, { key: `k${i}` });
    let last = '';
    for (let i = 0; i < 5; i++) last = (await h.publish('a', 'command_output', { output: `${i}`, stream: 'stdout' })).id;
    const subscription = h.subscribe({ streams: ['a'], maxQueue: 5 });
    await subscription.ready;
    expect(subscription.isClosed).toBe(false);
    const state = await take(subscription, 5);
    expect(state.map((event) => event.type)).toEqual(Array(5).fill('sandbox_status'));
    expect(subscription.lastEventId).toBe(last);
  });
});
