import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { afterEach } from 'vitest';

export interface TestServer {
  url: string;
  port: number;
  server: http.Server;
  /** Destroys every open socket: what a crashed proxy or a dropped network does to clients. */
  dropConnections(): void;
  close(): Promise<void>;
}

/** An http server on 127.0.0.1, port 0, that tracks its sockets so tests can drop them. */
export async function startServer(handler: http.RequestListener): Promise<TestServer> {
  return listen(http.createServer(handler));
}

/**
 * Listens on 127.0.0.1, port 0, and tracks the server's sockets so tests can
 * drop them. `shutdown` runs before the sockets are destroyed (a framework's
 * own close, such as Fastify's).
 */
export async function listen(server: http.Server, shutdown?: () => Promise<void>): Promise<TestServer> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    dropConnections: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: async () => {
      if (shutdown) await shutdown();
      await new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      });
    },
  };
}

export interface ParsedEvent {
  event: string | undefined;
  id: string | undefined;
  data: string;
}

export interface StreamClient {
  status: number;
  headers: Headers;
  events: ParsedEvent[];
  comments: string[];
  retries: number[];
  /** Every byte received, decoded. */
  raw: string;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  waitFor(predicate: (client: StreamClient) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): void;
}

/**
 * Opens a stream with Node's fetch and parses it with eventsource-parser, as
 * a browser would. Non-200 responses resolve too (with `status`), so tests
 * can assert on error answers.
 */
export async function openStream(url: string, headers: Record<string, string> = {}): Promise<StreamClient & { body: string }> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const client = {
    status: response.status,
    headers: response.headers,
    events: [] as ParsedEvent[],
    comments: [] as string[],
    retries: [] as number[],
    raw: '',
    body: '',
    ended: Promise.resolve(),
    waitFor: (predicate: (c: StreamClient) => boolean, timeoutMs = 5000, what = 'condition') =>
      waitUntil(() => predicate(client), timeoutMs, what),
    close: () => controller.abort(),
  };
  if (response.status !== 200) {
    client.body = await response.text();
    return client;
  }
  const parser = createParser({
    onEvent: (message: EventSourceMessage) => client.events.push({ event: message.event, id: message.id, data: message.data }),
    onComment: (comment) => client.comments.push(comment),
    onRetry: (retry) => client.retries.push(retry),
  });
  const decoder = new TextDecoder();
  client.ended = (async () => {
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        client.raw += text;
        parser.feed(text);
      }
    } catch {
      // Aborted by close() or dropped by the server: both end the stream.
    }
  })();
  return client;
}

/** Polls until `condition` holds, failing with `what` after the timeout. */
export async function waitUntil(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Polls an async condition, one call at a time (a poll per tick would flood a server it asks), failing with `what` after the timeout. */
export async function waitUntilAsync(condition: () => Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The `data` of every non-control event, JSON-parsed. */
export function payloads<T = unknown>(events: ParsedEvent[]): T[] {
  return events.filter((e) => e.event !== 'resync').map((e) => JSON.parse(e.data) as T);
}

export interface StalledClient {
  socket: Socket;
  /** True once the server has torn the connection down. */
  readonly closed: boolean;
}

/** A raw socket that sends an SSE request and then never reads a byte: the slow consumer. */
export function stalledClient(port: number, path: string): StalledClient {
  const socket = net.connect(port, '127.0.0.1');
  socket.pause();
  const client = { socket, closed: false };
  socket.on('close', () => (client.closed = true));
  socket.on('error', () => {});
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
  return client;
}

/**
 * Publishes 1 KB notes on `stream` until the hub drops a subscriber (or 20,000 were sent):
 * far more than loopback buffers hold (about 4 MiB per socket), so a stalled client crosses
 * its bound. Yields now and then so the server can notice. Returns how many were published.
 */
export async function floodUntilDropped(
  hub: { publish(stream: string, type: string, data: string): Promise<unknown>; stats(): { dropped: number } },
  stream: string,
): Promise<number> {
  const line = 'x'.repeat(1000);
  let n = 0;
  for (; n < 20_000 && hub.stats().dropped === 0; n++) {
    await hub.publish(stream, 'note', `${n}:${line}`);
    if (n % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
  }
  return n;
}

/**
 * What a test opened, closed after it in reverse order: push a closer as
 * soon as something is opened. Registers the `afterEach` that runs them.
 */
export function cleanupAfterEach(): (() => unknown)[] {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()?.();
  });
  return cleanups;
}

/** A port that was free a moment ago on 127.0.0.1 (for a child process that must be told its port). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
