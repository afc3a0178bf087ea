import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import * as zlib from 'node:zlib';
import type { EventManager } from '../core/event-manager.js';
import type { CloseReason } from '../core/subscription.js';
import type { EventMapBase } from '../core/types.js';
import { acceptsGzip, gzipSettings, gzipTransport, type CompressOptions } from './compression.js';
import { SseConnection, type SseTransport } from './connection.js';
import { SseGate, type Admission, type RequestView, type SseHandlerOptions } from './gate.js';
import { reject, rejectionHeaders, streamHeaders, type Rejection } from './reject.js';

/** A request of `node:http` or of the `node:http2` compatibility API. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * The gate's view of a Node request. `url` is the full path and query;
 * Express passes `originalUrl`, since a mounted router strips `req.url`.
 */
export function nodeRequestView(req: NodeRequest, url: string | undefined): RequestView {
  return {
    method: req.method ?? 'GET',
    url: new URL(url ?? '/', 'http://localhost'),
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  };
}

/**
 * A `(req, res)` handler over the gate and {@link openNodeStream}: what the
 * node:http and Express adapters are. `urlOf` gives the path and query the
 * request options are read from.
 */
export function nodeHandler<M extends EventMapBase, Req extends NodeRequest>(
  hub: EventManager<M>,
  options: SseHandlerOptions<Req>,
  urlOf: (req: Req) => string | undefined = (req) => req.url,
): (req: Req, res: NodeResponse) => void {
  const gate = new SseGate<Req, M>(hub, options);
  const gzip = gzipSettings(options.compress);
  return (req, res) => {
    gate
      .admit(req, nodeRequestView(req, urlOf(req)))
      .then((outcome) => {
        if (!outcome.ok) return sendRejection(res, outcome);
        // The client may have left while authorize() was awaited.
        if (res.destroyed || req.destroyed) return outcome.release();
        try {
          openNodeStream(hub, req, res, outcome, gzip);
        } catch (error) {
          outcome.release();
          throw error;
        }
      })
      .catch((error: unknown) => {
        gate.report(error, req);
        if (!res.headersSent) sendRejection(res, reject(500, 'the stream could not be opened'));
        else res.destroy();
      });
  };
}

/**
 * Turns an admitted Node request into an event stream: headers, socket
 * settings, the transport (gzip when asked for and accepted) and the
 * connection. Shared by the node:http, Express and Fastify adapters.
 */
export function openNodeStream<M extends EventMapBase>(
  hub: EventManager<M>,
  req: NodeRequest,
  res: NodeResponse,
  admission: Admission,
  gzip: Required<CompressOptions> | null,
  onClose?: (reason: CloseReason) => void,
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

  const connection = new SseConnection(hub, transport, {
    ...admission.connection,
    onClose: (reason) => {
      res.off('close', onGone);
      res.off('drain', onDrain);
      res.off('error', ignore);
      admission.release();
      onClose?.(reason);
    },
  });
  res.on('close', onGone);
  res.on('drain', onDrain);
  // Errors on a dying socket surface here; 'close' follows and cleans up.
  res.on('error', ignore);
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
    end: () => res.end(),
    abort: () => {
      if (http2) return (res as Http2ServerResponse).stream.close(0x8 /* CANCEL */);
      // A reset, not a FIN: a slow consumer's socket still holds megabytes the kernel would keep
      // trying to deliver (FIN_WAIT1) long after the cut-off. A reset frees them at once.
      const socket = (res as ServerResponse).socket as (Socket & { resetAndDestroy?: () => void }) | null;
      if (socket && typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
      else res.destroy();
    },
  };
}

/** Answers a rejected request with its JSON body. */
export function sendRejection(res: NodeResponse, rejection: Rejection): void {
  const body = JSON.stringify(rejection.body);
  (res as ServerResponse).writeHead(rejection.status, rejectionHeaders(rejection, body));
  res.end(body);
}
