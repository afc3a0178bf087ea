// The position marker a fresh connection gets when its replay sends nothing, on Redis with two
// instances under publishing load: this instance's fan-out reader may still be behind the read
// position, and nothing at or below the marker's id may follow it (a client that dropped right
// after the marker would resume past those events, and the ids would go backwards).
import { EventSource } from 'eventsource';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { describe, expect, it } from 'vitest';
import { createSseHandler } from '../../src/adapters/node.js';
import { RedisBackend } from '../../src/backends/redis/index.js';
import { EventManager } from '../../src/index.js';
import { Redis } from 'ioredis';
import { cleanupAfterEach, sleep, startServer } from '../support/helpers.js';
import { lagProxy } from '../support/proxy.js';
import { REDIS_URL, sharedClient, uniquePrefix } from '../support/redis.js';

const cleanups = cleanupAfterEach();
if (!REDIS_URL) console.warn('\n*** SKIPPING the Redis position-marker test: no Redis server (start one, or install redis-server) ***\n');

const seqOf = (id: string) => Number(id.split('.')[1]);

/** Reads a stream for `ms`, then leaves. */
async function readFor(url: string, ms: number): Promise<EventSourceMessage[]> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } });
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event) });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), new Promise<null>((resolve) => setTimeout(() => resolve(null), 20))]);
    if (chunk?.done) break;
    if (chunk?.value) parser.feed(decoder.decode(chunk.value, { stream: true }));
  }
  controller.abort();
  return events;
}

/** Instance A on Redis directly, and a client for B that reaches Redis through a proxy lagging each connection by `lagFor` what it sent first. */
async function lagging(lagFor: (sent: string) => number) {
  const prefix = uniquePrefix();
  const proxy = await lagProxy(Number(new URL(REDIS_URL as string).port || 6379), lagFor);
  const viaProxy = new Redis({ port: proxy.port, host: '127.0.0.1', lazyConnect: true });
  const a = new EventManager({ backend: new RedisBackend({ redis: sharedClient(), prefix }) });
  cleanups.push(
    () => proxy.close(),
    () => viaProxy.disconnect(),
    () => a.close(),
  );
  return { prefix, viaProxy, a };
}

describe.skipIf(!REDIS_URL)('the position marker on Redis, publishing on another instance', () => {
  it('never sends an id at or below the one before it, markers included (replay: 0, fresh connections while A publishes)', async () => {
    const prefix = uniquePrefix();
    const a = new EventManager({ backend: new RedisBackend({ redis: sharedClient(), prefix }) });
    const b = new EventManager({ backend: new RedisBackend({ redis: sharedClient(), prefix }) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const server = await startServer(createSseHandler(b, { replay: 0 }));
    cleanups.push(() => server.close());
    await a.publish('s', 'tick', { n: -1 });
    let publishing = true;
    const publisher = (async () => {
      for (let n = 0; publishing; n += 20) await Promise.all(Array.from({ length: 20 }, (_, i) => a.publish('s', 'tick', { n: n + i })));
    })();
    const backwards: string[] = [];
    let ticks = 0;
    for (let trial = 0; trial < 40; trial++) {
      const events = (await readFor(`${server.url}/events?stream=s`, 120)).filter((event) => event.id);
      ticks += events.filter((event) => event.event === 'tick').length;
      events.forEach((event, i) => {
        const before = events[i - 1];
        if (before && seqOf(event.id as string) <= seqOf(before.id as string)) backwards.push(`${event.id} after ${before.id}`);
      });
    }
    publishing = false;
    await publisher;
    expect(ticks).toBeGreaterThan(40);
    expect(backwards).toEqual([]);
  }, 60_000);
});

describe.skipIf(!REDIS_URL)('a fresh connection to an instance whose fan-out lags the history read', () => {
  // B reaches Redis through a proxy: its commands wait 100 ms each way, its fan-out reader 400 ms.
  // A client opens on B, and A publishes as soon as the response has started: B's history read
  // sees events its reader brings only later. CI once lost a burst's first batch this way (the
  // position marker moved the client past events it had not got yet).
  const cases = [
    // B's reader has its start position and is behind: the hub waits for it before going live.
    { when: 'its reader is behind', replay: 0, starting: false },
    { when: 'its reader is behind', replay: 3, starting: false },
    // B was just made: its reader does not know where it starts yet, so the response waits for it.
    { when: 'it is still connecting to Redis', replay: 0, starting: true },
  ];
  for (const { when, replay, starting } of cases) {
    it(`gets every event published after its response started, once and in order, when ${when} (replay: ${replay})`, async () => {
      const { prefix, viaProxy, a } = await lagging((sent) =>
        sent.includes('ssecast-fanout') ? 400 : sent.includes('ssecast:') ? 100 : 0,
      );
      for (let n = 0; n < 10; n++) await a.publish('s', 'tick', { n: -1 });
      const b = new EventManager({ backend: new RedisBackend({ redis: viaProxy, prefix, commandTimeoutMs: 5000 }) });
      cleanups.push(() => b.close());
      const server = await startServer(createSseHandler(b, { replay }));
      cleanups.push(() => server.close());
      if (!starting) {
        // B is open once its publish is stored; quiet for longer than the reader's lag, so that
        // nothing is on its way to B when the client comes.
        await b.publish('s', 'tick', { n: -1 });
        await sleep(1500);
      }
      const controller = new AbortController();
      cleanups.push(() => controller.abort());
      const response = await fetch(`${server.url}/events?stream=s`, { signal: controller.signal });
      const events: EventSourceMessage[] = [];
      const parser = createParser({ onEvent: (event) => events.push(event) });
      const reading = (async () => {
        const decoder = new TextDecoder();
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        try {
          for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
            parser.feed(decoder.decode(chunk.value, { stream: true }));
        } catch {
          // aborted
        }
      })();
      // The response has started: every event published from here on is the client's.
      const published: number[] = [];
      for (let round = 0; round < 10; round++) {
        const ids = await Promise.all(
          Array.from({ length: 10 }, (_, i) => a.publish('s', 'tick', { n: round * 10 + i }).then((event) => event.id)),
        );
        published.push(...ids.map(seqOf));
        await sleep(20);
      }
      const last = Math.max(...published);
      const deadline = Date.now() + 10_000;
      while (!events.some((event) => event.event === 'tick' && seqOf(event.id as string) >= last) && Date.now() < deadline) await sleep(20);
      controller.abort();
      await reading;
      const seqs = events.filter((event) => event.event === 'tick').map((event) => seqOf(event.id as string));
      expect(published.filter((seq) => !seqs.includes(seq))).toEqual([]);
      // Ids on the wire (events and any marker) only ever go up: none twice, none out of order.
      const ids = events.filter((event) => event.id).map((event) => seqOf(event.id as string));
      expect(ids.filter((id, i) => i > 0 && id <= (ids[i - 1] as number))).toEqual([]);
    }, 30_000);
  }
});

describe.skipIf(!REDIS_URL)('an instance whose fan-out reader has not started', () => {
  // B's hub opened without its reader (Redis was slow for longer than commandTimeoutMs), so its
  // gate lets requests through; its commands answer at once, its reader's connection lags 1.5 s
  // each way. A history read then sees events that the reader, once it knows where it starts
  // (after them), will never bring: no subscription may go live on such a read. B refuses
  // history reads until its reader has started, so the stream ends and the client resumes.
  it('refuses history reads until its reader has started, and an EventSource resuming on B while A publishes loses nothing', async () => {
    const { prefix, viaProxy, a } = await lagging((sent) => (sent.includes('ssecast-fanout') ? 1500 : 0));
    const [start] = await Promise.all(Array.from({ length: 5 }, (_, n) => a.publish('s', 'tick', { n })));
    const errors: string[] = [];
    const b = new EventManager({
      backend: new RedisBackend({ redis: viaProxy, prefix, commandTimeoutMs: 300 }),
      onError: (error, { source }) => errors.push(`${source}: ${(error as Error).message}`),
    });
    cleanups.push(() => b.close());
    const server = await startServer(createSseHandler(b, { retryMs: 100 }));
    cleanups.push(() => server.close());
    let publishing = true;
    const published: number[] = [];
    const publisher = (async () => {
      for (let n = 0; publishing; n++) {
        published.push(seqOf((await a.publish('s', 'tick', { n })).id));
        // Fewer than the 100 a stream keeps on Redis by the end, so that the resume stays exact.
        await sleep(100);
      }
    })();
    await sleep(400);
    // Resumes from the first event (by query: an EventSource sends no header on its first request).
    const source = new EventSource(`${server.url}/events?stream=s&lastEventId=${start?.id}`);
    cleanups.push(() => source.close());
    const seqs: number[] = [];
    source.addEventListener('tick', (event) => seqs.push(seqOf((event as MessageEvent).lastEventId)));
    // Long enough for B's reader to start (a few of its round trips) and to deliver live.
    await sleep(8000);
    publishing = false;
    await publisher;
    const last = published[published.length - 1] as number;
    const deadline = Date.now() + 10_000;
    while (!seqs.includes(last) && Date.now() < deadline) await sleep(50);
    source.close();
    const expected = [2, 3, 4, 5, ...published];
    expect(seqs.filter((seq, i) => i > 0 && seq <= (seqs[i - 1] as number))).toEqual([]);
    expect(expected.filter((seq) => !seqs.includes(seq))).toEqual([]);
    // The requests before the reader started ended with this, and the client came back.
    expect(errors[0]).toMatch(/^backend\.read: this instance's fan-out reader has not reached Redis yet .*could not read history$/);
  }, 40_000);
});
