// stats().rejected counts refusals a client received, and stats().hookErrors counts handler
// hooks that threw. A client that left while a hook ran is neither refused nor answered, on
// node:http (the socket closed) and on fetch (request.signal aborted), whatever the hook does.
import type http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { describe, expect, it } from 'vitest';
import { createFetchHandler } from '../../src/adapters/fetch.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { EventManager } from '../../src/index.js';
import type { Principal } from '../../src/http/gate.js';
import { cleanupAfterEach, listen, startServer, waitUntil } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

type Outcome = 'refuses' | 'throws';

/** authorize, called with a promise that settles once the client has gone. */
type Authorize = (left: Promise<void>, outcome: Outcome) => Promise<Principal | null>;

/** How many authorize calls have ended (returned or thrown). */
let finished = 0;
const authorize: Authorize = async (left, outcome) => {
  await left;
  try {
    if (outcome === 'throws') throw new Error('the auth service is down');
    return null;
  } finally {
    finished++;
  }
};

const SERVERS: { name: string; start(hub: EventManager, reported: unknown[]): Promise<{ url: string; close(): Promise<void> }> }[] = [
  {
    name: 'node:http',
    start: (hub, reported) =>
      startServer(
        createSseHandler(hub, {
          authorize: (req) =>
            authorize(
              new Promise((resolve) => req.once('close', () => resolve())),
              (new URL(req.url ?? '', 'http://x').searchParams.get('outcome') ?? 'refuses') as Outcome,
            ),
          onError: (error) => reported.push(error),
        }),
      ),
  },
  {
    name: 'fetch (behind @hono/node-server)',
    start: (hub, reported) =>
      listen(
        createAdaptorServer({
          fetch: createFetchHandler(hub, {
            authorize: (req) =>
              authorize(
                new Promise((resolve) => req.signal.addEventListener('abort', () => resolve(), { once: true })),
                (new URL(req.url).searchParams.get('outcome') ?? 'refuses') as Outcome,
              ),
            onError: (error) => reported.push(error),
          }),
        }) as http.Server,
      ),
  },
];

describe.each(SERVERS)('rejected and hookErrors on $name', ({ start }) => {
  it.each(['refuses', 'throws'] as const)('counts nothing as refused when the client left before authorize %s', async (outcome) => {
    const hub = new EventManager();
    const reported: unknown[] = [];
    const server = await start(hub, reported);
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    const before = finished;
    const answer = await fetch(`${server.url}/events?stream=a&outcome=${outcome}`, { signal: AbortSignal.timeout(100) }).catch(
      (error: Error) => error.name,
    );
    expect(answer).toBe('TimeoutError');
    // The hook ran to its end after the client left: its error is heard and counted, and no refusal is.
    await waitUntil(() => finished === before + 1, 5000, 'authorize to end');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(reported).toHaveLength(outcome === 'throws' ? 1 : 0);
    expect(hub.stats()).toMatchObject({ rejected: 0, hookErrors: outcome === 'throws' ? 1 : 0, connections: 0 });
    // The server still answers, and counts, the next refusal (a 405, decided before any hook).
    const next = await fetch(`${server.url}/events?stream=a`, { method: 'POST' });
    expect(next.status).toBe(405);
    expect(hub.stats().rejected).toBe(1);
  });
});
