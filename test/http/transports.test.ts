import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { EventManager, type EventManagerOptions } from '../../src/index.js';
import type { Principal } from '../../src/http/gate.js';
import { cleanupAfterEach, sleep, waitUntil, type ParsedEvent } from '../support/helpers.js';
import {
  EXPRESS,
  FASTIFY,
  FETCH,
  NODE,
  openSse,
  requestSse,
  stalledClient,
  type HandlerOptions,
  type OpenOptions,
  type SseClient,
  type Transport,
  type TransportAdapter,
} from '../support/transports.js';

/**
 * The transport-sensitive behaviour of every adapter over every transport it
 * supports (HTTP/1.1, HTTPS, HTTP/2 over TLS, h2c), plain and gzipped,
 * asserted on the wire: resume, heartbeats, a clean end (also to a client
 * that is far behind), the slow-consumer cut-off, and a client that leaves
 * while `authorize` is pending. Backpressure, teardown and "the client has
 * gone" differ per transport (TCP reset vs TLS destroy vs HTTP/2 stream
 * reset; socket vs stream close), which is where these have broken before.
 *
 * Cases: resume; heartbeat; clean end on expiry (a principal's expiresAt,
 * the cheap clean end); clean end on hub.close() to a client that has not
 * read megabytes (slowEnd); slow-consumer cut-off; abort during authorize.
 *
 * Matrix (98 tests, about 17 s on two cores; every case for every adapter,
 * transport and encoding is 168 tests and twice the time):
 * - node:http handler: every case, over all four transports, plain and gzip.
 *   It is the reference: Express and Fastify share its stream code.
 * - Express 5 (HTTP/1.1, HTTPS), Fastify 5 and fetch behind @hono/node-server
 *   (HTTP/1.1, HTTPS, HTTP/2, h2c): resume, slowEnd, slow-consumer cut-off and
 *   abort during authorize once per transport, gzip on for half of them,
 *   alternating so that each case runs both plain and gzipped on every
 *   adapter; plus the gzipped heartbeat (a flush that an adapter's own
 *   response path could hold back) on every transport.
 */

type Events = { note: string };
type CaseName = 'resume' | 'heartbeat' | 'expiry' | 'slowEnd' | 'slowConsumer' | 'abort';

interface Combo {
  adapter: TransportAdapter;
  transport: Transport;
  compress: boolean;
  cases: CaseName[];
}

const ALL_CASES: CaseName[] = ['resume', 'heartbeat', 'expiry', 'slowEnd', 'slowConsumer', 'abort'];
const ROTATED: CaseName[] = ['resume', 'slowEnd', 'slowConsumer', 'abort'];

function plan(): Combo[] {
  const combos: Combo[] = [];
  for (const transport of NODE.transports) {
    for (const compress of [false, true]) combos.push({ adapter: NODE, transport, compress, cases: ALL_CASES });
  }
  for (const adapter of [EXPRESS, FASTIFY, FETCH]) {
    adapter.transports.forEach((transport, i) => {
      const gzipped = ROTATED.filter((_, j) => (i + j) % 2 === 1);
      const plain = ROTATED.filter((name) => !gzipped.includes(name));
      combos.push({ adapter, transport, compress: false, cases: plain });
      combos.push({ adapter, transport, compress: true, cases: ['heartbeat', ...gzipped] });
    });
  }
  return combos;
}

const MATRIX = plan().map(
  (combo) => [`${combo.adapter.name} over ${combo.transport.name}${combo.compress ? ', gzip' : ''}`, combo] as const,
);

const cleanups = cleanupAfterEach();

/**
 * 32 KiB payloads of base64 noise: gzip (an 8 KiB window by default) cannot
 * shrink them much, so compressed streams feel backpressure as plain ones do.
 */
const BLOCKS = Array.from({ length: 4 }, () => randomBytes(24 * 1024).toString('base64'));
const payload = (n: number) => `${n}:${BLOCKS[n % BLOCKS.length]}`;
const numberOf = (event: ParsedEvent) => Number(event.data.slice(0, event.data.indexOf(':')));

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fail = () => new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(fail()), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

describe.each(MATRIX)('%s', (_name, { adapter, transport, compress, cases }) => {
  const gzipHeaders: Record<string, string> = compress ? { 'accept-encoding': 'gzip' } : {};

  async function setup(handler: HandlerOptions = {}, hubOptions: EventManagerOptions = {}) {
    const hub = new EventManager<Events>(hubOptions);
    // Transport failures are reported here (instead of console.error) and checked by the tests.
    const reported: unknown[] = [];
    const served = await adapter.mount(transport, hub, { compress, onError: (error) => reported.push(error), ...handler });
    cleanups.push(
      () => hub.close(),
      () => served.close(),
    );
    const open = async (path: string, options: OpenOptions = {}): Promise<SseClient> => {
      const client = await openSse(served, path, { ...options, headers: { ...gzipHeaders, ...options.headers } });
      cleanups.push(() => client.close());
      return client;
    };
    return { hub, served, reported, open };
  }

  /** A 200 event stream, gzipped exactly when compression is on. */
  function expectStream(client: SseClient): void {
    expect(client.status, client.body).toBe(200);
    expect(client.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(client.headers['content-encoding']).toBe(compress ? 'gzip' : undefined);
  }

  // Only the cases of this combination are registered (see the matrix above).
  const covered = (name: CaseName, title: string, body: () => Promise<void>, timeoutMs?: number) => {
    if (cases.includes(name)) it(title, body, timeoutMs);
  };

  covered('resume', 'resumes from Last-Event-ID with exactly the later events, in order, then goes live', async () => {
    const { hub, open, reported } = await setup();
    const published = [];
    for (let n = 1; n <= 5; n++) published.push(await hub.publish('a', 'note', `event ${n}`));
    const client = await open('/events?stream=a', { headers: { 'last-event-id': published[1]!.id } });
    expectStream(client);
    await client.waitFor((c) => c.events.length >= 3, 5000, 'events 3 to 5');
    const live = await hub.publish('a', 'note', 'live');
    await client.waitFor((c) => c.events.length >= 4, 5000, 'the live event');
    await sleep(20);
    expect(client.events).toEqual([
      ...published.slice(2).map((event) => ({ event: 'note', id: event.id, data: event.data })),
      { event: 'note', id: live.id, data: 'live' },
    ]);
    expect(client.text().startsWith('retry: 3000\n\n')).toBe(true);
    expect(reported.map(String)).toEqual([]);
  });

  covered('heartbeat', 'sends :heartbeat to an idle connection, decodable as soon as it is sent', async () => {
    const { open } = await setup({ heartbeatMs: 50 });
    const client = await open('/events?stream=quiet');
    expectStream(client);
    // With gzip, the comment only reaches the parser if the compressor was flushed.
    await client.waitFor((c) => c.comments.includes('heartbeat'), 3000, 'a heartbeat');
    expect(client.text()).toMatch(/^retry: 3000\n\n(:heartbeat\n\n)+$/);
    expect(client.events).toEqual([]);
  });

  covered('expiry', 'ends the stream cleanly when the principal expires, after every accepted event', async () => {
    const { hub, served, open, reported } = await setup({ authorize: () => ({ id: 'p', streams: '*', expiresAt: Date.now() + 300 }) });
    const client = await open('/events?stream=a');
    expectStream(client);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the connection');
    for (let n = 0; n < 3; n++) await hub.publish('a', 'note', `before expiry ${n}`);
    await within(client.ended, 3000, 'the end of the body');
    expect(client.endedCleanly(), client.describeEnd()).toBe(true);
    expect(client.events.map((e) => e.data)).toEqual(['before expiry 0', 'before expiry 1', 'before expiry 2']);
    expect(client.text().endsWith(': credentials expired\n\n')).toBe(true);
    expect(hub.stats().connections).toBe(0);
    client.close();
    await served.closeGracefully(3000);
    expect(reported.map(String)).toEqual([]);
  });

  covered(
    'slowEnd',
    'on hub.close(), a client that is far behind still gets every accepted event, then a clean end',
    async () => {
      // Room for the whole backlog, so that this is a clean end and not a slow-consumer cut-off.
      const { hub, served, open, reported } = await setup({ maxUnsentBytes: 64 * 1024 * 1024 });
      const client = await open('/events?stream=a', { paused: true });
      expectStream(client);
      await waitUntil(() => hub.stats().connections === 1, 5000, 'the connection');
      const rejections: unknown[] = [];
      let total = 0;
      const publish = () => hub.publish('a', 'note', payload(total++)).catch((error: unknown) => rejections.push(error));
      // At least 2 MiB, and until the server holds bytes the client has not taken (the
      // kernel's buffers are full; over HTTP/2 the stream's window is): then 1 MiB more.
      // Checked once the writes have settled (zlib done, node:http's cork of a tick lifted).
      const limit = 1024; // 32 MiB
      while (total < limit) {
        for (let i = 0; i < 32; i++) await publish();
        await sleep(40);
        if (total >= 64 && served.unsentBytes() > 0) break;
      }
      expect(served.unsentBytes(), `the server to hold unsent bytes after ${total} events`).toBeGreaterThan(0);
      for (let i = 0; i < 32; i++) await publish();
      await within(hub.close(), 5000, 'hub.close()');
      expect(client.text()).toBe('');
      client.resume();
      await within(client.ended, 4000, () => `the end of the body (got ${client.events.length} of ${total} events)`);
      expect(client.endedCleanly(), client.describeEnd()).toBe(true);
      expect(client.events.map(numberOf)).toEqual(range(0, total));
      expect(client.events.every((event, n) => event.data === payload(n))).toBe(true);
      expect(rejections.map(String)).toEqual([]);
      expect(hub.stats()).toMatchObject({ connections: 0, dropped: 0 });
      client.close();
      await served.closeGracefully(3000);
      expect(reported.map(String)).toEqual([]);
    },
    15_000,
  );

  covered(
    'slowConsumer',
    'cuts off a client that never reads, tears its connection down and gives its slot back; a reader gets everything',
    async () => {
      const { hub, served, open, reported } = await setup({
        maxUnsentBytes: 256 * 1024,
        authorize: () => ({ id: 'p', streams: '*' }),
        maxConnectionsPerPrincipal: 2,
      });
      const reader = await open('/events?stream=a');
      expectStream(reader);
      const stalled = stalledClient(served, '/events?stream=a', gzipHeaders);
      cleanups.push(() => stalled.close());
      await waitUntil(() => hub.stats().connections === 2, 5000, 'the reader and the stalled client');
      const third = await open('/events?stream=a');
      expect(third.status).toBe(429);

      const rejections: unknown[] = [];
      let n = 0;
      const publish = async () => {
        await hub.publish('a', 'note', payload(n)).catch((error: unknown) => rejections.push(error));
        n++;
      };
      // Paced by the reader (at most ~3 events, 96 KiB, ahead of it), so that it
      // keeps up however slow the machine; the stalled client takes nothing.
      const limit = 1500; // 48 MiB: far more than any socket buffer or flow-control window holds
      while (hub.stats().dropped === 0 && n < limit) {
        await publish();
        await reader.waitFor((c) => c.events.length >= n - 2, 10_000, `the reader to get event ${n - 3}`);
      }
      expect(hub.stats().dropped, `the stalled client to be cut off within ${limit} events`).toBe(1);
      for (let i = 0; i < 5; i++) {
        await publish();
        await reader.waitFor((c) => c.events.length >= n - 2, 10_000, `the reader to get event ${n - 3}`);
      }
      await reader.waitFor((c) => c.events.length === n, 10_000, `the reader to get all ${n} events`);
      expect(reader.events.map(numberOf)).toEqual(range(0, n));
      expect(reader.events.every((event, i) => event.data === payload(i))).toBe(true);
      expect(rejections.map(String)).toEqual([]);

      // Reading now finds the end of a connection (or stream) the server tore down.
      stalled.drain();
      await waitUntil(() => stalled.closed, 5000, 'the stalled connection to be torn down');
      if (transport.http2) expect(stalled.rstCode).not.toBe(http2.constants.NGHTTP2_NO_ERROR);

      // The principal's slot came back with the cut-off.
      const again = await open('/events?stream=a');
      expect(again.status, again.body).toBe(200);
      await waitUntil(() => hub.stats().connections === 2, 5000, 'the new connection');
      expect(hub.stats()).toMatchObject({ dropped: 1, connections: 2 });
      // A cut-off is no transport failure: nothing thrown while tearing it down.
      expect(reported.map(String)).toEqual([]);
    },
    30_000,
  );

  covered('abort', 'forgets a client that leaves while authorize is pending, and frees its slot', async () => {
    let authorizing!: () => void;
    const reachedAuthorize = new Promise<void>((resolve) => (authorizing = resolve));
    let grant!: (principal: Principal) => void;
    const granted = new Promise<Principal>((resolve) => (grant = resolve));
    const { hub, served, open, reported } = await setup({
      maxConnectionsPerPrincipal: 1,
      authorize: (req) => {
        if (!req.url.searchParams.has('hold')) return { id: 'p', streams: '*' };
        authorizing();
        return granted;
      },
    });
    const pending = requestSse(served, '/events?stream=a&hold=1', { headers: gzipHeaders });
    pending.response.catch(() => {});
    cleanups.push(() => pending.close());
    await within(reachedAuthorize, 5000, 'authorize to be called');
    expect(served.openRequests()).toBe(1);

    pending.abort();
    await waitUntil(() => served.openRequests() === 0, 5000, 'the server to see the request go');
    grant({ id: 'p', streams: '*' });
    // Whatever admission does with the late principal, it has done it well within this.
    await sleep(50);
    await waitUntil(() => hub.stats().connections === 0, 2000, 'no connection left for the client that left');

    const again = await open('/events?stream=a');
    expect(again.status, again.body).toBe(200);
    await waitUntil(() => hub.stats().connections === 1, 5000, 'the new connection');
    const event = await hub.publish('a', 'note', 'after');
    await again.waitFor((c) => c.events.length === 1, 5000, 'an event on the new connection');
    expect(again.events[0]).toEqual({ event: 'note', id: event.id, data: 'after' });
    expect(hub.stats().connections).toBe(1);
    expect(reported.map(String)).toEqual([]);
  });
});
