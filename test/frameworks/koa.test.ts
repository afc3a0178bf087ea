import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { EventManager } from 'ssecast';
import { createApp } from '../../examples/recipes/koa.js';
import { cleanupAfterEach, listen, waitUntil } from '../support/helpers.js';
import { type RecipeServer, recipeCases } from './recipe-cases.js';

async function start(): Promise<RecipeServer> {
  const hub = new EventManager();
  const server = await listen(http.createServer(createApp(hub).callback()), () => hub.close());
  return { url: server.url, hub, dropConnections: server.dropConnections, close: server.close };
}

describe('Koa 3 (examples/recipes/koa.ts)', () => {
  // Koa reports a socket reset (a reader leaving) as an app error; the recipe's listener
  // drops those, so nothing may reach the log.
  const logged = vi.spyOn(console, 'error');
  afterEach(() => {
    expect(logged).not.toHaveBeenCalled();
    logged.mockClear();
  });
  afterAll(() => logged.mockRestore());
  const cleanups = cleanupAfterEach();

  recipeCases(start);

  it('logs nothing when a reader resets the connection (Koa reports it as an app error)', async () => {
    const s = await start();
    cleanups.push(() => s.close());
    const socket = net.connect(Number(new URL(s.url).port), '127.0.0.1');
    cleanups.push(() => socket.destroy());
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.write('GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-ada\r\nAccept: text/event-stream\r\n\r\n');
    await waitUntil(() => received.includes('retry: '), 10_000, 'the stream to start');
    // An RST rather than a FIN: what a closed tab or a dropped network often sends.
    socket.resetAndDestroy();
    await waitUntil(() => s.hub.stats().connections === 0, 10_000, 'the server to let go');
    // Koa reports the reset from a later tick; the server answering one more request orders the check after it.
    expect((await fetch(`${s.url}/events`)).status).toBe(401);
  });
});
