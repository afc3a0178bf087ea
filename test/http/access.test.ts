import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import type { Principal } from '../../src/http/gate.js';
import { ADAPTERS, type RequestInfo } from '../support/adapters.js';
import { cleanupAfterEach, openStream, payloads, startServer, waitUntil } from '../support/helpers.js';
import { BACKENDS } from '../support/redis.js';
import { watchTimers } from '../support/timers.js';

/**
 * Who may read what, over time: credentials that expire mid-stream, a
 * reconnect whose principal may read less than before, and the `retry:`
 * range that spreads reconnects. Every adapter, every backend.
 */

type Events = { tick: { stream: string; n: number } };

const cleanups = cleanupAfterEach();

/** Tokens the tests hand out: `x-token: <name>` picks a principal from this table. */
function tokenAuth(tokens: Record<string, Principal>): (req: RequestInfo) => Principal | null {
  return (req) => tokens[req.header('x-token') ?? ''] ?? null;
}

const MATRIX = BACKENDS.flatMap((backend) => ADAPTERS.map((adapter) => ({ name: `${adapter.name} on ${backend.name}`, adapter, backend })));

describe.each(MATRIX)('$name', ({ adapter, backend }) => {
  async function setup(tokens: Record<string, Principal>, maxConnectionsPerPrincipal = 10) {
    const hub = backend.hub<Events>();
    const server = await adapter.mount(hub, {
      authorize: tokenAuth(tokens),
      maxConnectionsPerPrincipal,
      streams: (req) => (req.url.searchParams.get('all') ? '*' : req.url.searchParams.getAll('stream')),
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const publish = async (stream: string, n: number) => (await hub.publish(stream, 'tick', { stream, n })).id;
    return { hub, url: (query: string) => `${server.url}/events?${query}`, publish };
  }

  it('ends the stream cleanly when the credentials expire, frees the slot, and answers 401 to the expired token', async () => {
    const tokens: Record<string, Principal> = {};
    const { hub, url, publish } = await setup(tokens, 1);
    // Minted just before use, with room for a loaded machine: the expiry must come after the first event.
    tokens.short = { id: 'alice', streams: ['a'], expiresAt: Date.now() + 1200 };
    const client = await openStream(url('stream=a'), { 'x-token': 'short' });
    cleanups.push(() => client.close());
    expect(client.status).toBe(200);
    await waitUntil(() => hub.stats().connections === 1);
    const first = await publish('a', 1);
    await client.waitFor((c) => c.events.length === 1);

    // The server ends the response itself, with a comment saying why: no abort, no error.
    await client.ended;
    expect(client.raw.endsWith(': credentials expired\n\n')).toBe(true);
    expect(client.comments).toContain('credentials expired');
    await waitUntil(() => hub.stats().connections === 0);

    const again = await openStream(url('stream=a'), { 'x-token': 'short', 'last-event-id': first });
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body)).toEqual({ error: 'unauthorized', message: 'the credentials have expired; sign in again' });

    // Fresh credentials resume exactly; the principal's one slot came back when the stream ended.
    const second = await publish('a', 2);
    tokens.fresh = { id: 'alice', streams: ['a'], expiresAt: new Date(Date.now() + 60_000) };
    const resumed = await openStream(url('stream=a'), { 'x-token': 'fresh', 'last-event-id': first });
    cleanups.push(() => resumed.close());
    expect(resumed.status).toBe(200);
    await resumed.waitFor((c) => c.events.length === 1);
    expect(resumed.events.map((event) => event.id)).toEqual([second]);
  });

  it('checks a resume against the principal it has now: nothing of a stream it lost leaks through replay, since or *', async () => {
    const tokens: Record<string, Principal> = {
      before: { id: 'bob', streams: ['a', 'b'] },
      after: { id: 'bob', streams: ['a'] },
    };
    const { hub, url, publish } = await setup(tokens);
    const start = new Date().toISOString();
    const first = await publish('a', 1);
    await publish('b', 1);
    await publish('a', 2);
    await publish('b', 2);

    const both = await openStream(url('stream=a&stream=b'), { 'x-token': 'before', 'last-event-id': first });
    cleanups.push(() => both.close());
    await both.waitFor((c) => c.events.length === 3);
    both.close();

    for (const query of ['stream=a&stream=b', 'stream=b', 'all=1']) {
      const refused = await openStream(url(query), { 'x-token': 'after', 'last-event-id': first });
      expect(refused.status).toBe(403);
      expect(refused.body).not.toContain('tick');
    }
    const resumed = await openStream(url('stream=a'), { 'x-token': 'after', 'last-event-id': first });
    const fromTime = await openStream(url(`stream=a&since=${encodeURIComponent(start)}`), { 'x-token': 'after' });
    const fresh = await openStream(url('stream=a'), { 'x-token': 'after' });
    cleanups.push(
      () => resumed.close(),
      () => fromTime.close(),
      () => fresh.close(),
    );
    await resumed.waitFor((c) => c.events.length === 1);
    await fromTime.waitFor((c) => c.events.length === 2);
    await fresh.waitFor((c) => c.events.length === 2);
    await publish('b', 3);
    await publish('a', 3);
    await resumed.waitFor((c) => c.events.length === 2);
    await fromTime.waitFor((c) => c.events.length === 3);
    await fresh.waitFor((c) => c.events.length === 3);
    expect(payloads(resumed.events)).toEqual([
      { stream: 'a', n: 2 },
      { stream: 'a', n: 3 },
    ]);
    for (const client of [fromTime, fresh]) {
      expect(payloads(client.events)).toEqual([1, 2, 3].map((n) => ({ stream: 'a', n })));
      expect(client.raw).not.toContain('"b"');
    }
    expect(hub.stats().connections).toBe(3);
  });
});

describe('the retry: hint', () => {
  it('is drawn per connection from retryMs { min, max }, spread over the range', async () => {
    const hub = new EventManager();
    const server = await startServer(createSseHandler(hub, { retryMs: { min: 1000, max: 4999 } }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const retries: number[] = [];
    for (let i = 0; i < 200; i++) {
      const client = await openStream(`${server.url}/?stream=s`);
      await client.waitFor((c) => c.retries.length === 1);
      retries.push(client.retries[0] as number);
      client.close();
    }
    expect(retries.every((ms) => Number.isInteger(ms) && ms >= 1000 && ms <= 4999)).toBe(true);
    expect(new Set(retries).size).toBeGreaterThan(100);
    // Each quarter of the range gets some: P(a quarter empty in 200 draws) is about 1e-25.
    const quarters = [0, 0, 0, 0];
    for (const ms of retries) quarters[Math.floor((ms - 1000) / 1000)]!++;
    expect(quarters.every((count) => count > 10)).toBe(true);
  });

  it('is a TypeError naming the option when the range is malformed', () => {
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    expect(() => createSseHandler(hub, { retryMs: { min: 5000, max: 1000 } })).toThrow(
      'retryMs.min (5000) must not exceed retryMs.max (1000)',
    );
    expect(() => createSseHandler(hub, { retryMs: { min: -1, max: 1000 } })).toThrow('retryMs.min must be a non-negative integer, got -1');
    expect(() => createSseHandler(hub, { retryMs: { min: 1, max: 1.5 } })).toThrow('retryMs.max must be a non-negative integer, got 1.5');
    expect(() => createSseHandler(hub, { retryMs: '3s' as never })).toThrow(
      'retryMs must be a number of milliseconds or { min, max }, got 3s',
    );
    expect(() => createSseHandler(hub, { retryMs: -5 })).toThrow('retryMs must be a non-negative integer, got -5');
  });
});

describe('expiresAt', () => {
  it('answers 500 (reported, text withheld) when authorize returns an expiresAt that is not a time', async () => {
    const hub = new EventManager();
    const reported: unknown[] = [];
    const server = await startServer(
      createSseHandler(hub, {
        authorize: () => ({ id: 'x', streams: '*', expiresAt: 'tomorrow' as never }),
        onError: (error) => reported.push(error),
      }),
    );
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=s`);
    expect(client.status).toBe(500);
    expect(client.body).not.toContain('tomorrow');
    expect(String(reported[0])).toBe('TypeError: principal.expiresAt must be a Date or epoch milliseconds, got tomorrow');
  });

  it('leaves no timer behind when the client leaves before its credentials expire', async () => {
    const hub = new EventManager();
    const server = await startServer(
      createSseHandler(hub, {
        authorize: () => ({ id: 'x', streams: '*', expiresAt: Date.now() + 3_600_000 }),
        maxConnectionsPerPrincipal: 50,
      }),
    );
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    // The timer is unref'd (the open response holds the process anyway): watched through async_hooks.
    const timers = watchTimers('connection.ts');
    cleanups.push(() => timers.stop());
    const clients = await Promise.all(Array.from({ length: 20 }, () => openStream(`${server.url}/?stream=s`)));
    await waitUntil(() => hub.stats().connections === 20);
    expect(timers.live).toBe(20);
    for (const client of clients) client.close();
    await waitUntil(() => hub.stats().connections === 0);
    await waitUntil(() => timers.live === 0, 2000, 'every expiry timer to be cleared');
  });
});
