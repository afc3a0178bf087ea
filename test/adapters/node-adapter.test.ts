import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, floodUntilDropped, openStream, stalledClient, startServer, waitUntil } from '../support/helpers.js';

type Events = { tick: { n: number }; note: string };

const cleanups = cleanupAfterEach();

/**
 * What only the node:http adapter can show: the listeners it adds to the
 * response. Everything every adapter must do is in conformance.test.ts.
 */
describe('node:http adapter', () => {
  it.each([false, true])('leaves no listener behind on the response after the client disconnects (compress: %s)', async (compress) => {
    const hub = new EventManager<Events>({ heartbeatMs: 50 });
    const handler = createSseHandler(hub, { authorize: () => ({ id: 'u1', streams: '*' }), compress });
    let response: http.ServerResponse | undefined;
    const baseline = { close: 0, drain: 0, error: 0 };
    const server = await startServer((req, res) => {
      response = res;
      baseline.close = res.listenerCount('close');
      baseline.drain = res.listenerCount('drain');
      baseline.error = res.listenerCount('error');
      handler(req, res);
    });
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const client = await openStream(`${server.url}/?stream=a&stream=b`, { 'accept-encoding': 'gzip' });
    await waitUntil(() => hub.stats().connections === 1);
    expect((response as http.ServerResponse).listenerCount('drain')).toBe(baseline.drain + 1);
    client.close();
    await waitUntil(() => hub.stats().connections === 0, 5000, 'the hub to forget the connection');
    const res = response as http.ServerResponse;
    expect(res.listenerCount('close')).toBe(baseline.close);
    expect(res.listenerCount('drain')).toBe(baseline.drain);
    expect(res.listenerCount('error')).toBe(baseline.error);
    expect(hub.stats()).toMatchObject({ connections: 0, streams: 0, wildcardConnections: 0 });
    expect(hub.heartbeatScheduler(50).size).toBe(0);
    // The principal's slot came back: ten more connections are allowed.
    const again = await openStream(`${server.url}/?stream=a`);
    cleanups.push(() => again.close());
    expect(again.status).toBe(200);
  });

  it('resets a slow consumer it cuts off, so the kernel does not keep its backlog', async () => {
    const hub = new EventManager<Events>({ maxEventBytes: 16 * 1024 });
    const server = await startServer(createSseHandler(hub, { maxUnsentBytes: 64 * 1024 }));
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const stalled = stalledClient(server.port, '/?stream=a');
    cleanups.push(() => void stalled.socket.destroy());
    await waitUntil(() => hub.stats().connections === 1);
    await floodUntilDropped(hub, 'a');
    expect(hub.stats().dropped).toBe(1);
    let received = 0;
    stalled.socket.on('data', (chunk: Buffer) => (received += chunk.length));
    stalled.socket.resume();
    await waitUntil(() => stalled.closed, 5000, 'the stalled socket to close');
    // After a FIN the client would still read the whole backlog the server's kernel kept for it
    // (about 4 MB here); after a reset it gets at most what its own receive buffer held.
    expect(received).toBeLessThan(1024 * 1024);
  });
});
