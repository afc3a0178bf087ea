import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { EventSource } from 'eventsource';
import { describe, expect, it } from 'vitest';
import { HUB } from '../../examples/recipes/nest-auth.js';
import { createApp as createExpressApp } from '../../examples/recipes/nest-express.js';
import { createApp as createFastifyApp } from '../../examples/recipes/nest-fastify.js';
import { cleanupAfterEach, waitUntil } from '../support/helpers.js';
import { type RecipeServer, recipeCases } from './recipe-cases.js';

async function start(create: (options: { logger: false }) => Promise<INestApplication>): Promise<RecipeServer & { app: INestApplication }> {
  const app = await create({ logger: false });
  await app.listen(0, '127.0.0.1');
  const server = app.getHttpServer();
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const used = new WeakSet<Socket>();
  server.on('request', (req: IncomingMessage) => used.add(req.socket));
  const { port } = server.address() as AddressInfo;
  let closed = false;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    hub: app.get(HUB),
    dropConnections: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      // Connections the test's fetch opened but never sent a request on are not idle to
      // server.close(), which would wait for the client's keep-alive timeout (4 s).
      for (const socket of sockets) if (!used.has(socket)) socket.destroy();
      // The recipe's own shutdown: it must end open streams, or this would never resolve.
      await app.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

describe('docs/frameworks.md', () => {
  it('shows the recipes verbatim', () => {
    const page = fs.readFileSync(new URL('../../docs/frameworks.md', import.meta.url), 'utf8');
    const dir = new URL('../../examples/recipes/', import.meta.url);
    const recipes = fs.readdirSync(dir).map((name) => fs.readFileSync(new URL(name, dir), 'utf8'));
    const snippets = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] as string);
    expect(snippets.length).toBeGreaterThanOrEqual(5);
    for (const snippet of snippets)
      expect(
        recipes.some((recipe) => recipe.includes(snippet)),
        snippet.slice(0, 80),
      ).toBe(true);
  });
});

describe.each([
  ['Express', createExpressApp],
  ['Fastify', createFastifyApp],
])('NestJS 12 on %s (examples/recipes/nest-*.ts)', (_platform, create) => {
  recipeCases(() => start(create));

  const cleanups = cleanupAfterEach();

  it('app.close() ends open streams (the module closes the hub before Nest closes the server)', async () => {
    const s = await start(create);
    cleanups.push(() => s.close());
    const source = new EventSource(`${s.url}/events`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: 'Bearer token-ada' } }),
    });
    cleanups.push(() => source.close());
    let errors = 0;
    source.onerror = () => errors++;
    await waitUntil(() => s.hub.stats().connections === 1, 10_000, 'the stream to open');
    await s.close();
    await waitUntil(() => errors >= 1, 10_000, 'the client to see the end');
  });
});
