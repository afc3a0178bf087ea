import type http from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { createClient, type ClientOptions, type SseClient, type SseClientError } from '../../src/client/index.js';
import { cleanupAfterEach, sleep, startServer, waitUntil, type TestServer } from '../support/helpers.js';

/**
 * ssecast/client against plain node:http servers that misbehave the way real
 * deployments do: accept and drop at once, answer through a proxy's HTML
 * error page, refuse an expired token, reset the resume position, send ids
 * a header cannot carry as they are. Each server answers exactly what the
 * case needs.
 */

const cleanups = cleanupAfterEach();

type Plain = { message: unknown };

function open(url: string, options: ClientOptions = {}) {
  const client: SseClient<Plain> = createClient<Plain>(url, { backoff: { initialMs: 10, maxMs: 40 }, ...options });
  cleanups.push(() => client.close());
  const errors: SseClientError[] = [];
  client.onError((error) => errors.push(error));
  return { client, errors };
}

interface Seen {
  at: number;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A server that records every request and lets `handler` answer it (`n` counts from 1). */
async function recordingServer(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void,
): Promise<TestServer & { requests: Seen[] }> {
  const requests: Seen[] = [];
  const server = await startServer((req, res) => {
    requests.push({ at: performance.now(), url: req.url ?? '', headers: req.headers });
    handler(req, res, requests.length);
  });
  cleanups.push(() => server.close());
  return Object.assign(server, { requests });
}

function sseHead(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

describe('backoff against a server that accepts and drops at once', () => {
  it('backs off exponentially, instead of hammering at the first delay, while no connection delivers an event', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    cleanups.push(() => vi.restoreAllMocks());
    const server = await recordingServer((_req, res) => {
      sseHead(res);
      res.end('retry: 1\n\n');
    });
    const { client } = open(`${server.url}/events`, { backoff: { initialMs: 40, maxMs: 5000, factor: 2 } });
    await sleep(1500);
    client.close();
    // Delays 20, 40, 80, 160, 320, 640: seven requests in 1.5 s (the old client made one every 20 ms or so).
    const count = server.requests.length;
    expect(count).toBeGreaterThanOrEqual(5);
    expect(count).toBeLessThanOrEqual(8);
    const gaps = server.requests.slice(1).map((request, i) => request.at - (server.requests[i] as Seen).at);
    // A timer may fire up to a millisecond early.
    gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(20 * 2 ** i - 2));
  });

  it('starts over once a connection delivers an event', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    cleanups.push(() => vi.restoreAllMocks());
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      // Empty drops grow the delay (50, 100, 200 ms); the fourth connection delivers an event: 50 ms again, not 400.
      res.end(n === 4 ? 'retry: 1\n\nid: 4\ndata: ok\n\n' : 'retry: 1\n\n');
    });
    const { client } = open(`${server.url}/events`, { backoff: { initialMs: 100, maxMs: 5000 } });
    await waitUntil(() => server.requests.length >= 5, 5000, 'five requests');
    client.close();
    const at = server.requests.map((request) => request.at);
    expect((at[3] as number) - (at[2] as number)).toBeGreaterThanOrEqual(198);
    expect((at[4] as number) - (at[3] as number)).toBeLessThan(300);
  });
});

describe('refusal messages', () => {
  const nginx502 =
    '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

  it.each<[string, number, http.OutgoingHttpHeaders, string, string, string]>([
    [
      "a proxy's HTML error page",
      502,
      { 'content-type': 'text/html' },
      nginx502,
      'HTTP 502 Bad Gateway',
      'the server answered 502 Bad Gateway',
    ],
    [
      'a body without a content type',
      503,
      {},
      'upstream unavailable',
      'HTTP 503 Service Unavailable',
      'the server answered 503 Service Unavailable',
    ],
    [
      'JSON that is not an error body',
      500,
      { 'content-type': 'application/json' },
      '{"status":"down"}',
      'HTTP 500 Internal Server Error',
      'the server answered 500 Internal Server Error',
    ],
    [
      'long text/plain',
      500,
      { 'content-type': 'text/plain' },
      `Traceback: ${'x'.repeat(500)}`,
      'HTTP 500 Internal Server Error',
      'the server answered 500 Internal Server Error',
    ],
    [
      'text/plain that is HTML',
      502,
      { 'content-type': 'text/plain' },
      '<html><body>Bad Gateway</body></html>',
      'HTTP 502 Bad Gateway',
      'the server answered 502 Bad Gateway',
    ],
    [
      "ssecast's JSON refusal",
      503,
      { 'content-type': 'application/json; charset=utf-8' },
      '{"error":"unavailable","message":"the event hub is shutting down"}',
      'the event hub is shutting down',
      'the server answered 503: the event hub is shutting down',
    ],
    [
      'short text/plain',
      502,
      { 'content-type': 'text/plain; charset=utf-8' },
      'upstream connect error\n',
      'upstream connect error',
      'the server answered 502: upstream connect error',
    ],
  ])('%s: serverMessage %j', async (_case, status, headers, body, serverMessage, message) => {
    const server = await recordingServer((_req, res) => res.writeHead(status, headers).end(body));
    const { client, errors } = open(`${server.url}/events`);
    await waitUntil(() => errors.length > 0, 5000, 'the refusal');
    client.close();
    expect(errors[0]).toMatchObject({ code: 'ERR_HTTP_STATUS', status, serverMessage, message, willRetry: true });
  });

  /** A fetch double answering a final 400 (one request) whose body counts what the client pulls from it and whether it was cancelled. */
  function endlessRefusal(contentType: string) {
    const body = { pulled: 0, cancelled: false };
    const fetchImpl = (async () =>
      new Response(
        new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              body.pulled += 1024;
              controller.enqueue(new TextEncoder().encode('y'.repeat(1024)));
            },
            cancel: () => {
              body.cancelled = true;
            },
          },
          { highWaterMark: 0 },
        ),
        { status: 400, headers: { 'content-type': contentType } },
      )) as typeof fetch;
    return { body, fetchImpl };
  }

  it('reads no byte of an HTML body, and cancels it', async () => {
    const { body, fetchImpl } = endlessRefusal('text/html');
    const { client, errors } = open('http://ssecast.test/events', { fetch: fetchImpl });
    await waitUntil(() => errors.length > 0, 5000, 'the refusal');
    client.close();
    expect(body).toEqual({ pulled: 0, cancelled: true });
  });

  it.each([
    ['text/plain', 1024],
    ['application/json', 4096],
  ])('reads at most its bound of an endless %s body, then cancels it', async (type, bound) => {
    const { body, fetchImpl } = endlessRefusal(type);
    const { client, errors } = open('http://ssecast.test/events', { fetch: fetchImpl });
    await waitUntil(() => errors.length > 0, 5000, 'the refusal');
    client.close();
    expect(body.cancelled).toBe(true);
    // One 1 KiB chunk past the bound at most: a reader cannot ask for less than a chunk.
    expect(body.pulled).toBeLessThanOrEqual(bound + 1024);
    expect(errors[0]?.serverMessage).toBe('HTTP 400');
  });
});

describe('401 with credentials that can be refreshed', () => {
  /** A server that accepts only the current token; `rotate()` issues a new one and revokes the old. */
  async function tokenServer() {
    let valid = 't1';
    const server = await recordingServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${valid}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized","message":"token expired"}');
        return;
      }
      sseHead(res);
      res.write(`retry: 10\n\nid: ${req.headers.authorization}\ndata: hello\n\n`);
    });
    return {
      server,
      rotate: (token: string) => (valid = token),
      auth: () => server.requests.map((request) => request.headers.authorization),
    };
  }

  it('calls onUnauthorized, then retries once at once with headers() computed again', async () => {
    const { server, rotate, auth } = await tokenServer();
    rotate('t2');
    let token = 't1';
    const infos: unknown[] = [];
    const { client, errors } = open(`${server.url}/events`, {
      headers: () => ({ authorization: `Bearer ${token}` }),
      onUnauthorized: async (info) => {
        infos.push({ status: info.status, serverMessage: info.serverMessage, type: info.headers.get('content-type') });
        await sleep(20); // a refresh round trip
        token = 't2';
        return true;
      },
    });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => messages.length === 1, 5000, 'the event');
    expect(auth()).toEqual(['Bearer t1', 'Bearer t2']);
    expect(infos).toEqual([{ status: 401, serverMessage: 'token expired', type: 'application/json' }]);
    expect(errors).toEqual([expect.objectContaining({ code: 'ERR_HTTP_STATUS', status: 401, willRetry: true })]);
    expect(client.status).toBe('open');
  });

  it('closes for good when the retry is refused too: two requests, no loop', async () => {
    const { server, auth } = await tokenServer();
    let asked = 0;
    const { client, errors } = open(`${server.url}/events`, {
      headers: async () => ({ authorization: 'Bearer stale' }),
      onUnauthorized: () => ++asked > 0,
    });
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(150);
    expect(auth()).toEqual(['Bearer stale', 'Bearer stale']);
    expect(client.error).toMatchObject({ code: 'ERR_HTTP_STATUS', status: 401, willRetry: false, serverMessage: 'token expired' });
    expect(errors.map((error) => error.willRetry)).toEqual([true, false]);
    expect(asked).toBe(1);
  });

  it('closes after one request when onUnauthorized returns false, and without onUnauthorized even with a headers function', async () => {
    const { server } = await tokenServer();
    let asked = 0;
    const declined = open(`${server.url}/events`, {
      headers: () => ({ authorization: 'Bearer x' }),
      onUnauthorized: () => (asked++, false),
    }).client;
    await waitUntil(() => declined.status === 'closed', 5000, 'declined closed');
    const noHook = open(`${server.url}/events`, { headers: () => ({ authorization: 'Bearer x' }) }).client;
    await waitUntil(() => noHook.status === 'closed', 5000, 'no-hook closed');
    await sleep(150);
    expect(asked).toBe(1);
    expect(server.requests).toHaveLength(2);
    expect(declined.error?.status).toBe(401);
    expect(noHook.error?.status).toBe(401);
  });

  it('refreshes again on a later expiry, once the connection in between delivered an event', async () => {
    const { server, rotate, auth } = await tokenServer();
    let token = 't1';
    let refreshes = 0;
    const { client } = open(`${server.url}/events`, {
      headers: () => ({ authorization: `Bearer ${token}` }),
      onUnauthorized: () => {
        token = `t${++refreshes + 1}`;
        return true;
      },
    });
    const messages: unknown[] = [];
    client.on('message', (event) => messages.push(event.data));
    await waitUntil(() => messages.length === 1, 5000, 'the first event');
    for (const next of ['t2', 't3']) {
      rotate(next);
      server.dropConnections();
      const had = messages.length;
      await waitUntil(() => messages.length > had, 5000, `an event with ${next}`);
    }
    expect(refreshes).toBe(2);
    expect(auth()).toEqual(['Bearer t1', 'Bearer t1', 'Bearer t2', 'Bearer t2', 'Bearer t3']);
    expect(client.status).toBe('open');
  });
});

describe('the request', () => {
  it("asks fetch for cache: 'no-store', and Node's fetch honours it with a real request", async () => {
    const server = await recordingServer((_req, res) => {
      sseHead(res);
      res.write('retry: 10\n\n');
    });
    const inits: RequestInit[] = [];
    const { client } = open(`${server.url}/events`, {
      fetch: (input, init) => {
        inits.push(init as RequestInit);
        return fetch(input, init);
      },
    });
    await waitUntil(() => client.status === 'open', 5000, 'open');
    expect(inits[0]?.cache).toBe('no-store');
    // What undici sends for no-store: no cached answer is acceptable.
    expect(server.requests[0]?.headers['cache-control']).toBe('no-cache');
  });
});

describe('Last-Event-ID, as WHATWG resets and ignores it', () => {
  const resync = 'event: resync\nid:\ndata: {"reason":"foreign","lastEventId":"old.7"}\n\n';

  it('an empty id: on a resync resets the id: the reconnect carries no Last-Event-ID', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      res.end(n === 1 ? `retry: 1\n\n${resync}` : 'retry: 1\n\n');
    });
    const { client } = open(`${server.url}/events?stream=a`, { lastEventId: 'old.7' });
    const resyncs: unknown[] = [];
    client.on('resync', (event) => resyncs.push(event));
    await waitUntil(() => server.requests.length >= 2, 5000, 'the reconnect');
    expect(server.requests[0]?.headers['last-event-id']).toBe('old.7');
    expect(server.requests[1]?.headers['last-event-id']).toBeUndefined();
    expect(resyncs).toEqual([{ type: 'resync', data: { reason: 'foreign', lastEventId: 'old.7' }, id: undefined }]);
    expect(client.lastEventId).toBeUndefined();
  });

  it('the reconnect drops a lastEventId query parameter the URL started with, once the stream set or reset the id', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      res.end(n === 1 ? `retry: 1\n\n${resync}` : n === 2 ? 'retry: 1\n\nid: new.3\ndata: x\n\n' : 'retry: 1\n\n');
    });
    open(`${server.url}/events?stream=a&lastEventId=old.7&types=b%2Cc`);
    await waitUntil(() => server.requests.length >= 3, 5000, 'two reconnects');
    expect(server.requests.slice(0, 3).map((request) => [request.url, request.headers['last-event-id']])).toEqual([
      ['/events?stream=a&lastEventId=old.7&types=b%2Cc', undefined],
      ['/events?stream=a&types=b%2Cc', undefined],
      ['/events?stream=a&types=b%2Cc', 'new.3'],
    ]);
  });

  it('an id: whose message is cut off before its blank line is not committed: the reconnect asks for that event again', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      if (n === 1) {
        res.write('retry: 1\n\nid: e.1\ndata: one\n\nid: e.2\nevent: message\ndata: {"big":"');
        // The connection drops in the middle of e.2's frame.
        setTimeout(() => res.socket?.destroy(), 20);
      } else res.end('retry: 1\n\n');
    });
    const { client } = open(`${server.url}/events`);
    const got: unknown[] = [];
    client.on('message', (event) => got.push(event.id));
    await waitUntil(() => server.requests.length >= 2, 5000, 'the reconnect');
    expect(got).toEqual(['e.1']);
    expect(server.requests[1]?.headers['last-event-id']).toBe('e.1');
  });

  it('a headers() that never settles is cut off by the watchdog and tried again, instead of leaving the client connecting for good', async () => {
    const server = await recordingServer((_req, res) => {
      sseHead(res);
      res.write('retry: 1\n\nid: e.1\ndata: one\n\n');
    });
    let calls = 0;
    const { client } = open(`${server.url}/events`, {
      heartbeatTimeoutMs: 100,
      headers: () => (++calls === 1 ? new Promise<HeadersInit>(() => {}) : { authorization: 'Bearer t' }),
    });
    await waitUntil(() => server.requests.length >= 1, 5000, 'a request after the hung headers()');
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(server.requests[0]?.headers.authorization).toBe('Bearer t');
    await waitUntil(() => client.status === 'open');
  });

  it('a resync with a new position moves the id there', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      res.end(n === 1 ? 'retry: 1\n\nevent: resync\nid: e2.0\ndata: {"reason":"foreign","lastEventId":"e1.9"}\n\n' : 'retry: 1\n\n');
    });
    open(`${server.url}/events`, { lastEventId: 'e1.9' });
    await waitUntil(() => server.requests.length >= 2, 5000, 'the reconnect');
    expect(server.requests[1]?.headers['last-event-id']).toBe('e2.0');
  });

  it('an id: field counts in a message without data, and an id with NUL is ignored', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      const streams = ['id: 1\ndata: a\n\nid: 2\n\n', 'id: 3\ndata: b\n\nid:\n\n', 'id: 4\n\nid: 5\u0000x\ndata: c\n\n', ''];
      res.end(`retry: 1\n\n${streams[n - 1] ?? ''}`);
    });
    const { client } = open(`${server.url}/events`);
    const ids: (string | undefined)[] = [];
    client.on('message', (event) => ids.push(event.id));
    await waitUntil(() => server.requests.length >= 4, 5000, 'three reconnects');
    expect(server.requests.slice(0, 4).map((request) => request.headers['last-event-id'])).toEqual([undefined, '2', undefined, '4']);
    expect(ids).toEqual(['1', '3', undefined]);
  });

  it('sends an id beyond ISO-8859-1 UTF-8 encoded, as EventSource does, instead of failing every reconnect', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      res.end(n === 1 ? 'retry: 1\n\nid: é✓\ndata: x\n\n' : 'retry: 1\n\n');
    });
    const { errors } = open(`${server.url}/events`);
    await waitUntil(() => server.requests.length >= 2, 5000, 'the reconnect');
    const header = server.requests[1]?.headers['last-event-id'] as string;
    // Node reads header bytes as latin1.
    expect(Buffer.from(header, 'latin1').toString('utf8')).toBe('é✓');
    expect(errors.filter((error) => error.code !== 'ERR_NETWORK')).toEqual([]);
  });
});

describe('listeners', () => {
  it('a listener that closes the client stops the dispatch: no later listener, no later event', async () => {
    const server = await recordingServer((_req, res) => {
      sseHead(res);
      res.write('retry: 10\n\ndata: 1\n\ndata: 2\n\n');
    });
    const { client } = open(`${server.url}/events`);
    const heard: unknown[] = [];
    client.on('message', (event) => {
      heard.push(['first', event.data]);
      client.close();
    });
    client.on('message', (event) => heard.push(['second', event.data]));
    await waitUntil(() => client.status === 'closed', 5000, 'closed');
    await sleep(50);
    expect(heard).toEqual([['first', 1]]);
  });
});

describe("the hub's position marker", () => {
  it('moves lastEventId and is shown to no listener or iterator', async () => {
    const server = await recordingServer((_req, res, n) => {
      sseHead(res);
      if (n === 1) res.end('id: e.1\nevent: message\ndata: {"message":"old state"}\n\nevent: ssecast-position\nid: e.40\ndata:\n\n');
      else res.write(': quiet\n\n');
    });
    const { client, errors } = open(`${server.url}/events`);
    const seen: string[] = [];
    client.on('message', (event) => seen.push(event.type));
    client.on('ssecast-position' as 'message', (event) => seen.push(event.type));
    await waitUntil(() => server.requests.length === 2, 5000, 'the reconnect');
    expect(seen).toEqual(['message']);
    expect(server.requests[1]?.headers['last-event-id']).toBe('e.40');
    expect(client.lastEventId).toBe('e.40');
    expect(errors).toEqual([]);
  });
});

describe('lastActivityAt', () => {
  it('moves with every chunk, heartbeats hidden by heartbeatEvent included', async () => {
    let send: ((text: string) => void) | undefined;
    const server = await recordingServer((_req, res) => {
      sseHead(res);
      send = (text) => res.write(text);
    });
    const { client } = open(`${server.url}/events`, { heartbeatEvent: 'ping' });
    await waitUntil(() => send !== undefined);
    await sleep(50);
    const opened = client.lastActivityAt;
    expect(opened).toBeGreaterThan(0);
    await sleep(20);
    send?.('event: ping\ndata:\n\n');
    await waitUntil(() => client.lastActivityAt > opened, 5000, 'the heartbeat');
    const first = client.lastActivityAt;
    await sleep(20);
    send?.(': comment\n\n');
    await waitUntil(() => client.lastActivityAt > first, 5000, 'the comment');
    expect(client.lastEventId).toBeUndefined();
  });
});
