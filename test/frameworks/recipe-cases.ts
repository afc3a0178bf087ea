// The cases every framework recipe (examples/recipes/) must pass, run with a real EventSource.
import { EventSource } from 'eventsource';
import { expect, it } from 'vitest';
import type { EventManager } from '../../src/index.js';
import { cleanupAfterEach, openStream, waitUntil } from '../support/helpers.js';

export interface RecipeServer {
  url: string;
  /** The recipe's hub (built from the package's dist, hence the loose type). */
  hub: Pick<EventManager, 'publish' | 'stats'>;
  /** Destroys every open socket, as a dropped network does. */
  dropConnections(): void;
  close(): Promise<void>;
}

/** An `EventSource` that sends a bearer token, and what it saw. */
export interface Client {
  source: EventSource;
  messages: { id: string; data: string }[];
  errors: { code: number | undefined }[];
  opens: number;
  /** Every response the EventSource got, in order. */
  responses: Response[];
}

const ADA = 'token-ada'; // agents 1 and 2
const BOB = 'token-bob'; // agent 3

export function connect(url: string, token: string | undefined, lastEventId?: string): Client {
  const client: Client = { source: undefined as unknown as EventSource, messages: [], errors: [], opens: 0, responses: [] };
  client.source = new EventSource(url, {
    // A browser would send a cookie; the Node EventSource lets the test send a header instead.
    fetch: async (input, init) => {
      const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
      if (token) headers.authorization = `Bearer ${token}`;
      if (lastEventId && !headers['Last-Event-ID']) headers['Last-Event-ID'] = lastEventId;
      const response = await fetch(input, { ...init, headers });
      client.responses.push(response);
      return response;
    },
  });
  client.source.onopen = () => client.opens++;
  client.source.onmessage = (event) => client.messages.push({ id: event.lastEventId, data: event.data });
  client.source.onerror = (event) => client.errors.push({ code: (event as { code?: number }).code });
  return client;
}

async function publish(hub: RecipeServer['hub'], stream: string, n: number): Promise<string> {
  return (await hub.publish(stream, 'message', { n })).id;
}

export function recipeCases(start: () => Promise<RecipeServer>): void {
  const cleanups = cleanupAfterEach();

  async function server(): Promise<RecipeServer> {
    const s = await start();
    cleanups.push(() => s.close());
    return s;
  }

  function open(url: string, token: string | undefined, lastEventId?: string): Client {
    const client = connect(url, token, lastEventId);
    cleanups.push(() => client.source.close());
    return client;
  }

  it('streams the events of the user’s agents: text/event-stream, retry first, other users’ agents left out', async () => {
    const s = await server();
    const raw = await openStream(`${s.url}/events`, { authorization: `Bearer ${ADA}` });
    cleanups.push(() => raw.close());
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await raw.waitFor((c) => c.raw.length > 0, 10_000, 'the first bytes');
    expect(raw.raw).toMatch(/^retry: \d+\n\n/);

    const client = open(`${s.url}/events`, ADA);
    await waitUntil(() => client.opens === 1 && s.hub.stats().connections === 2, 10_000, 'the EventSource to open');
    const one = await publish(s.hub, 'agent-1', 1);
    await publish(s.hub, 'agent-3', 3); // bob's: ada's default streams do not include it
    const two = await publish(s.hub, 'agent-2', 2);
    await waitUntil(() => client.messages.length >= 2, 10_000, 'two events');
    expect(client.messages).toEqual([
      { id: one, data: '{"n":1}' },
      { id: two, data: '{"n":2}' },
    ]);
    await raw.waitFor((c) => c.events.length >= 2, 10_000, 'two events on the raw stream');
    expect(raw.events.map((e) => e.id)).toEqual([one, two]);
  });

  it('is neither buffered nor compressed by the framework: each event arrives before the next is published', async () => {
    const s = await server();
    const raw = await openStream(`${s.url}/events?agent_id=agent-1`, {
      authorization: `Bearer ${ADA}`,
      'accept-encoding': 'gzip, deflate, br',
    });
    cleanups.push(() => raw.close());
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-encoding')).toBeNull();
    expect(raw.headers.get('cache-control')).toMatch(/no-transform/);
    await waitUntil(() => s.hub.stats().connections === 1, 10_000, 'the stream to open');
    for (let n = 1; n <= 5; n++) {
      const id = await publish(s.hub, 'agent-1', n);
      // Tiny events: any buffer (a compressor's, a framework's) would hold them back.
      await raw.waitFor((c) => c.events.at(-1)?.id === id, 10_000, `event ${n}`);
    }
    expect(raw.events.map((e) => e.data)).toEqual([1, 2, 3, 4, 5].map((n) => `{"n":${n}}`));
  });

  it('resumes exactly after the client leaves: Last-Event-ID, no loss, no duplicates, and the left connection is cleaned up', async () => {
    const s = await server();
    const url = `${s.url}/events?agent_id=agent-1&agent_id=agent-2`;
    const first = open(url, ADA);
    await waitUntil(() => first.opens === 1 && s.hub.stats().connections === 1, 10_000, 'the EventSource to open');
    const a = await publish(s.hub, 'agent-1', 1);
    await waitUntil(() => first.messages.length === 1, 10_000, 'the first event');
    first.source.close();
    await waitUntil(() => s.hub.stats().connections === 0, 10_000, 'the server to let the connection go');

    const b = await publish(s.hub, 'agent-2', 2);
    const c = await publish(s.hub, 'agent-1', 3);
    const second = open(url, ADA, a);
    await waitUntil(() => second.messages.length >= 2, 10_000, 'the missed events');
    const d = await publish(s.hub, 'agent-1', 4);
    await waitUntil(() => second.messages.length >= 3, 10_000, 'a live event after the replay');
    expect(second.responses[0]?.status).toBe(200);
    expect(second.messages.map((m) => m.id)).toEqual([b, c, d]);
    expect(first.messages.map((m) => m.id)).toEqual([a]);
  });

  it('resumes exactly after the server drops the socket: the EventSource reconnects with Last-Event-ID by itself', async () => {
    const s = await server();
    const client = open(`${s.url}/events?agent_id=agent-1`, ADA);
    await waitUntil(() => client.opens === 1 && s.hub.stats().connections === 1, 10_000, 'the EventSource to open');
    const a = await publish(s.hub, 'agent-1', 1);
    await waitUntil(() => client.messages.length === 1, 10_000, 'the first event');
    s.dropConnections();
    await waitUntil(() => client.errors.length >= 1 && s.hub.stats().connections === 0, 10_000, 'both sides to see the drop');
    const b = await publish(s.hub, 'agent-1', 2);
    // The server's retry: hint (3 s) paces the reconnection.
    await waitUntil(() => client.opens === 2 && client.messages.length >= 2, 15_000, 'the reconnection and the missed event');
    const c = await publish(s.hub, 'agent-1', 3);
    await waitUntil(() => client.messages.length >= 3, 10_000, 'a live event');
    expect(client.messages.map((m) => m.id)).toEqual([a, b, c]);
    expect(client.errors.every((e) => e.code === undefined)).toBe(true);
  });

  it('answers 401 from the framework’s own auth when the token is missing or wrong, and the EventSource gives up', async () => {
    const s = await server();
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: 'Basic token-ada' }] as Record<string, string>[]) {
      const answer = await openStream(`${s.url}/events`, headers);
      expect(answer.status).toBe(401);
      expect(answer.headers.get('content-type')).toMatch(/application\/json/);
    }
    for (const token of [undefined, 'nope']) {
      const client = open(`${s.url}/events`, token);
      await waitUntil(() => client.errors.length === 1, 10_000, 'the error event');
      expect(client.errors[0]?.code).toBe(401);
      // CLOSED, not CONNECTING: the EventSource does not retry a non-200 answer.
      expect(client.source.readyState).toBe(client.source.CLOSED);
      expect(client.responses.map((r) => r.status)).toEqual([401]);
      expect(client.opens).toBe(0);
    }
    expect(s.hub.stats().connections).toBe(0);
  });

  it('refuses a stream the user may not read with ssecast’s 403, naming the stream', async () => {
    const s = await server();
    const answer = await openStream(`${s.url}/events?agent_id=agent-3&agent_id=agent-1`, { authorization: `Bearer ${ADA}` });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toEqual({ error: 'forbidden', message: 'not allowed to read stream "agent-3"' });

    const client = open(`${s.url}/events?agent_id=agent-1`, BOB);
    await waitUntil(() => client.errors.length === 1, 10_000, 'the error event');
    expect(client.errors[0]?.code).toBe(403);
    expect(client.source.readyState).toBe(client.source.CLOSED);
    expect(s.hub.stats().connections).toBe(0);
  });

  it('lets go of a connection when the client aborts', async () => {
    const s = await server();
    const clients = [open(`${s.url}/events`, ADA), open(`${s.url}/events`, BOB)];
    await waitUntil(() => s.hub.stats().connections === 2, 10_000, 'two connections');
    for (const client of clients) client.source.close();
    await waitUntil(() => s.hub.stats().connections === 0, 10_000, 'no connections');
    // The server still serves afterwards.
    const again = open(`${s.url}/events`, BOB);
    await waitUntil(() => again.opens === 1, 10_000, 'a new connection');
  });
}
