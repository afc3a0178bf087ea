import http from 'node:http';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import type { EventManager, EventManagerOptions } from '../../src/index.js';
import { ADAPTERS, type NeutralOptions, type RequestInfo } from '../support/adapters.js';
import { cleanupAfterEach, openStream, payloads, sleep, stalledClient, waitUntil, type TestServer } from '../support/helpers.js';
import { BACKENDS } from '../support/redis.js';

/**
 * The conformance suite: every case runs against every adapter, so that no
 * adapter can quietly differ in headers, replay, resume, heartbeats, order,
 * cleanup, refusals or the handling of slow clients. And every adapter runs
 * on every backend (memory, and Redis when a server is there), so that the
 * guarantees do not depend on where events are stored.
 */

type Events = { tick: { n: number }; note: string; status: { v: number } };

const cleanups = cleanupAfterEach();

async function publishTicks(hub: EventManager<Events>, stream: string, from: number, to: number): Promise<string[]> {
  const ids: string[] = [];
  for (let n = from; n < to; n++) ids.push((await hub.publish(stream, 'tick', { n })).id);
  return ids;
}

/** The id just before `id` in the same epoch. */
function formatIdBefore(id: string): string {
  const [epoch, seq] = id.split('.') as [string, string];
  return `${epoch}.${Number(seq) - 1}`;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

const MATRIX = BACKENDS.flatMap((backend) => ADAPTERS.map((adapter) => ({ name: `${adapter.name} on ${backend.name}`, adapter, backend })));

describe.each(MATRIX)('$name', ({ adapter, backend }) => {
  async function setup(
    handlerOptions: NeutralOptions = {},
    hubOptions: EventManagerOptions = {},
  ): Promise<{ hub: EventManager<Events>; server: TestServer; url: (query: string) => string }> {
    const hub = backend.hub<Events>(hubOptions);
    const server = await adapter.mount(hub, handlerOptions);
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    return { hub, server, url: (query) => `${server.url}/events?${query}` };
  }

  describe('the response', () => {
    it('answers 200 with the SSE headers and sends retry first', async () => {
      const { url } = await setup({ retryMs: 1234 });
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      expect(client.status).toBe(200);
      expect(client.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(client.headers.get('cache-control')).toBe('no-cache, no-transform');
      expect(client.headers.get('x-accel-buffering')).toBe('no');
      expect(client.headers.get('connection')).toBe('keep-alive');
      await client.waitFor((c) => c.raw.length > 0);
      expect(client.raw.startsWith('retry: 1234\n\n')).toBe(true);
      expect(client.retries).toEqual([1234]);
    });

    it('writes each published event once, with id, event and data lines', async () => {
      const { hub, url } = await setup();
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      await waitUntil(() => hub.stats().connections === 1);
      const event = await hub.publish('a', 'note', 'line one\nline two');
      await client.waitFor((c) => c.events.length === 1);
      expect(client.raw).toBe(`retry: 3000\n\nid: ${event.id}\nevent: note\ndata: line one\ndata: line two\n\n`);
      expect(client.events[0]).toEqual({ event: 'note', id: event.id, data: 'line one\nline two' });
    });

    it('is received by a real EventSource as typed events', async () => {
      const { hub, url } = await setup();
      const source = new EventSource(url('stream=a'));
      cleanups.push(() => source.close());
      const got: { n: number; id: string }[] = [];
      source.addEventListener('tick', (message) => got.push({ ...JSON.parse(message.data), id: message.lastEventId }));
      await new Promise((resolve) => source.addEventListener('open', resolve));
      await waitUntil(() => hub.stats().connections === 1);
      const ids = await publishTicks(hub, 'a', 0, 3);
      await waitUntil(() => got.length === 3, 5000, 'three events');
      expect(got).toEqual([0, 1, 2].map((n) => ({ n, id: ids[n] })));
    });
  });

  describe('replay and resume', () => {
    it('replays the last 10 events of the stream to a fresh connection, then goes live', async () => {
      const { hub, url } = await setup();
      await publishTicks(hub, 'a', 0, 15);
      await publishTicks(hub, 'b', 100, 105);
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 10, 5000, 'replay');
      await hub.publish('a', 'tick', { n: 15 });
      await client.waitFor((c) => c.events.length === 11, 5000, 'live event');
      expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    });

    it('resumes a single stream from the Last-Event-ID header with exactly the later events', async () => {
      const { hub, url } = await setup();
      const ids = await publishTicks(hub, 'a', 0, 30);
      const client = await openStream(url('stream=a'), { 'last-event-id': ids[11] as string });
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 18);
      await hub.publish('a', 'tick', { n: 30 });
      await client.waitFor((c) => c.events.length === 19);
      expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual(range(12, 31));
      expect(client.events.map((e) => e.id)).toEqual([...ids.slice(12), expect.any(String)]);
    });

    it('takes the lastEventId query parameter when there is no header', async () => {
      const { hub, url } = await setup();
      const ids = await publishTicks(hub, 'a', 0, 5);
      const client = await openStream(url(`stream=a&lastEventId=${ids[2]}`));
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 2);
      await sleep(50);
      expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual([3, 4]);
    });

    it('resumes several streams at once from one id, in the global order', async () => {
      const { hub, url } = await setup();
      const published: { stream: string; n: number; id: string }[] = [];
      for (let n = 0; n < 20; n++) {
        const stream = n % 3 === 0 ? 'a' : n % 3 === 1 ? 'b' : 'c';
        published.push({ stream, n, id: (await hub.publish(stream, 'tick', { n })).id });
      }
      // The last id this client saw was on stream b; it follows a and b.
      const resumeFrom = published[7] as { id: string };
      const client = await openStream(url('stream=a&stream=b'), { 'last-event-id': resumeFrom.id });
      cleanups.push(() => client.close());
      const expected = published.filter((p) => p.n > 7 && p.stream !== 'c');
      await client.waitFor((c) => c.events.length === expected.length);
      await sleep(50);
      expect(client.events.map((e) => e.id)).toEqual(expected.map((p) => p.id));
    });

    it.each([
      ['a malformed id', () => 'not-an-id', 'unknown'],
      ['an id from another hub (another epoch)', () => 'zzzzzz.3', 'foreign'],
      ['an id from the future of this epoch', (epoch: string) => `${epoch}.999999`, 'unknown'],
      ['an id older than the retained history', (epoch: string) => `${epoch}.2`, 'expired'],
    ] as const)('answers %s with resync, then the fresh replay', async (_what, makeId, reason) => {
      const { hub, url } = await setup({}, { historySize: 5, replay: 3 });
      const ids = await publishTicks(hub, 'a', 0, 12);
      const epoch = (ids[0] as string).split('.')[0] as string;
      const lastEventId = makeId(epoch);
      const client = await openStream(url('stream=a'), { 'last-event-id': lastEventId });
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 4);
      const [resync, ...rest] = client.events;
      // The resync moves the client's cursor to where its replay was read: the newest event.
      expect(resync).toEqual({ event: 'resync', id: ids.at(-1), data: JSON.stringify({ reason, lastEventId }) });
      expect(payloads<{ n: number }>(rest).map((p) => p.n)).toEqual([9, 10, 11]);
      expect(hub.stats().resyncs).toBe(1);
    });

    it('gives a fresh client with nothing to replay an id, so a drop before its first event loses nothing', async () => {
      const { hub, url } = await setup();
      const [head] = await publishTicks(hub, 'elsewhere', 0, 1);
      const quiet = await openStream(url('stream=a'));
      cleanups.push(() => quiet.close());
      // Nothing on a yet: the position marker alone, at the hub's position.
      await quiet.waitFor((c) => c.events.length === 1);
      expect(quiet.events).toEqual([{ event: 'ssecast-position', id: head, data: '' }]);
      expect(quiet.raw).toBe(`retry: 3000\n\nevent: ssecast-position\nid: ${head}\ndata:\n\n`);
      quiet.close();
      // More than the replay window is published while it is away; it comes back with the marker's id.
      const missed = await publishTicks(hub, 'a', 0, 15);
      const back = await openStream(url('stream=a'), { 'last-event-id': head as string });
      cleanups.push(() => back.close());
      await back.waitFor((c) => c.events.length === 15);
      expect(back.events.map((e) => e.id)).toEqual(missed);
      expect(hub.stats().resyncs).toBe(0);
    });

    it('delivers a burst of 5,000 events complete and in order', async () => {
      const { hub, url } = await setup();
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      await waitUntil(() => hub.stats().connections === 1);
      await sleep(20);
      await Promise.all(range(0, 5000).map((n) => hub.publish('a', 'tick', { n })));
      await client.waitFor((c) => c.events.length === 5000, 10_000, '5,000 events');
      expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual(range(0, 5000));
      const seqs = client.events.map((e) => Number((e.id as string).split('.')[1]));
      expect(seqs.every((seq, i) => i === 0 || seq > (seqs[i - 1] as number))).toBe(true);
      expect(hub.stats().dropped).toBe(0);
    });

    it('loses and duplicates nothing when EventSource reconnects while publishing goes on', async () => {
      const { hub, server, url } = await setup({ retryMs: 10 }, { historySize: 2000 });
      const source = new EventSource(url('stream=a&stream=b'));
      cleanups.push(() => source.close());
      const received: number[] = [];
      source.addEventListener('tick', (message) => received.push((JSON.parse(message.data) as { n: number }).n));
      await new Promise((resolve) => source.addEventListener('open', resolve));
      await waitUntil(() => hub.stats().connections === 1);
      let drops = 0;
      const dropper = setInterval(() => {
        server.dropConnections();
        drops++;
      }, 40);
      const total = 1500;
      for (let n = 0; n < total; n++) {
        await hub.publish(n % 2 ? 'a' : 'b', 'tick', { n });
        if (n % 10 === 0) await sleep(1);
      }
      await sleep(60);
      clearInterval(dropper);
      await waitUntil(() => received.length >= total, 10_000, `all ${total} events (got ${received.length})`);
      await sleep(100);
      expect(drops).toBeGreaterThan(3);
      expect(received).toEqual(range(0, total));
      expect(hub.stats().resyncs).toBe(0);
    });
  });

  describe('request options', () => {
    it('follows every repeated stream value and only the types asked for', async () => {
      const { hub, url } = await setup();
      const client = await openStream(url('stream=a&stream=b&types=note,tick&types=tick'));
      cleanups.push(() => client.close());
      await waitUntil(() => hub.stats().connections === 1);
      await hub.publish('a', 'note', 'a-note');
      await hub.publish('c', 'note', 'c-note');
      await hub.publish('b', 'tick', { n: 1 });
      const onlyTicks = await openStream(url('stream=a&stream=b&types=tick'));
      cleanups.push(() => onlyTicks.close());
      await client.waitFor((c) => c.events.length === 2);
      await onlyTicks.waitFor((c) => c.events.length === 1);
      await hub.publish('a', 'note', 'filtered out');
      await hub.publish('a', 'tick', { n: 2 });
      await onlyTicks.waitFor((c) => c.events.length === 2);
      expect(client.events.map((e) => e.data).slice(0, 2)).toEqual(['a-note', '{"n":1}']);
      expect(onlyTicks.events.map((e) => [e.event, e.data])).toEqual([
        ['tick', '{"n":1}'],
        ['tick', '{"n":2}'],
      ]);
    });

    it('keeps a types filter across a resume and still sends resync', async () => {
      const { hub, url } = await setup({}, { historySize: 5 });
      const first = await hub.publish('a', 'tick', { n: 0 });
      await hub.publish('a', 'note', 'skip me');
      await hub.publish('a', 'tick', { n: 1 });
      const resumed = await openStream(url('stream=a&types=tick'), { 'last-event-id': first.id });
      const unknown = await openStream(url('stream=a&types=tick'), { 'last-event-id': 'nope' });
      cleanups.push(
        () => resumed.close(),
        () => unknown.close(),
      );
      await resumed.waitFor((c) => c.events.length === 1);
      await unknown.waitFor((c) => c.events.length === 3);
      expect(resumed.events.map((e) => e.data)).toEqual(['{"n":1}']);
      expect(unknown.events.map((e) => e.event)).toEqual(['resync', 'tick', 'tick']);
    });

    it('replays every event since a time, and continues by id when the client reconnects', async () => {
      const { hub, url } = await setup();
      await publishTicks(hub, 'a', 0, 3);
      await sleep(15);
      const since = new Date().toISOString();
      await sleep(5);
      const later = await publishTicks(hub, 'a', 3, 20);
      const client = await openStream(url(`stream=a&since=${encodeURIComponent(since)}`));
      cleanups.push(() => client.close());
      // More than the 10 of a fresh replay: everything since that time.
      await client.waitFor((c) => c.events.length === 17);
      expect(payloads<{ n: number }>(client.events).map((p) => p.n)).toEqual(range(3, 20));
      // A reconnect carries both since= (same URL) and Last-Event-ID: the id wins.
      const reconnect = await openStream(url(`stream=a&since=${encodeURIComponent(since)}`), { 'last-event-id': later[15] as string });
      cleanups.push(() => reconnect.close());
      await reconnect.waitFor((c) => c.events.length === 1);
      await sleep(30);
      expect(payloads<{ n: number }>(reconnect.events).map((p) => p.n)).toEqual([19]);
    });

    it('answers since= older than the retained history with resync expired, then what is left', async () => {
      const { hub, url } = await setup({}, { historySize: 5 });
      const since = new Date(Date.now() - 60_000).toISOString();
      const ids = await publishTicks(hub, 'a', 0, 12);
      const client = await openStream(url(`stream=a&since=${since}`));
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 6);
      expect(client.events[0]).toEqual({ event: 'resync', id: ids.at(-1), data: JSON.stringify({ reason: 'expired', since }) });
      expect(payloads<{ n: number }>(client.events.slice(1)).map((p) => p.n)).toEqual([7, 8, 9, 10, 11]);
    });

    it.each([
      ['since=yesterday', 'since must be an ISO 8601 time'],
      ['since=2026-13-45T00:00:00Z', 'since must be an ISO 8601 time'],
      ['since=2026-01-01T10:00:00', 'since must be an ISO 8601 time'],
      ['types=', 'no empty entry'],
      ['types=a,,b', 'no empty entry'],
      [Array.from({ length: 65 }, (_, i) => `types=t${i}`).join('&'), 'at most 64 types'],
    ])('answers %s with 400 and says why', async (query, message) => {
      const { hub, url } = await setup();
      const client = await openStream(url(`stream=a&${query}`));
      expect(client.status).toBe(400);
      expect(JSON.parse(client.body)).toEqual({ error: 'bad_request', message: expect.stringContaining(message) });
      expect(hub.stats().connections).toBe(0);
    });
  });

  describe('keyed events', () => {
    type Received = { event: string | undefined; id: string | undefined; data: string };
    const seqOf = (id: string | undefined) => Number((id as string).split('.')[1]);
    /** Ids strictly increasing, and no key's value older than one already received. */
    function expectOrdered(events: Received[]): void {
      const ids = events.filter((e) => e.event !== 'resync').map((e) => seqOf(e.id));
      expect(ids).toEqual([...ids].sort((x, y) => x - y));
      expect(new Set(ids).size).toBe(ids.length);
    }

    it('gives a late joiner every key it missed beside the recent tail, in id order', async () => {
      const { hub, url } = await setup({}, { historySize: 10, replay: 5 });
      await hub.publish('a', 'status', { v: 1 }, { key: 'status' });
      await hub.publish('a', 'note', 'pr #1', { key: 'pr' });
      await hub.publish('a', 'status', { v: 2 }, { key: 'status' });
      await publishTicks(hub, 'a', 0, 30);
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 7, 5000, 'state and tail');
      await sleep(30);
      // The key's latest value only (v 1 was superseded), then the last 5 ticks.
      expect(client.events.map((e) => [e.event, e.data])).toEqual([
        ['note', 'pr #1'],
        ['status', '{"v":2}'],
        ...range(25, 30).map((n) => ['tick', JSON.stringify({ n })]),
      ]);
      expectOrdered(client.events);
    });

    it('brings a resume up to date from the keyed state when everything it missed was superseded, without resync', async () => {
      const { hub, url } = await setup({}, { historySize: 5 });
      await publishTicks(hub, 'a', 0, 3);
      const seen = await hub.publish('a', 'tick', { n: 3 });
      await hub.publish('a', 'note', 'phase: running', { key: 'phase' });
      for (let v = 1; v <= 40; v++) await hub.publish('a', 'status', { v }, { key: v % 2 ? 'odd' : 'even' });
      await hub.publish('a', 'note', 'done', { key: 'outcome' });
      const client = await openStream(url('stream=a'), { 'last-event-id': seen.id });
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length >= 6);
      await sleep(50);
      expect(client.events.map((e) => e.event)).not.toContain('resync');
      expectOrdered(client.events);
      // The phase, trimmed from the tail long ago, comes from the state, first.
      expect(client.events[0]).toMatchObject({ event: 'note', data: 'phase: running' });
      expect(client.events).toHaveLength(6);
      // The tail (v 37 to 40 and the outcome) covers both keys: their latest values arrive, last.
      const statuses = client.events.filter((e) => e.event === 'status').map((e) => (JSON.parse(e.data) as { v: number }).v);
      expect(statuses).toEqual([37, 38, 39, 40]);
      expect(client.events.at(-1)).toMatchObject({ event: 'note', data: 'done' });
      // A resume from before an unkeyed event that was trimmed gets resync, then the state and the tail.
      const lost = await openStream(url('stream=a'), { 'last-event-id': formatIdBefore(seen.id) });
      cleanups.push(() => lost.close());
      await lost.waitFor((c) => c.events.length >= 2);
      await sleep(50);
      expect(lost.events[0]).toMatchObject({ event: 'resync' });
      expect(JSON.parse(lost.events[0]?.data as string)).toMatchObject({ reason: 'expired' });
    });

    it('moves the cursor past a trimmed loss when the replay ends on old state, so reconnects do not resync again', async () => {
      const { hub, server, url } = await setup({}, { historySize: 5, replay: 0 });
      await hub.publish('a', 'status', { v: 1 }, { key: 'status' });
      const ticks = await publishTicks(hub, 'a', 0, 20);
      // replay 0: the state alone. Its event is old (seq 1), behind the 15 trimmed ticks.
      const fresh = await openStream(url('stream=a'));
      cleanups.push(() => fresh.close());
      await fresh.waitFor((c) => c.events.length === 2);
      expect(fresh.events[0]).toMatchObject({ event: 'status', data: '{"v":1}' });
      // The position marker: no data to show, an id at the position the replay was read.
      expect(fresh.events[1]).toEqual({ event: 'ssecast-position', id: ticks.at(-1), data: '' });
      expect(fresh.raw).toContain(`event: ssecast-position\nid: ${ticks.at(-1)}\ndata:\n\n`);
      // A reconnect from it resumes exactly, again and again: no resync on a quiet stream.
      for (let i = 0; i < 3; i++) {
        const again = await openStream(url('stream=a'), { 'last-event-id': fresh.events[1]?.id as string });
        cleanups.push(() => again.close());
        await sleep(40);
        expect(again.events).toEqual([]);
        again.close();
      }
      expect(hub.stats().resyncs).toBe(0);
      // A types filter that leaves out the tail does the same, and so does a replay of nothing (replay: 0,
      // only ticks asked for): the client has an id before its first event.
      const typed = await openStream(url('stream=a&types=status'));
      const plain = await openStream(`${server.url}/events?stream=a&types=tick`);
      cleanups.push(
        () => typed.close(),
        () => plain.close(),
      );
      await typed.waitFor((c) => c.events.length === 2);
      expect(typed.events.map((e) => e.event)).toEqual(['status', 'ssecast-position']);
      await plain.waitFor((c) => c.events.length === 1);
      expect(plain.events).toEqual([{ event: 'ssecast-position', id: ticks.at(-1), data: '' }]);
    });

    it('applies since and types to the keyed state as to history', async () => {
      const { hub, url } = await setup({}, { historySize: 3 });
      await hub.publish('a', 'status', { v: 1 }, { key: 'status' });
      await sleep(15);
      const since = new Date().toISOString();
      await sleep(5);
      await hub.publish('a', 'note', 'after', { key: 'pr' });
      await publishTicks(hub, 'a', 0, 6);
      const sinceClient = await openStream(url(`stream=a&since=${encodeURIComponent(since)}`));
      const typed = await openStream(url('stream=a&types=status,tick'));
      cleanups.push(
        () => sinceClient.close(),
        () => typed.close(),
      );
      // since: the pr note (published after `since`) comes from the state; the status (before it) does not;
      // unkeyed ticks 0 to 2 were trimmed after `since`, so the replay says it is incomplete.
      await sinceClient.waitFor((c) => c.events.length >= 5);
      await sleep(30);
      expect(sinceClient.events.map((e) => e.event)).toEqual(['resync', 'note', 'tick', 'tick', 'tick']);
      // types: the status from the state and the ticks; the pr note is filtered out.
      await typed.waitFor((c) => c.events.length >= 4);
      await sleep(30);
      expect(typed.events.map((e) => [e.event, e.data])).toEqual([
        ['status', '{"v":1}'],
        ...range(3, 6).map((n) => ['tick', JSON.stringify({ n })]),
      ]);
    });
  });

  describe('compression', () => {
    it('gzips with compress: true and flushes every event as it is published', async () => {
      const { hub, server } = await setup({ compress: true });
      const response = await rawGet(`${server.url}/events?stream=a`, { 'accept-encoding': 'gzip, deflate' });
      cleanups.push(() => response.close());
      expect(response.headers['content-encoding']).toBe('gzip');
      expect(response.headers.vary).toMatch(/accept-encoding/i);
      await waitUntil(() => hub.stats().connections === 1);
      for (let n = 0; n < 5; n++) {
        await hub.publish('a', 'note', `line ${n}: ${'npm WARN deprecated '.repeat(5)}`);
        // Decodable at once: nothing waits for the compressor's buffer to fill.
        await waitUntil(() => response.text().includes(`line ${n}:`), 5000, `event ${n} to be decodable`);
      }
      expect(response.text().startsWith('retry: 3000\n\n')).toBe(true);
      expect(response.compressedBytes()).toBeLessThan(Buffer.byteLength(response.text()));
    });

    it('sends identity when the client does not accept gzip', async () => {
      const { hub, server } = await setup({ compress: true });
      const response = await rawGet(`${server.url}/events?stream=a`, { 'accept-encoding': 'gzip;q=0, br' });
      cleanups.push(() => response.close());
      expect(response.headers['content-encoding']).toBeUndefined();
      await waitUntil(() => hub.stats().connections === 1);
      await hub.publish('a', 'note', 'plain');
      await waitUntil(() => response.text().includes('data: plain'));
    });
  });

  describe('heartbeats', () => {
    it('sends :heartbeat to an idle connection and not to a busy one', async () => {
      const { hub, url } = await setup({ heartbeatMs: 100 });
      const idle = await openStream(url('stream=quiet'));
      const busy = await openStream(url('stream=busy'));
      cleanups.push(
        () => idle.close(),
        () => busy.close(),
      );
      await waitUntil(() => hub.stats().connections === 2);
      const pump = setInterval(() => void hub.publish('busy', 'note', 'x'), 10);
      const heartbeats = (client: typeof idle) => client.comments.filter((c) => c === 'heartbeat').length;
      await waitUntil(() => heartbeats(idle) >= 5, 10_000, 'five heartbeats on the idle connection');
      clearInterval(pump);
      expect(idle.raw).toContain('\n\n:heartbeat\n\n');
      // A machine stalled for a whole interval may owe the busy one a single heartbeat; never more.
      expect(heartbeats(busy)).toBeLessThanOrEqual(1);
      expect(busy.events.length).toBeGreaterThan(10);
    });

    it('runs no heartbeat timer once every connection is gone', async () => {
      const { hub, url } = await setup({ heartbeatMs: 50 });
      const client = await openStream(url('stream=a'));
      await waitUntil(() => hub.stats().connections === 1);
      expect(hub.heartbeatScheduler(50).running).toBe(true);
      client.close();
      await waitUntil(() => hub.stats().connections === 0);
      expect(hub.heartbeatScheduler(50).running).toBe(false);
      expect(hub.heartbeatScheduler(50).size).toBe(0);
    });
  });

  describe('cleanup and slow clients', () => {
    it('leaves nothing behind after the client disconnects and gives the slot back', async () => {
      const { hub, url } = await setup({ authorize: () => ({ id: 'u1', streams: '*' }), maxConnectionsPerPrincipal: 1, heartbeatMs: 50 });
      const client = await openStream(url('stream=a&stream=b'));
      await waitUntil(() => hub.stats().connections === 1);
      expect(hub.stats()).toMatchObject({ connections: 1, streams: 2 });
      const second = await openStream(url('stream=a'));
      expect(second.status).toBe(429);
      client.close();
      await waitUntil(() => hub.stats().connections === 0, 5000, 'the hub to forget the connection');
      expect(hub.stats()).toMatchObject({ connections: 0, streams: 0, wildcardConnections: 0 });
      expect(hub.heartbeatScheduler(50).size).toBe(0);
      const again = await openStream(url('stream=a'));
      cleanups.push(() => again.close());
      expect(again.status).toBe(200);
    });

    it('cuts off a client that never reads while another keeps receiving everything', async () => {
      const { hub, server } = await setup({ maxUnsentBytes: 256 * 1024 });
      const reader = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => reader.close());
      const stalled = stalledClient(server.port, '/events?stream=a');
      cleanups.push(() => void stalled.socket.destroy());
      await waitUntil(() => hub.stats().connections === 2);
      const chunk = 'x'.repeat(4000);
      const total = 4000; // 16 MB: more than any loopback socket buffer holds
      // Paced by the reader, so it is a client that keeps up however slow the
      // machine (it shares this process): at most ~40 events (160 KB) in flight.
      for (let n = 0; n < total; n++) {
        await hub.publish('a', 'note', `${n}:${chunk}`);
        if (n % 20 === 19) await reader.waitFor((c) => c.events.length >= n - 20, 10_000, `the reader to get event ${n - 20}`);
      }
      await reader.waitFor((c) => c.events.length === total, 20_000, 'the reading client to get every event');
      await waitUntil(() => hub.stats().dropped === 1, 5000, 'the stalled client to be cut off');
      // Reading now finds the end of a stream the server tore down.
      stalled.socket.resume();
      await waitUntil(() => stalled.closed, 5000, 'the stalled socket to see the close');
      expect(reader.events.map((e) => Number(e.data.split(':')[0]))).toEqual(range(0, total));
      expect(hub.stats()).toMatchObject({ dropped: 1, connections: 1 });
    }, 30_000);
  });

  describe('refusals', () => {
    const authorize = (req: RequestInfo) => {
      const user = req.header('x-user');
      if (user === 'alice') return { id: 'alice', streams: ['a', 'b'] };
      if (user === 'admin') return { id: 'admin', streams: '*' as const };
      return null;
    };

    it('answers 401 without a principal, 403 for a stream it may not read or for *, 429 past the limit', async () => {
      const { hub, url } = await setup({
        authorize,
        maxConnectionsPerPrincipal: 2,
        streams: (req) => {
          const query = new URL(req.url ?? '', 'http://x').searchParams;
          return query.get('all') ? '*' : query.getAll('stream');
        },
      });
      const anonymous = await openStream(url('stream=a'));
      expect(anonymous.status).toBe(401);
      expect(JSON.parse(anonymous.body)).toEqual({ error: 'unauthorized', message: 'authentication required' });

      const forbidden = await openStream(url('stream=a&stream=secret'), { 'x-user': 'alice' });
      expect(forbidden.status).toBe(403);
      expect(JSON.parse(forbidden.body)).toMatchObject({ error: 'forbidden', message: expect.stringContaining('secret') });
      const everything = await openStream(url('all=1'), { 'x-user': 'alice' });
      expect(everything.status).toBe(403);

      const first = await openStream(url('stream=a'), { 'x-user': 'alice' });
      const second = await openStream(url('stream=b'), { 'x-user': 'alice' });
      cleanups.push(
        () => first.close(),
        () => second.close(),
      );
      const third = await openStream(url('stream=a'), { 'x-user': 'alice' });
      expect([first.status, second.status, third.status]).toEqual([200, 200, 429]);
      expect(JSON.parse(third.body).error).toBe('too_many_connections');
      const admin = await openStream(url('all=1'), { 'x-user': 'admin' });
      cleanups.push(() => admin.close());
      expect(admin.status).toBe(200);

      first.close();
      await waitUntil(() => hub.stats().connections === 2);
      const fourth = await openStream(url('stream=a'), { 'x-user': 'alice' });
      cleanups.push(() => fourth.close());
      expect(fourth.status).toBe(200);
      // 401, 403, 403 and 429: each refusal counted once, and none of them a hook error.
      expect(hub.stats()).toMatchObject({ rejected: 4, hookErrors: 0 });
    });

    it('answers 400 for no stream, too many streams and an oversized Last-Event-ID, and 405 for POST', async () => {
      const { server, url } = await setup();
      const none = await openStream(url(''));
      expect(none.status).toBe(400);
      expect(JSON.parse(none.body)).toMatchObject({ error: 'bad_request', message: expect.stringContaining('no stream') });
      const many = await openStream(
        url(
          range(0, 51)
            .map((n) => `stream=s${n}`)
            .join('&'),
        ),
      );
      expect(many.status).toBe(400);
      expect(JSON.parse(many.body).message).toContain('at most 50 streams');
      const fifty = await openStream(
        url(
          range(0, 50)
            .map((n) => `stream=s${n}`)
            .join('&'),
        ),
      );
      fifty.close();
      expect(fifty.status).toBe(200);
      const longId = await openStream(url('stream=a'), { 'last-event-id': 'x'.repeat(2000) });
      expect(longId.status).toBe(400);
      const longName = await openStream(url(`stream=${'n'.repeat(300)}`));
      expect(longName.status).toBe(400);
      const post = await fetch(`${server.url}/events?stream=a`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET');
      expect((await post.json()).error).toBe('method_not_allowed');
    });

    it('answers 500 when a hook throws, reports it through onError, and keeps serving', async () => {
      const reported: unknown[] = [];
      const { hub, url } = await setup({
        authorize: (req) => {
          if (req.url.searchParams.has('boom')) throw new Error('database exploded: secret detail');
          return { id: 'u', streams: '*' };
        },
        onError: (error) => reported.push(error),
      });
      const healthy = await openStream(url('stream=a'));
      cleanups.push(() => healthy.close());
      const broken = await openStream(url('stream=a&boom=1'));
      expect(broken.status).toBe(500);
      expect(broken.body).not.toContain('secret detail');
      expect(JSON.parse(broken.body)).toEqual({ error: 'internal_error', message: 'the stream could not be opened' });
      expect(reported).toHaveLength(1);
      expect((reported[0] as Error).message).toContain('database exploded');
      expect(hub.stats()).toMatchObject({ rejected: 1, hookErrors: 1 });
      await waitUntil(() => hub.stats().connections === 1);
      await hub.publish('a', 'note', 'still here');
      await healthy.waitFor((c) => c.events.length === 1);
      expect(healthy.events[0]?.data).toBe('still here');
    });

    it('rejects a payload that cannot be serialised and stores and sends nothing', async () => {
      const { hub, url } = await setup();
      const client = await openStream(url('stream=a'));
      cleanups.push(() => client.close());
      await waitUntil(() => hub.stats().connections === 1);
      const first = await hub.publish('a', 'note', 'before');
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await expect(hub.publish('a', 'tick', cyclic as never)).rejects.toThrow(/cannot be serialised/);
      await expect(hub.publish('a', 'tick', { n: 10n } as never)).rejects.toMatchObject({ code: 'ERR_SSE_DATA_UNSERIALIZABLE' });
      const after = await hub.publish('a', 'note', 'after');
      await client.waitFor((c) => c.events.length === 2);
      await sleep(30);
      expect(client.events.map((e) => e.data)).toEqual(['before', 'after']);
      const seq = (id: string) => Number(id.split('.')[1]);
      expect(seq(after.id)).toBe(seq(first.id) + 1);
      expect(hub.stats().published).toBe(2);
    });
  });

  describe('shutdown', () => {
    it('ends open streams cleanly when the hub closes', async () => {
      const { hub, url } = await setup();
      const client = await openStream(url('stream=a'));
      await waitUntil(() => hub.stats().connections === 1);
      await hub.publish('a', 'note', 'last words');
      await hub.close();
      await client.ended;
      expect(client.events.map((e) => e.data)).toEqual(['last words']);
      const late = await openStream(url('stream=a'));
      expect(late.status).toBe(503);
    });

    it('closes mid-burst: every client gets exactly what publish accepted, in order, and an ended response; no write after end', async () => {
      const { hub, server, url } = await setup({}, { historySize: 2000 });
      const responseErrors: unknown[] = [];
      server.server.on('request', (_req, res: http.ServerResponse) => res.on('error', (error) => responseErrors.push(error)));
      const rejections: unknown[] = [];
      const onRejection = (reason: unknown) => rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      cleanups.push(() => process.off('unhandledRejection', onRejection));

      const clients = await Promise.all(Array.from({ length: 10 }, () => rawGet(url('stream=a'), {})));
      cleanups.push(() => clients.forEach((client) => client.close()));
      await waitUntil(() => hub.stats().connections === 10);
      // Publish without waiting, as a busy app does, and close the hub in the middle of it.
      const accepted: number[] = [];
      const refused: unknown[] = [];
      const publishes = range(0, 400).map((n) =>
        hub.publish('a', 'tick', { n }).then(
          () => accepted.push(n),
          (error: unknown) => refused.push(error),
        ),
      );
      await waitUntil(() => accepted.length >= 1, 5000, 'an accepted event');
      await hub.close();
      await Promise.all(publishes);
      for (const error of refused) expect(error).toMatchObject({ code: 'ERR_HUB_CLOSED' });
      expect(accepted.length).toBeGreaterThan(0);

      for (const client of clients) {
        await client.ended;
        expect(client.endedCleanly()).toBe(true);
        const got = [...client.text().matchAll(/data: \{"n":(\d+)\}/g)].map((match) => Number(match[1]));
        expect(got).toEqual(accepted);
      }
      await sleep(50);
      expect(responseErrors).toEqual([]);
      expect(rejections).toEqual([]);
    });
  });
});

interface RawResponse {
  headers: http.IncomingHttpHeaders;
  /** Resolves when the response is over, however it ended. */
  ended: Promise<void>;
  /** True when the server ended the response (a complete chunked body), false when the connection was cut. */
  endedCleanly(): boolean;
  /** Everything received so far, decompressed as far as it can be. */
  text(): string;
  compressedBytes(): number;
  close(): void;
}

/** A GET that sees the bytes on the wire: no transparent decompression, gunzipped here chunk by chunk. */
function rawGet(url: string, headers: Record<string, string>): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let text = '';
      let compressed = 0;
      const gzipped = res.headers['content-encoding'] === 'gzip';
      const gunzip = zlib.createGunzip();
      gunzip.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      gunzip.on('error', () => {});
      res.on('data', (chunk: Buffer) => {
        compressed += chunk.length;
        if (gzipped) gunzip.write(chunk);
        else text += chunk.toString('utf8');
      });
      res.on('error', () => {});
      let clean = false;
      res.on('end', () => (clean = true));
      const ended = new Promise<void>((done) => res.on('close', done));
      resolve({
        headers: res.headers,
        ended,
        endedCleanly: () => clean && res.complete,
        text: () => text,
        compressedBytes: () => compressed,
        close: () => request.destroy(),
      });
    });
    request.on('error', reject);
  });
}
