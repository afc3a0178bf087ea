/**
 * Scaffolding for test/transports.test.ts: every adapter served over every
 * transport it supports (HTTP/1.1, HTTPS, HTTP/2 over TLS, h2c), and clients
 * that see the bytes on the wire over each of them (no transparent
 * decompression: gzip is undone here, chunk by chunk, with node:zlib).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import zlib from 'node:zlib';
import type { Readable } from 'node:stream';
import express from 'express';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { createAdaptorServer } from '@hono/node-server';
import { createParser } from 'eventsource-parser';
import type { EventManager } from '../../src/index.js';
import type { Principal, SseHandlerOptions } from '../../src/http/gate.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { sse } from '../../src/adapters/express.js';
import ssecastFastify from '../../src/adapters/fastify.js';
import { createFetchHandler } from '../../src/adapters/fetch.js';
import type { ParsedEvent } from './helpers.js';

/**
 * A self-signed certificate for 127.0.0.1 and localhost, valid until 2126
 * (see fixtures/tls/README.md). Clients trust it as their only CA, so TLS is
 * verified for real rather than switched off.
 */
export const TLS = {
  key: readFileSync(new URL('../fixtures/tls/key.pem', import.meta.url)),
  cert: readFileSync(new URL('../fixtures/tls/cert.pem', import.meta.url)),
};

export interface Transport {
  name: 'HTTP/1.1' | 'HTTPS' | 'HTTP/2' | 'h2c';
  tls: boolean;
  http2: boolean;
}

export const HTTP1: Transport = { name: 'HTTP/1.1', tls: false, http2: false };
export const HTTPS: Transport = { name: 'HTTPS', tls: true, http2: false };
/** HTTP/2 over TLS, negotiated by ALPN, with allowHTTP1: false. */
export const H2: Transport = { name: 'HTTP/2', tls: true, http2: true };
/** Cleartext HTTP/2 (prior knowledge). */
export const H2C: Transport = { name: 'h2c', tls: false, http2: true };

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/** What a hook sees, whatever the adapter. */
export interface HookRequest {
  url: URL;
  header(name: string): string | undefined;
}

export interface HandlerOptions extends Omit<SseHandlerOptions<never>, 'streams' | 'authorize' | 'onError' | 'clientKey'> {
  authorize?: (req: HookRequest) => Principal | null | undefined | Promise<Principal | null | undefined>;
  onError?: (error: unknown) => void;
}

type AnyServer = http.Server | https.Server | http2.Http2Server | http2.Http2SecureServer;

export interface Served {
  transport: Transport;
  origin: string;
  port: number;
  /**
   * Requests the server has open: HTTP/2 streams, or TCP connections for
   * HTTP/1.1 (each client here has a connection of its own).
   */
  openRequests(): number;
  /**
   * Bytes the server's transport holds for its clients beyond what the
   * kernel took: the writable buffers of its HTTP/1.1 sockets (the TLS
   * sockets for HTTPS) or HTTP/2 streams. Above zero, a client is behind.
   */
  unsentBytes(): number;
  /**
   * Closes as an application does on shutdown (the framework's close, then
   * the server's), and resolves when the server has closed. Rejects if that
   * takes longer than `timeoutMs`: something (a response that never ended)
   * holds it open.
   */
  closeGracefully(timeoutMs: number): Promise<void>;
  /** Destroys every connection and closes the server: the test's own cleanup. */
  close(): Promise<void>;
}

export interface TransportAdapter {
  name: string;
  transports: Transport[];
  /** Serves `hub` at /events over `transport`. */
  mount(transport: Transport, hub: EventManager<any>, options: HandlerOptions): Promise<Served>;
}

function adapt<Req>(options: HandlerOptions, info: (req: Req) => HookRequest): SseHandlerOptions<Req> {
  const { authorize, onError, ...rest } = options;
  return {
    ...rest,
    ...(authorize ? { authorize: (req: Req) => authorize(info(req)) } : {}),
    ...(onError ? { onError: (error: unknown) => onError(error) } : {}),
  };
}

function nodeInfo(req: { url?: string | undefined; originalUrl?: string; headers: http.IncomingHttpHeaders }): HookRequest {
  return {
    url: new URL(req.originalUrl ?? req.url ?? '/', 'http://localhost'),
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  };
}

/** A node:http-style server for a transport. */
function nodeServer(transport: Transport, handler: (req: any, res: any) => void): AnyServer {
  if (transport === HTTP1) return http.createServer(handler);
  if (transport === HTTPS) return https.createServer(TLS, handler);
  if (transport === H2) return http2.createSecureServer({ ...TLS, allowHTTP1: false }, handler);
  return http2.createServer(handler);
}

/**
 * Tracks what a server has open, so that cleanup can destroy it and tests
 * can see the server's side of a connection go.
 */
function track(server: AnyServer, transport: Transport) {
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const streams = new Set<http2.ServerHttp2Stream>();
  const secureSockets = new Set<tls.TLSSocket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    secureSockets.add(socket);
    socket.on('close', () => secureSockets.delete(socket));
  });
  if (transport.http2) {
    server.on('session', (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    server.on('stream', (stream: http2.ServerHttp2Stream) => {
      streams.add(stream);
      stream.on('close', () => streams.delete(stream));
    });
  }
  return {
    openRequests: () => (transport.http2 ? streams.size : sockets.size),
    unsentBytes: () => {
      let total = 0;
      for (const writable of transport.http2 ? streams : transport.tls ? secureSockets : sockets) total += writable.writableLength;
      return total;
    },
    destroyAll: () => {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function closeServer(server: AnyServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/** Listens on 127.0.0.1, port 0, and wraps a plain server (node:http handler, Express, fetch). */
async function serve(server: AnyServer, transport: Transport): Promise<Served> {
  const tracked = track(server, transport);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    transport,
    origin: `${transport.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    openRequests: tracked.openRequests,
    unsentBytes: tracked.unsentBytes,
    closeGracefully: (timeoutMs) => withTimeout(closeServer(server), timeoutMs, `the ${transport.name} server to close`),
    close: async () => {
      tracked.destroyAll();
      await closeServer(server);
    },
  };
}

export const NODE: TransportAdapter = {
  name: 'node:http',
  transports: [HTTP1, HTTPS, H2, H2C],
  mount: (transport, hub, options) => serve(nodeServer(transport, createSseHandler(hub, adapt(options, nodeInfo))), transport),
};

export const EXPRESS: TransportAdapter = {
  name: 'Express 5',
  // Express does not run on the node:http2 compatibility API (its request and
  // response prototypes extend http.IncomingMessage and http.ServerResponse,
  // and it has no HTTP/2 support of its own): HTTP/1.1 and HTTPS only.
  transports: [HTTP1, HTTPS],
  mount: async (transport, hub, options) => {
    const app = express();
    app.use('/events', sse(hub, adapt(options, nodeInfo)));
    return serve(nodeServer(transport, app), transport);
  },
};

export const FASTIFY: TransportAdapter = {
  name: 'Fastify 5',
  transports: [HTTP1, HTTPS, H2, H2C],
  mount: async (transport, hub, options) => {
    let app: FastifyInstance<any, any, any, any>;
    if (transport === HTTP1) app = Fastify();
    else if (transport === HTTPS) app = Fastify({ https: TLS });
    else if (transport === H2) app = Fastify({ http2: true, https: { ...TLS, allowHTTP1: false } });
    else app = Fastify({ http2: true });
    await app.register(ssecastFastify, {
      hub,
      path: '/events',
      ...adapt<FastifyRequest>(options, (req) => nodeInfo(req.raw)),
    });
    const server = app.server as AnyServer;
    const tracked = track(server, transport);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (server.address() as AddressInfo).port;
    let closing: Promise<void> | undefined;
    const close = () => (closing ??= app.close());
    return {
      transport,
      origin: `${transport.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
      port,
      openRequests: tracked.openRequests,
      unsentBytes: tracked.unsentBytes,
      closeGracefully: (timeoutMs) => withTimeout(close(), timeoutMs, `Fastify over ${transport.name} to close`),
      close: async () => {
        tracked.destroyAll();
        await close();
      },
    };
  },
};

/**
 * @hono/node-server logs a response body that errors with console.error, and
 * erroring the body is how the fetch adapter tears a stream down (a slow
 * consumer): that one expected message is kept out of the test output while
 * a fetch server is up. Anything else still goes through.
 */
const ABORT_MESSAGE = 'ssecast: stream aborted (slow consumer or server error)';
let muted = 0;
let consoleError: typeof console.error | undefined;
function muteAbortLogs(): () => void {
  if (muted++ === 0) {
    const original = console.error;
    consoleError = original;
    console.error = (...args: unknown[]) => {
      if (args.length === 1 && args[0] instanceof Error && args[0].message === ABORT_MESSAGE) return;
      original(...args);
    };
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--muted === 0 && consoleError) console.error = consoleError;
  };
}

export const FETCH: TransportAdapter = {
  name: 'fetch (@hono/node-server)',
  // @hono/node-server takes any of node's server factories.
  transports: [HTTP1, HTTPS, H2, H2C],
  mount: async (transport, hub, options) => {
    const handler = createFetchHandler(
      hub,
      adapt<Request>(options, (req) => ({ url: new URL(req.url), header: (name) => req.headers.get(name) ?? undefined })),
    );
    let server: AnyServer;
    if (transport === HTTP1) server = createAdaptorServer({ fetch: handler }) as AnyServer;
    else if (transport === HTTPS)
      server = createAdaptorServer({ fetch: handler, createServer: https.createServer, serverOptions: TLS }) as AnyServer;
    else if (transport === H2) {
      server = createAdaptorServer({
        fetch: handler,
        createServer: http2.createSecureServer,
        serverOptions: { ...TLS, allowHTTP1: false },
      }) as AnyServer;
    } else server = createAdaptorServer({ fetch: handler, createServer: http2.createServer }) as AnyServer;
    const served = await serve(server, transport);
    const unmute = muteAbortLogs();
    return {
      ...served,
      close: () => served.close().finally(unmute),
    };
  },
};

export const TRANSPORT_ADAPTERS = [NODE, EXPRESS, FASTIFY, FETCH];

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

export interface SseClient {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** The body came with Content-Encoding: gzip (and is gunzipped here). */
  gzipped: boolean;
  events: ParsedEvent[];
  comments: string[];
  /** The body of a non-200 answer. */
  body: string;
  /** Everything decoded so far. */
  text(): string;
  /** Resolves once the response is over, however it ended (and gunzip has taken what came). */
  ended: Promise<void>;
  /**
   * True when the server ended the body: a complete HTTP/1.1 body, or an
   * HTTP/2 END_STREAM with no reset; and, for gzip, a complete gzip member.
   */
  endedCleanly(): boolean;
  /** How the response ended, for failure messages. */
  describeEnd(): string;
  /** Stops reading: what arrives stays in the kernel and the transport's flow control. */
  pause(): void;
  resume(): void;
  waitFor(predicate: (client: SseClient) => boolean, timeoutMs: number, what: string): Promise<void>;
  /** Tears the connection (or HTTP/2 session) down. */
  close(): void;
}

export interface PendingRequest {
  /** Resolves with the response's client; rejects if the request fails before a response. */
  response: Promise<SseClient>;
  /** Cancels the request at once: destroys the HTTP/1.1 socket, or resets the HTTP/2 stream with CANCEL (the session stays). */
  abort(): void;
  /** Closes whatever the request opened (socket, session). */
  close(): void;
}

export interface OpenOptions {
  headers?: Record<string, string>;
  /** Do not read the body until `resume()`. */
  paused?: boolean;
}

/** Opens an SSE request over the server's transport and parses what comes, as a browser would. */
export function openSse(served: Served, path: string, options: OpenOptions = {}): Promise<SseClient> {
  return requestSse(served, path, options).response;
}

export function requestSse(served: Served, path: string, options: OpenOptions = {}): PendingRequest {
  const headers = { accept: 'text/event-stream', ...options.headers };
  return served.transport.http2
    ? requestH2(served, path, headers, options.paused === true)
    : requestH1(served, path, headers, options.paused === true);
}

/** Feeds a body (gunzipped if need be) to eventsource-parser and keeps the client's state up to date. */
class BodyReader {
  events: ParsedEvent[] = [];
  comments: string[] = [];
  text = '';
  gzipError: Error | undefined;
  gunzipDone = false;
  private readonly gunzip: zlib.Gunzip | undefined;
  private readonly decoder = new TextDecoder();
  private readonly parser = createParser({
    onEvent: (message) => this.events.push({ event: message.event, id: message.id, data: message.data }),
    onComment: (comment) => this.comments.push(comment),
  });
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  constructor(gzipped: boolean) {
    if (!gzipped) {
      this.done = Promise.resolve();
      return;
    }
    const gunzip = zlib.createGunzip();
    this.gunzip = gunzip;
    gunzip.on('data', (chunk: Buffer) => this.decoded(chunk));
    this.done = new Promise((resolve) => {
      gunzip.on('end', () => {
        this.gunzipDone = true;
        resolve();
      });
      gunzip.on('error', (error) => {
        this.gzipError = error;
        this.notify();
        resolve();
      });
    });
  }

  chunk(bytes: Buffer): void {
    if (this.gunzip) this.gunzip.write(bytes);
    else this.decoded(bytes);
  }

  /** The transport is over: a complete gzip member ends, a truncated one errors. */
  finish(): void {
    if (this.gunzip && !this.gunzip.destroyed) this.gunzip.end();
    this.notify();
  }

  destroy(): void {
    this.gunzip?.destroy();
  }

  private decoded(bytes: Buffer): void {
    const text = this.decoder.decode(bytes, { stream: true });
    this.text += text;
    this.parser.feed(text);
    this.notify();
  }

  notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves when `condition` holds, checked after every decoded chunk (and every 20 ms). */
  waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        cleanup();
        resolve();
      };
      const poll = setInterval(check, 20);
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearInterval(poll);
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }
}

function makeClient(
  status: number,
  headers: SseClient['headers'],
  body: Readable,
  paused: boolean,
  transportEnd: Promise<void>,
  cleanly: () => boolean,
  describe: () => string,
  close: () => void,
): SseClient {
  const gzipped = headers['content-encoding'] === 'gzip';
  const reader = new BodyReader(gzipped && status === 200);
  let raw = '';
  // Set explicitly, so that attaching 'data' does not start the flow.
  if (paused) body.pause();
  body.on('data', (chunk: Buffer) => {
    if (status === 200) reader.chunk(chunk);
    else raw += chunk.toString('utf8');
  });
  body.on('error', () => {});
  const ended = transportEnd.then(() => {
    reader.finish();
    return reader.done;
  });
  const client: SseClient = {
    status,
    headers,
    gzipped,
    events: reader.events,
    comments: reader.comments,
    get body() {
      return raw;
    },
    text: () => reader.text,
    ended,
    endedCleanly: () => cleanly() && (!gzipped || (reader.gunzipDone && reader.gzipError === undefined)),
    describeEnd: () =>
      `${describe()}${gzipped ? `, gunzip ${reader.gzipError ? `failed (${reader.gzipError.message})` : reader.gunzipDone ? 'complete' : 'incomplete'}` : ''}`,
    pause: () => body.pause(),
    resume: () => body.resume(),
    waitFor: (predicate, timeoutMs, what) => reader.waitFor(() => predicate(client), timeoutMs, what),
    close: () => {
      close();
      reader.destroy();
    },
  };
  return client;
}

function requestH1(served: Served, path: string, headers: Record<string, string>, paused: boolean): PendingRequest {
  const request = (served.transport.tls ? https : http).request({
    host: '127.0.0.1',
    port: served.port,
    path,
    headers,
    // A connection of its own, closed with the request.
    agent: false,
    ...(served.transport.tls ? { ca: TLS.cert } : {}),
  });
  const response = new Promise<SseClient>((resolve, reject) => {
    request.on('error', reject);
    request.on('response', (res) => {
      let sawEnd = false;
      let error: Error | undefined;
      res.on('end', () => (sawEnd = true));
      res.on('error', (e) => (error = e));
      const transportEnd = new Promise<void>((done) => res.on('close', done));
      resolve(
        makeClient(
          res.statusCode ?? 0,
          res.headers,
          res,
          paused,
          transportEnd,
          () => sawEnd && res.complete && error === undefined,
          () => `HTTP/1.1 body ${sawEnd && res.complete ? 'complete' : 'cut off'}${error ? ` (${error.message})` : ''}`,
          () => request.destroy(),
        ),
      );
    });
  });
  request.end();
  return { response, abort: () => request.destroy(), close: () => request.destroy() };
}

function requestH2(served: Served, path: string, headers: Record<string, string>, paused: boolean): PendingRequest {
  const session = http2.connect(served.origin, served.transport.tls ? { ca: TLS.cert } : {});
  session.on('error', () => {});
  const stream = session.request({ ':path': path, ...headers });
  if (paused) stream.pause();
  const response = new Promise<SseClient>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('response', (responseHeaders) => {
      let sawEnd = false;
      let error: Error | undefined;
      stream.on('end', () => (sawEnd = true));
      stream.on('error', (e) => (error = e));
      const transportEnd = new Promise<void>((done) => stream.on('close', done));
      resolve(
        makeClient(
          Number(responseHeaders[':status']),
          responseHeaders as SseClient['headers'],
          stream,
          paused,
          transportEnd,
          () => sawEnd && error === undefined && (stream.rstCode === undefined || stream.rstCode === http2.constants.NGHTTP2_NO_ERROR),
          () => `HTTP/2 stream ${sawEnd ? 'ended' : 'not ended'}, rstCode ${String(stream.rstCode)}${error ? ` (${error.message})` : ''}`,
          () => session.destroy(),
        ),
      );
    });
  });
  return {
    response,
    abort: () => stream.close(http2.constants.NGHTTP2_CANCEL),
    close: () => session.destroy(),
  };
}

export interface StalledClient {
  /** True once the server has torn the connection (or the HTTP/2 stream) down. */
  readonly closed: boolean;
  /** For HTTP/2: the code the stream was closed with. */
  readonly rstCode: number | undefined;
  /** Bytes read (only after `drain()`). */
  readonly received: number;
  /** Reads from now on: a torn-down connection then shows its end. */
  drain(): void;
  close(): void;
}

/**
 * A client that sends an SSE request and never reads a byte: a raw TCP or
 * TLS socket for HTTP/1.1 and HTTPS, a paused HTTP/2 stream (its flow-control
 * window fills) on a session of its own.
 */
export function stalledClient(served: Served, path: string, headers: Record<string, string> = {}): StalledClient {
  const state = { closed: false, rstCode: undefined as number | undefined, received: 0 };
  const all = { accept: 'text/event-stream', ...headers };
  if (served.transport.http2) {
    const session = http2.connect(served.origin, served.transport.tls ? { ca: TLS.cert } : {});
    session.on('error', () => {});
    const stream = session.request({ ':path': path, ...all });
    stream.pause();
    stream.on('error', () => {});
    stream.on('close', () => {
      state.closed = true;
      state.rstCode = stream.rstCode;
    });
    return {
      get closed() {
        return state.closed;
      },
      get rstCode() {
        return state.rstCode;
      },
      get received() {
        return state.received;
      },
      drain: () => {
        stream.on('data', (chunk: Buffer) => (state.received += chunk.length));
        stream.resume();
      },
      close: () => session.destroy(),
    };
  }
  const socket: Socket = served.transport.tls
    ? tls.connect({ host: '127.0.0.1', port: served.port, ca: TLS.cert })
    : net.connect(served.port, '127.0.0.1');
  socket.pause();
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => {});
  const lines = Object.entries(all).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${served.port}\r\n${lines.join('')}\r\n`);
  return {
    get closed() {
      return state.closed;
    },
    rstCode: undefined,
    get received() {
      return state.received;
    },
    drain: () => {
      socket.on('data', (chunk: Buffer) => (state.received += chunk.length));
      socket.resume();
    },
    close: () => socket.destroy(),
  };
}
