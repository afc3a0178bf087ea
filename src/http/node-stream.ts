import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import * as zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { acceptsGzip, gzipSettings, gzipTransport, type CompressOptions } from './compression.js';
import { SseConnection, type ConnectionCloseReason, type SseTransport } from './connection.js';
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
  return {
    method: typeof req.method === 'string' ? req.method : 'GET',
    target: typeof target === 'string' ? target : '/',
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
    remoteAddress: req.socket?.remoteAddress,
    gone: watchGone(req, res),
  };
}

/**
 * "The client has gone", the same way for HTTP/1.1, HTTPS and HTTP/2: the
 * response's `close`, or the transport's own state for a close that came
 * before this was attached. HTTP/1 reads the request's socket: a pipelined
 * response has no socket of its own until the one before it ends.
 */
export function watchGone(req: NodeRequest, res: NodeResponse): () => boolean {
  let gone = false;
  res.once('close', () => (gone = true));
  const stream = (res as Http2ServerResponse).stream as { destroyed?: boolean; closed?: boolean } | undefined;
  return () => {
    if (gone) return true;
    if (stream) return stream.destroyed === true || stream.closed === true;
    const socket = (res as ServerResponse).socket ?? (req as IncomingMessage).socket;
    return (res as ServerResponse).destroyed === true || !socket || socket.destroyed;
  };
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
          openNodeStream(hub, req, res, outcome, gzip, undefined, (error) => gate.report(error, req));
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
 */
export function openNodeStream<M extends EventMapBase>(
  hub: Hub<M>,
  req: NodeRequest,
  res: NodeResponse,
  admission: Admission,
  gzip: Required<CompressOptions> | null,
  onClose?: (reason: ConnectionCloseReason) => void,
  onError?: (error: unknown) => void,
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

  const plain = nodeTransport(res, http2);
  let transport: SseTransport = plain;
  let onDrain = () => connection.drained();
  let onGone = () => connection.transportClosed();
  if (compressed) {
    const gz = gzipTransport(zlib, gzip, plain, () => connection.drained());
    transport = gz;
    onDrain = () => gz.resume();
    onGone = () => {
      gz.destroy();
      connection.transportClosed();
    };
  }

  // The listeners stay until the response closes: a clean end under backpressure
  // (gzip still holding bytes) needs 'drain' to finish sending what was accepted.
  const connection = new SseConnection(hub, transport, {
    ...admission.connection,
    onClose: (reason) => {
      admission.release();
      onClose?.(reason);
    },
    onError,
  });
  const stream = http2 ? (res as Http2ServerResponse).stream : undefined;
  // A pipelined HTTP/1 response waiting behind another never emits 'close' when the client
  // leaves (Node gives it no socket until its turn): the request's socket tells.
  const socket = http2 ? undefined : (req as IncomingMessage).socket;
  const onSocketClose = () => onGone();
  socket?.once('close', onSocketClose);
  res.once('close', () => {
    res.off('drain', onDrain);
    res.off('error', ignore);
    stream?.off('error', ignore);
    socket?.off('close', onSocketClose);
    onGone();
  });
  res.on('drain', onDrain);
  // Errors on a dying socket surface here; 'close' follows and cleans up.
  res.on('error', ignore);
  stream?.on('error', ignore);
  connection.start();
  return connection;
}

function ignore(): void {}

function headerOf(req: NodeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function nodeTransport(res: NodeResponse, http2: boolean): SseTransport & { write(chunk: string | Uint8Array): boolean } {
  const writable = http2 ? (res as Http2ServerResponse).stream : (res as ServerResponse);
  return {
    write: (chunk) => (res as ServerResponse).write(chunk),
    get bufferedBytes() {
      return writable.writableLength ?? 0;
    },
    // The connection stays open for keep-alive after the end, as the headers promised: closing it
    // made clients that reuse it (undici) fail their next request. server.close() closes it once
    // it is idle.
    end: () => res.end(),
    abort: () => teardown(res, http2),
  };
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
