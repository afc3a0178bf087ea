import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { EventManager } from '../core/event-manager.js';
import type { EventMapBase } from '../core/types.js';
import { SseConnection, type SseTransport } from './connection.js';
import { reject, SseGate, type Rejection, type SseHandlerOptions } from './gate.js';

export type { Principal, SseHandlerOptions } from './gate.js';

/** A request of `node:http` or of the `node:http2` compatibility API. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * An SSE endpoint for `http.createServer`, `https` and the `node:http2`
 * compatibility API (`http2.createServer`, `http2.createSecureServer`).
 *
 * @example
 * const hub = new EventManager();
 * const sse = createSseHandler(hub, { streams: (req) => new URL(req.url!, 'http://x').searchParams.getAll('agent_id') });
 * http.createServer((req, res) => req.url?.startsWith('/events') ? sse(req, res) : res.end()).listen(8000);
 */
export function createSseHandler<M extends EventMapBase = EventMapBase, Req extends NodeRequest = NodeRequest>(
  hub: EventManager<M>,
  options: SseHandlerOptions<Req> = {},
): (req: Req, res: NodeResponse) => void {
  const gate = new SseGate<Req, M>(hub, options);
  return (req, res) => {
    serve(gate, hub, req, res).catch((error: unknown) => {
      gate.report(error, req);
      if (!res.headersSent) sendJson(res, reject(500, 'the stream could not be opened'));
      else res.destroy();
    });
  };
}

async function serve<Req extends NodeRequest, M extends EventMapBase>(
  gate: SseGate<Req, M>,
  hub: EventManager<M>,
  req: Req,
  res: NodeResponse,
): Promise<void> {
  const view = {
    method: req.method ?? 'GET',
    url: new URL(req.url ?? '/', 'http://localhost'),
    header: (name: string) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  };
  const outcome = await gate.admit(req, view);
  if (!outcome.ok) return sendJson(res, outcome);
  // The client may have left while authorize() was awaited.
  if (res.destroyed || req.destroyed) return outcome.release();

  const http2 = req.httpVersionMajor >= 2;
  const headers: Record<string, string> = {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  };
  // Only HTTP/1.1 has keep-alive by this header; HTTP/2 forbids connection-specific headers.
  if (req.httpVersion === '1.1') headers.connection = 'keep-alive';
  (res as ServerResponse).writeHead(200, headers);
  // http2's compat writeHead sends at once; http1 holds headers until the first write.
  if (!http2) (res as ServerResponse).flushHeaders();
  // Long-lived by design: no socket timeout may end it (Node's default requestTimeout does not apply once headers are sent).
  if ('setTimeout' in req.socket && !http2) req.socket.setTimeout(0);
  if ('setNoDelay' in req.socket) (req.socket as { setNoDelay(v: boolean): void }).setNoDelay(true);

  const connection = new SseConnection(hub, nodeTransport(res, http2), {
    ...outcome.connection,
    onClose: () => {
      res.off('close', onClientGone);
      res.off('drain', onDrain);
      res.off('error', onError);
      outcome.release();
    },
  });
  const onClientGone = () => connection.transportClosed();
  const onDrain = () => connection.drained();
  // Errors on a dying socket surface here; 'close' follows and cleans up.
  const onError = () => {};
  res.on('close', onClientGone);
  res.on('drain', onDrain);
  res.on('error', onError);
  connection.start();
}

function nodeTransport(res: NodeResponse, http2: boolean): SseTransport {
  const writable = http2 ? (res as Http2ServerResponse).stream : (res as ServerResponse);
  return {
    write: (chunk) => (res as ServerResponse).write(chunk),
    get bufferedBytes() {
      return writable.writableLength ?? 0;
    },
    end: () => res.end(),
    abort: () => {
      if (http2) (res as Http2ServerResponse).stream.close(0x8 /* CANCEL */);
      else res.destroy();
    },
  };
}

function sendJson(res: NodeResponse, rejection: Rejection): void {
  const body = JSON.stringify(rejection.body);
  (res as ServerResponse).writeHead(rejection.status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
    ...rejection.headers,
  });
  res.end(body);
}
