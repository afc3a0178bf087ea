import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createParser } from 'eventsource-parser';
import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, waitUntil } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

describe('node:http adapter over HTTP/2 (compatibility API)', () => {
  it('streams events with the SSE headers and no connection-specific header, and cleans up on reset', async () => {
    const hub = new EventManager({ heartbeatMs: 60 });
    const handler = createSseHandler(hub);
    const server = http2.createServer((req, res) => handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () => hub.close(),
      () => new Promise((resolve) => server.close(resolve)),
    );
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    cleanups.push(() => session.destroy());

    const first = await hub.publish('a', 'note', 'from history');
    const request = session.request({ ':path': '/events?stream=a', 'last-event-id': 'stale.1' });
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => request.on('response', resolve));
    expect(headers[':status']).toBe(200);
    expect(headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(headers['cache-control']).toBe('no-cache, no-transform');
    expect(headers.connection).toBeUndefined();

    const events: { event?: string | undefined; data: string; id?: string | undefined }[] = [];
    const comments: string[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => parser.feed(chunk));

    await waitUntil(() => events.length === 2, 5000, 'resync and replay');
    const live = await hub.publish('a', 'note', 'live');
    await waitUntil(() => events.length === 3 && comments.includes('heartbeat'), 5000, 'live event and a heartbeat');
    expect(events).toEqual([
      { event: 'resync', id: first.id, data: JSON.stringify({ reason: 'foreign', lastEventId: 'stale.1' }) },
      { event: 'note', id: first.id, data: 'from history' },
      { event: 'note', id: live.id, data: 'live' },
    ]);

    request.close(http2.constants.NGHTTP2_CANCEL);
    await waitUntil(() => hub.stats().connections === 0, 5000, 'cleanup after the stream reset');
    expect(hub.heartbeatScheduler(60).running).toBe(false);
  });
});
