import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import * as zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { acceptsGzip, gzipSettings, gzipTransport, type CompressOptions, type GzipTransport } from './compression.js';
import {
  reportTransportFailure,
  SseConnection,
  type ConnectionCloseReason,
  type ConnectionOwner,
  type SseTransport,
} from './connection.js';
import { isGone, SseGate, type Admission, type RequestView, type SseHandlerOptions } from './gate.js';
import { reject, rejectionHeaders, streamHeaders, type Rejection } from './reject.js';

/** A request of `node:http` or of the `node:http2` compatibility API. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * The gate's view of a Node request. `target` is the path and query as
 * received (Express passes `originalUrl`, since a mounted router strips
 * `req.url`); the gate parses it, so a malformed one gets a 400, not a throw.
 */
export function nodeRequestView(req: NodeRequest, res: NodeResponse, target: string | undefined): RequestView {
  return new NodeRequestView(req, res, target);
}

// A class, not an object literal of closures: nothing of it is kept once the request is admitted.
class NodeRequestView implements RequestView {
  readonly method: string;
  readonly target: string;
  private readonly req: NodeRequest;
  private readonly res: NodeResponse;
  private readonly stream: { destroyed?: boolean; closed?: boolean } | undefined;

  constructor(req: NodeRequest, res: NodeResponse, target: string | undefined) {
    this.method = typeof req.method === 'string' ? req.method : 'GET';
    this.target = typeof target === 'string' ? target : '/';
    this.req = req;
    this.res = res;
    this.stream = (res as Http2ServerResponse).stream;
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  // Read only when the gate needs it: node:http caches a peer's address on its socket once asked.
  get remoteAddress(): string | undefined {
    return this.req.socket?.remoteAddress;
  }

  /**
   * "The client has gone", the same way for HTTP/1.1, HTTPS and HTTP/2, from
   * the transport's own state: node:http marks a response destroyed before it
   * emits its 'close', and an HTTP/2 stream is closed or destroyed before
   * its response's. No listener is needed, so none is left on the response.
   * HTTP/1 reads the request's socket: a pipelined response has no socket of
   * its own until the one before it ends.
   */
  gone(): boolean {
    const stream = this.stream;
    if (stream) return stream.destroyed === true || stream.closed === true;
    const res = this.res as ServerResponse;
    const socket = res.socket ?? (this.req as IncomingMessage).socket;
    return res.destroyed === true || !socket || socket.destroyed;
  }
}

/**
 * A `(req, res)` handler over the gate and {@link openNodeStream}: what the
 * node:http and Express adapters are. `urlOf` gives the path and query the
 * request options are read from. Nothing it does throws out of the handler.
 */
export function nodeHandler<M extends EventMapBase, Req extends NodeRequest>(
  hub: Hub<M>,
  options: SseHandlerOptions<Req>,
  urlOf: (req: Req) => string | undefined = (req) => req.url,
): (req: Req, res: NodeResponse) => void {
  const gate = new SseGate<Req, M>(hub, options);
  const gzip = gzipSettings(options.compress);
  const fail = (error: unknown, req: Req, res: NodeResponse) => {
    gate.report(error, req);
    answer(res, reject(500, 'the stream could not be opened'));
  };
  // One for the handler, not one per connection: the stream hands it its request.
  const report = (error: unknown, req: NodeRequest) => gate.report(error, req as Req);
  return (req, res) => {
    let view: RequestView;
    try {
      view = nodeRequestView(req, res, urlOf(req));
    } catch (error) {
      return fail(error, req, res);
    }
    gate
      .admit(req, view)
      .then((outcome) => {
        if (isGone(outcome)) return;
        if (!outcome.ok) return answer(res, outcome);
        // The client may have left while the hooks were awaited.
        if (view.gone()) return outcome.release();
        try {
          openNodeStream(hub, req, res, outcome, gzip, undefined, report);
        } catch (error) {
          outcome.release();
          fail(error, req, res);
        }
      })
      .catch((error: unknown) => fail(error, req, res));
  };
}

/** Sends a rejection if the response can still take one, else tears it down; never throws. */
export function answer(res: NodeResponse, rejection: Rejection): void {
  try {
    if (!res.headersSent && !res.writableEnded) return sendRejection(res, rejection);
  } catch {
    // Falls through to the teardown.
  }
  try {
    res.destroy();
  } catch {
    // Nothing more can be done for this response.
  }
}

/**
 * Turns an admitted Node request into an event stream: headers, socket
 * settings, the transport (gzip when asked for and accepted) and the
 * connection. Shared by the node:http, Express and Fastify adapters.
 * `onClose` and `onError` are called with the request, so that one function
 * can serve every connection of a handler.
 */
export function openNodeStream<M extends EventMapBase>(
  hub: Hub<M>,
  req: NodeRequest,
  res: NodeResponse,
  admission: Admission,
  gzip: Required<CompressOptions> | null,
  onClose?: (reason: ConnectionCloseReason, req: NodeRequest) => void,
  onError?: (error: unknown, req: NodeRequest) => void,
): SseConnection<M> {
  const http2 = req.httpVersionMajor >= 2;
  const compressed = gzip !== null && acceptsGzip(headerOf(req, 'accept-encoding'));
  const headers = streamHeaders(gzip !== null, compressed);
  // Only HTTP/1.1 has keep-alive by this header; HTTP/2 forbids connection-specific headers.
  if (req.httpVersion === '1.1') headers.connection = 'keep-alive';
  (res as ServerResponse).writeHead(200, headers);
  // http2's compat writeHead sends at once; http1 holds headers until the first write.
  if (!http2) (res as ServerResponse).flushHeaders();
  // Long-lived by design: no socket timeout may end it (Node's default requestTimeout does not apply once headers are sent).
  if ('setTimeout' in req.socket && !http2) req.socket.setTimeout(0);
  if ('setNoDelay' in req.socket) (req.socket as { setNoDelay(v: boolean): void }).setNoDelay(true);

  const stream = new NodeStream<M>(res as WatchedResponse, admission, onClose, onError);
  if (http2 || compressed) stream.extras = new NodeStreamExtras(http2 ? (res as Http2ServerResponse).stream : undefined);
  let transport: SseTransport = stream;
  if (compressed)
    transport = (stream.extras as NodeStreamExtras).gzip = gzipTransport(zlib, gzip, stream, () => stream.connection?.drained());
  const connection = new SseConnection(hub, transport, admission.connection, stream);
  stream.connection = connection;
  stream.listen();
  connection.start();
  return connection;
}

/** The stream a response serves, for the listeners that every response shares. */
const STREAM = Symbol('ssecast.stream');
type WatchedResponse = NodeResponse & { [STREAM]?: NodeStream<any> | undefined };

// One function of each for every response, `this` being the response: a
// listener per connection would be a closure per connection.
function onResponseClose(this: WatchedResponse): void {
  this[STREAM]?.responseClosed();
}

function onResponseDrain(this: WatchedResponse): void {
  this[STREAM]?.drain();
}

function ignore(): void {}

/** What only some streams need: HTTP/2's stream, gzip, a pipelined response's socket listener. */
class NodeStreamExtras {
  /** HTTP/2: the response's stream. */
  readonly stream: Http2ServerResponse['stream'] | undefined;
  /** With compression: the gzip transport the connection writes to, which writes to the response. */
  gzip: GzipTransport | undefined = undefined;
  /** A pipelined HTTP/1 response's listener on the request's socket (see `listen`). */
  onSocketClose: (() => void) | undefined = undefined;

  constructor(stream: Http2ServerResponse['stream'] | undefined) {
    this.stream = stream;
  }
}

/**
 * The transport of one Node response, and the owner of its connection: it
 * writes to the response, hears the response's 'close' and 'drain', and
 * gives the admission back when the connection ends. One object per
 * connection, its methods on the prototype; its request is the response's
 * `req`.
 */
class NodeStream<M extends EventMapBase> implements SseTransport, ConnectionOwner {
  connection: SseConnection<M> | undefined = undefined;
  extras: NodeStreamExtras | undefined = undefined;
  private readonly res: WatchedResponse;
  private readonly admission: Admission;
  private readonly onClose: ((reason: ConnectionCloseReason, req: NodeRequest) => void) | undefined;
  private readonly onError: ((error: unknown, req: NodeRequest) => void) | undefined;

  constructor(
    res: WatchedResponse,
    admission: Admission,
    onClose: ((reason: ConnectionCloseReason, req: NodeRequest) => void) | undefined,
    onError: ((error: unknown, req: NodeRequest) => void) | undefined,
  ) {
    this.res = res;
    this.admission = admission;
    this.onClose = onClose;
    this.onError = onError;
  }

  private get req(): NodeRequest {
    return this.res.req;
  }

  /**
   * The listeners stay until the response closes: a clean end under backpressure (gzip still
   * holding bytes) needs 'drain' to finish sending what was accepted.
   */
  listen(): void {
    const res = this.res;
    const stream = this.extras?.stream;
    res[STREAM] = this;
    res.on('close', onResponseClose);
    res.on('drain', onResponseDrain);
    // Errors on a dying socket surface here; 'close' follows and cleans up.
    res.on('error', ignore);
    stream?.on('error', ignore);
    // A pipelined HTTP/1 response waiting behind another never emits 'close' when the client
    // leaves (Node gives it no socket until its turn): the request's socket tells. A response
    // that has its socket emits 'close' when the socket closes.
    if (!stream && !(res as ServerResponse).socket) {
      const onSocketClose = () => this.transportGone();
      (this.extras ??= new NodeStreamExtras(undefined)).onSocketClose = onSocketClose;
      (this.req as IncomingMessage).socket?.once('close', onSocketClose);
    }
  }

  write(chunk: string | Uint8Array): boolean {
    return (this.res as ServerResponse).write(chunk);
  }

  get bufferedBytes(): number {
    return (this.extras?.stream ?? (this.res as ServerResponse)).writableLength ?? 0;
  }

  // The connection stays open for keep-alive after the end, as the headers promised: closing it
  // made clients that reuse it (undici) fail their next request. server.close() closes it once
  // it is idle.
  end(): void {
    this.res.end();
  }

  abort(): void {
    teardown(this.res, this.extras?.stream !== undefined);
  }

  drain(): void {
    const gzip = this.extras?.gzip;
    if (gzip) gzip.resume();
    else this.connection?.drained();
  }

  responseClosed(): void {
    const res = this.res;
    const extras = this.extras;
    res.off('close', onResponseClose);
    res.off('drain', onResponseDrain);
    res.off('error', ignore);
    extras?.stream?.off('error', ignore);
    if (extras?.onSocketClose) (this.req as IncomingMessage).socket?.off('close', extras.onSocketClose);
    res[STREAM] = undefined;
    this.transportGone();
  }

  private transportGone(): void {
    this.extras?.gzip?.destroy();
    this.connection?.transportClosed();
  }

  connectionClosed(reason: ConnectionCloseReason): void {
    this.admission.release();
    this.onClose?.(reason, this.req);
  }

  connectionFailed(error: unknown): void {
    const { onError, req } = this;
    reportTransportFailure(onError && ((failure) => onError(failure, req)), error);
  }
}

function headerOf(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/**
 * Tears a response down at once, the way its transport allows. Plain TCP gets
 * a reset, not a FIN: a slow consumer's socket still holds megabytes the
 * kernel would keep trying to deliver (FIN_WAIT1) long after the cut-off.
 * TLS cannot be reset from Node (`resetAndDestroy` throws on a TLS socket):
 * it is destroyed. HTTP/2 resets only this stream, with CANCEL.
 */
function teardown(res: NodeResponse, http2: boolean): void {
  if (http2) {
    const stream = (res as Http2ServerResponse).stream;
    if (!stream.destroyed) stream.close(0x8 /* NGHTTP2_CANCEL */);
    return;
  }
  const socket = (res as ServerResponse).socket as (Socket & { resetAndDestroy?: () => void }) | null;
  if (!socket || socket.destroyed) return void res.destroy();
  if (socket instanceof TLSSocket || typeof socket.resetAndDestroy !== 'function') return void socket.destroy();
  try {
    socket.resetAndDestroy();
  } catch {
    // Not a TCP handle after all (a custom duplex, a pipe): a plain destroy.
    socket.destroy();
  }
}

/** Answers a rejected request with its JSON body. */
export function sendRejection(res: NodeResponse, rejection: Rejection): void {
  const body = JSON.stringify(rejection.body);
  (res as ServerResponse).writeHead(rejection.status, rejectionHeaders(rejection, body));
  res.end(body);
}
